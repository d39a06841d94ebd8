"""Speed of the local LLM writer (llama.cpp, batched greedy decoding) on real Twitter-2015 dev posts.

For each (model, threads, n_parallel) it writes the tweet-level L_t (prompt v2: tweet + image-side texts) of
the same N posts and reports prompt and generation tokens/s, posts/min and s/post. Writes
results/rationales/local_llm.json. Run with the machine otherwise idle:

    python benchmarks/bench_local_llm.py --posts 16 --models qwen2.5-coder-0.5b qwen2.5-coder-1.5b
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from lrsa.io import atomic_write_json, git_commit
from lrsa.rationales.inputs import dataset_inputs
from lrsa.rationales.llamacpp import LlamaCppEngine
from lrsa.rationales.llm_files import gguf_path
from lrsa.rationales.prompts import build_messages

OUT = Path(__file__).resolve().parent.parent / "results" / "rationales" / "local_llm.json"


def run(model: str, threads: int, n_parallel: int, posts: list, max_new_tokens: int) -> dict:
    eng = LlamaCppEngine(gguf_path(model), n_parallel=n_parallel, threads=threads)
    prompts = [eng.render(build_messages("text", p, "v2")) for p in posts]
    eng.generate(prompts[:1], 4)  # warm-up (weights paged in)
    eng.stats = {k: 0 if isinstance(v, int) else 0.0 for k, v in eng.stats.items()}
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    gens = eng.generate(prompts, max_new_tokens)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    st = eng.stats
    eng.close()
    return {"model": model, "threads": threads, "n_parallel": n_parallel, "posts": len(posts),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "s_per_post": round(wall / len(posts), 3),
            "posts_per_min": round(60 * len(posts) / wall, 1),
            "prompt_tokens": st["prompt_tokens"], "completion_tokens": st["completion_tokens"],
            "prompt_tokens_per_s": round(st["prompt_tokens"] / st["prefill_s"], 1) if st["prefill_s"] else None,
            "gen_tokens_per_s": round(st["completion_tokens"] / st["decode_s"], 1) if st["decode_s"] else None,
            "steps": st["steps"], "example": gens[0].text}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=16)
    ap.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--parallel", nargs="+", type=int, default=[1, 4, 8, 16])
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out")
    a = ap.parse_args()
    posts = dataset_inputs("twitter2015", ["dev"])[: a.posts]
    rows = json.loads(a.out.read_text())["rows"] if a.append and a.out.is_file() else []
    for model in a.models:
        for threads in a.threads:
            for par in a.parallel:
                r = run(model, threads, par, posts, a.max_new_tokens)
                print(json.dumps({k: v for k, v in r.items() if k != "example"}), flush=True)
                rows.append(r)
    atomic_write_json(a.out, {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "posts": f"twitter2015 dev, first {a.posts} sentences; prompt text_v2 (tweet + image-side texts)",
        "max_new_tokens": a.max_new_tokens, "decoding": "greedy, repetition penalty 1.1",
        "note": "prefill = decode steps that carry a prompt (they also carry the running sequences' tokens)",
        "rows": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
