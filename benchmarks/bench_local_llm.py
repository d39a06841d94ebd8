"""Speed of the local LLM writer (llama.cpp, batched greedy decoding) on real Twitter-2015 dev posts.

For each (model, threads, n_parallel) it writes the tweet-level L_t (prompt v2: tweet + image-side texts) of
the same N posts and reports prompt and generation tokens/s, posts/min and s/post. Writes
results/rationales/local_llm.json. Run with the machine otherwise idle:

    python benchmarks/bench_local_llm.py --posts 16 --models qwen2.5-coder-0.5b qwen2.5-coder-1.5b

``--levers`` measures instead what moves the 0.5B model's throughput on Twitter-2017, whose GPT-4 image
descriptions make prompts 1.7x longer than Twitter-2015's: the same 96 dev posts, in calls of 64 prompts on
32 slots as ``lrsa rationales generate --backend local`` runs them, one lever changed per row (KV layout,
flash attention, slots, call size, decoding limit, prompt v3's 40-word image context). Writes
results/rationales/local_llm_levers.json:

    python benchmarks/bench_local_llm.py --levers
    python benchmarks/bench_local_llm.py --levers --only production "prompt v3" --out results/rationales/X.json

Figures are comparable only on the same CPU: the header records its model name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from lrsa.env import cpu_model
from lrsa.io import atomic_write_json, git_commit
from lrsa.rationales.inputs import dataset_inputs
from lrsa.rationales.llamacpp import LlamaCppEngine
from lrsa.rationales.llm_files import gguf_path
from lrsa.rationales.prompts import build_messages

RESULTS = Path(__file__).resolve().parent.parent / "results" / "rationales"
OUT = RESULTS / "local_llm.json"
LEVERS_OUT = RESULTS / "local_llm_levers.json"
# (name, changes to the production setting: split KV streams, flash attention auto, 32 slots, calls of 64, 64 new
# tokens, prompt v2)
LEVERS = [
    ("production (v2, split KV streams)", {}),
    ("unified KV cache", {"kv_unified": True}),
    ("flash attention off", {"flash_attn": False}),
    ("16 slots", {"n_parallel": 16}),
    ("48 slots, one call of 96", {"n_parallel": 48, "call": 96}),
    ("max 48 new tokens", {"max_new_tokens": 48}),
    ("prompt v3 (image context <= 40 words)", {"prompt_version": "v3"}),
]


def run(model: str, threads: int, n_parallel: int, posts: list, max_new_tokens: int, *, call: int | None = None,
        prompt_version: str = "v2", kv_unified: bool = False, flash_attn: bool | None = None) -> dict:
    eng = LlamaCppEngine(gguf_path(model), n_parallel=n_parallel, threads=threads, kv_unified=kv_unified,
                         flash_attn=flash_attn)
    prompts = [eng.render(build_messages("text", p, prompt_version)) for p in posts]
    eng.generate(prompts[:1], 4)  # warm-up (weights paged in)
    eng.stats = {k: 0 if isinstance(v, int) else 0.0 for k, v in eng.stats.items()}
    call = call or len(prompts)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    gens = [g for i in range(0, len(prompts), call) for g in eng.generate(prompts[i:i + call], max_new_tokens)]
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    st = eng.stats
    eng.close()
    return {"model": model, "threads": threads, "n_parallel": n_parallel, "posts": len(posts), "call": call,
            "prompt_version": prompt_version, "kv_unified": kv_unified, "flash_attn": flash_attn,
            "max_new_tokens": max_new_tokens, "posts_per_s": round(len(posts) / wall, 3),
            "prefill_s": round(st["prefill_s"], 1), "decode_s": round(st["decode_s"], 1),
            "prompt_tokens_per_post": round(st["prompt_tokens"] / len(posts), 1),
            "completion_tokens_per_post": round(st["completion_tokens"] / len(posts), 1),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "s_per_post": round(wall / len(posts), 3),
            "posts_per_min": round(60 * len(posts) / wall, 1),
            "prompt_tokens": st["prompt_tokens"], "completion_tokens": st["completion_tokens"],
            "prompt_tokens_per_s": round(st["prompt_tokens"] / st["prefill_s"], 1) if st["prefill_s"] else None,
            "gen_tokens_per_s": round(st["completion_tokens"] / st["decode_s"], 1) if st["decode_s"] else None,
            "steps": st["steps"], "example": gens[0].text}


def _header(posts: str, max_new_tokens: int) -> dict:
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(),
            "machine": {"cpus": os.cpu_count(), "cpu": cpu_model() or "unknown", "platform": platform.platform(),
                        "python": platform.python_version()},
            "posts": posts, "max_new_tokens": max_new_tokens, "decoding": "greedy, repetition penalty 1.1",
            "note": "prefill = decode steps that carry a prompt (they also carry the running sequences' tokens)"}


def levers(a: argparse.Namespace) -> None:
    posts = dataset_inputs("twitter2017", ["dev"])[: a.posts]
    rows = []
    chosen = [(n, c) for n, c in LEVERS if not a.only or any(o in n for o in a.only)]
    if not chosen:
        raise SystemExit(f"--only {a.only} matches no lever of {[n for n, _ in LEVERS]}")
    for name, change in chosen:
        cfg = {"n_parallel": 32, "call": 64, "max_new_tokens": 64, **change}
        r = {"lever": name, **run(a.models[0], 2, cfg.pop("n_parallel"), posts, cfg.pop("max_new_tokens"), **cfg)}
        print(json.dumps({k: v for k, v in r.items() if k != "example"}), flush=True)
        rows.append(r)
    atomic_write_json(a.out or LEVERS_OUT, {
        **_header(f"twitter2017 dev, first {a.posts} sentences", 64),
        "production": "split KV streams, flash attention auto (on), 32 slots, calls of 64 prompts, prompt text_v2",
        "rows": rows})
    print(f"wrote {a.out or LEVERS_OUT}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levers", action="store_true", help="the Twitter-2017 lever table instead of the grid")
    ap.add_argument("--posts", type=int, default=16)
    ap.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--parallel", nargs="+", type=int, default=[1, 4, 8, 16])
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--out", type=Path, default=None, help=f"[{OUT.name}; --levers: {LEVERS_OUT.name}]")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out")
    ap.add_argument("--only", nargs="+", default=None,
                    help="--levers: only the levers whose names contain one of these, e.g. production 'prompt v3'")
    a = ap.parse_args()
    if a.levers:
        if a.posts == 16:
            a.posts = 96
        return levers(a)
    a.out = a.out or OUT
    posts = dataset_inputs("twitter2015", ["dev"])[: a.posts]
    rows = json.loads(a.out.read_text())["rows"] if a.append and a.out.is_file() else []
    for model in a.models:
        for threads in a.threads:
            for par in a.parallel:
                r = run(model, threads, par, posts, a.max_new_tokens)
                print(json.dumps({k: v for k, v in r.items() if k != "example"}), flush=True)
                rows.append(r)
    atomic_write_json(a.out, {
        **_header(f"twitter2015 dev, first {a.posts} sentences; prompt text_v2 (tweet + image-side texts)",
                  a.max_new_tokens),
        "rows": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
