"""Rationale-generation benchmark: prints figures and writes results/rationales/bench.json.

    LRSA_DATA_DIR=../shared/data python benchmarks/rationales_bench.py            # HTTP + cache + lexicon
    LRSA_DATA_DIR=../shared/data python benchmarks/rationales_bench.py --local    # + SmolLM2, transformers

1. HTTP: the openai backend against the 127.0.0.1 chat-completions server with 200 ms simulated latency,
   200 requests at concurrency 1 and 16 (target: >= 10x faster), then the same job rerun from the cache
   (target: 0 calls, >= 2,000 rationales/s).
2. Lexicon: every sentence of twitter2015, twitter2017 and political_twitter (L_t and L_i).
3. Local LLM (--local): SmolLM2-135M-Instruct on the ``transformers`` runtime (transformers + gguf, the path
   that needs no compiler); load time, tokens/s and rationales per minute at batch 1 and batch B on real
   benchmark prompts, and the projected time for all three benchmarks. The default llama.cpp runtime with
   Qwen2.5-Coder is measured by ``benchmarks/bench_local_llm.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "rationales" / "bench.json"
BENCHMARKS = ("twitter2015", "twitter2017", "political_twitter")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_http(n_requests: int = 200, latency_s: float = 0.2) -> dict:
    from lrsa.rationales import RationaleCache, RationaleInput, generate, make_backend
    from lrsa.rationales.fakeserver import FakeLLMServer, FaultPlan

    inputs = [RationaleInput(id=f"b{i}", text=f"Benchmark tweet {i} about #Paris and @someone")
              for i in range(n_requests)]
    out: dict = {"requests": n_requests, "latency_s": latency_s}
    with FakeLLMServer(FaultPlan(latency_s=latency_s)) as srv, tempfile.TemporaryDirectory() as tmp:
        for conc in (1, 16):
            be = make_backend("openai", base_url=srv.url, model="fake")
            n0 = len(srv.log)
            with RationaleCache(Path(tmp) / f"c{conc}.sqlite") as cache:
                rep = generate(inputs, be, cache=cache, concurrency=conc, kinds=("text",)).report
            out[f"concurrency_{conc}"] = {"wall_s": rep.wall_s, "requests_per_s": round(n_requests / rep.wall_s, 2),
                                          "server_calls": len(srv.log) - n0, "failed": rep.failed}
            print(f"http c={conc:<2}: {rep.wall_s:6.2f} s  {n_requests / rep.wall_s:7.1f} req/s", flush=True)
        out["speedup_16_vs_1"] = round(out["concurrency_1"]["wall_s"] / out["concurrency_16"]["wall_s"], 2)
        n0 = len(srv.log)
        with RationaleCache(Path(tmp) / "c16.sqlite") as cache:
            rep = generate(inputs, make_backend("openai", base_url=srv.url, model="fake"), cache=cache,
                           concurrency=16, kinds=("text",)).report
        out["rerun_from_cache"] = {"wall_s": rep.wall_s, "server_calls": len(srv.log) - n0, "cached": rep.cached,
                                   "rationales_per_s": round(rep.cached / rep.wall_s, 1)}
    print(f"speed-up 16 vs 1: {out['speedup_16_vs_1']}x (target >= 10x)")
    r = out["rerun_from_cache"]
    print(f"rerun from cache: {r['server_calls']} calls, {r['rationales_per_s']:.0f} rationales/s "
          f"(target: 0 calls, >= 2000/s)", flush=True)
    return out


def bench_lexicon() -> dict:
    from lrsa.rationales import dataset_inputs, generate, make_backend

    out = {}
    for ds in BENCHMARKS:
        inputs = dataset_inputs(ds)
        rep = generate(inputs, make_backend("lexicon")).report
        out[ds] = {"sentences": len(inputs), "rationales": rep.generated, "wall_s": rep.wall_s,
                   "rationales_per_s": round(rep.generated / rep.wall_s, 1)}
        print(f"lexicon {ds}: {len(inputs)} sentences, {rep.generated} rationales in {rep.wall_s:.2f} s", flush=True)
    return out


def bench_local(batch: int, n_prompts: int, max_new_tokens: int) -> dict:
    from lrsa.rationales import dataset_inputs, generate, make_backend
    from lrsa.rationales.local import default_gguf

    t = time.perf_counter()
    be = make_backend("local", model="smollm2-135m", runtime="transformers", batch_size=batch,
                      max_new_tokens=max_new_tokens)
    be.load()
    out: dict = {"model": be.model, "gguf": default_gguf().name, "runtime": "transformers+gguf, fp32, torch CPU",
                 "load_s": round(time.perf_counter() - t, 2), "max_new_tokens": max_new_tokens,
                 "torch_threads": __import__("torch").get_num_threads()}
    print(f"local: loaded in {out['load_s']} s", flush=True)
    inputs = dataset_inputs("twitter2015", ["test"])
    for bs in (1, batch):
        be.batch_size = bs
        k = bs if bs > 1 else max(1, min(2, n_prompts))
        sel = inputs[:k]
        la = _load()
        rep = generate(sel, be, concurrency=bs, kinds=("text",)).report
        tok_s = rep.completion_tokens / rep.wall_s
        out[f"batch_{bs}"] = {"prompts": k, "completion_tokens": rep.completion_tokens, "wall_s": rep.wall_s,
                              "tokens_per_s": round(tok_s, 2),
                              "rationales_per_min": round(rep.generated / rep.wall_s * 60, 2),
                              "mean_completion_tokens": round(rep.completion_tokens / max(1, rep.generated), 1),
                              "loadavg_before": la}
        print(f"local batch {bs}: {tok_s:.1f} tokens/s, {rep.generated / rep.wall_s * 60:.1f} rationales/min "
              f"(load average before {la})", flush=True)
    best = max((out[f"batch_{b}"] for b in (1, batch)), key=lambda r: r["rationales_per_min"])
    from lrsa.data.registry import get, load_dataset

    sentences = sum(len(load_dataset(ds, s)) for ds in BENCHMARKS for s in get(ds).splits)
    parts = 2 * sentences  # L_t and L_i
    hours = parts / best["rationales_per_min"] / 60
    out["projection"] = {"sentences": sentences, "rationales": parts,
                         "at_rationales_per_min": best["rationales_per_min"], "hours": round(hours, 1),
                         "note": "rationales capped at max_new_tokens; the CPU was shared with other jobs"}
    print(f"projected for all {sentences} sentences ({parts} rationales): {hours:.1f} h on this machine", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--local", action="store_true", help="also benchmark SmolLM2 (minutes of CPU)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                             "platform": platform.platform(), "loadavg_start": _load()},
                 "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if a.out.exists():  # keep earlier --local figures when rerun without --local
        prev = json.loads(a.out.read_text())
        if "local_llm" in prev and not a.local:
            res["local_llm"] = prev["local_llm"]
    res["http"] = bench_http()
    res["lexicon"] = bench_lexicon()
    if a.local:
        res["local_llm"] = bench_local(a.batch, a.batch, a.max_new_tokens)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
