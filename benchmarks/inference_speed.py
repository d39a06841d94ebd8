"""Inference speed of `LRSA.predict_batch` in fp32 and bf16, where the time goes, and what bf16 costs in F1.

For each checkpoint (default: the main job's span `text` and `lrsa` models) and each precision:
- posts/s of `predict_batch` over the Twitter-2015 test posts with their MDCA captions as image text (the
  `lrsa` model also writes its lexicon rationales per post, as a user's call does), best of `--rounds`
  after a warm-up, and the per-post milliseconds of each stage (tokenise, rationales, side texts through
  the frozen encoder, the model);
- test JMASA F1 of the checkpoint (`evaluate_split`: the benchmark's own captions and rationales) and its
  change against fp32;
- the tweet encoder's forward GFLOP/s (FLOPs counted by torch) as a fraction of the matmul peak of the same
  dtype measured in the same run.
Writes ``inference`` into results/benchmarks/speed.json (with commit and machine) and prints a table.

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/inference_speed.py [--threads 2] [--posts 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
MAIN = REPO / "runs" / "reproduce" / "main" / "twitter2015" / "span"


def throughput(model, posts: list[dict], batch: int, rounds: int) -> dict:
    model.predict_batch(posts[:batch], batch_size=batch)  # warm-up (allocators, lazy loads)
    rates, stages = [], {}
    for _ in range(rounds):
        t0 = time.perf_counter()
        preds = model.predict_batch(posts, batch_size=batch)
        rates.append(len(posts) / (time.perf_counter() - t0))
        for k in preds[0].timings_ms:
            stages[k] = round(sum(p.timings_ms[k] for p in preds) / len(preds), 3)
    return {"posts": len(posts), "batch": batch, "posts_per_s_best": round(max(rates), 1),
            "posts_per_s_all": [round(r, 1) for r in rates], "ms_per_post_by_stage": stages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text-checkpoint", type=Path, default=MAIN / "text" / "seed0")
    ap.add_argument("--lrsa-checkpoint", type=Path, default=MAIN / "lrsa-arkmsa" / "seed0")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--posts", type=int, default=674, help="test posts timed (all 674 by default)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("text", "lrsa"), default=None,
                    help="measure one model again; the other's rows are kept from --out")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "speed.json")
    args = ap.parse_args()

    import torch

    from lrsa.api import LRSA
    from lrsa.io import git_commit
    from lrsa.precision import cpu_has_bf16
    from serving_bench import encoder_rate, matmul_peak, real_posts

    torch.set_num_threads(args.threads)
    posts = real_posts(args.posts)
    load0 = os.getloadavg()
    peaks = {p: matmul_peak(dtype={"fp32": "float32", "bf16": "bfloat16"}[p]) for p in ("fp32", "bf16")}
    from speed_record import read, record

    old = read(args.out).get("inference", {})
    rows = {k: v for k, v in old.get("rows", {}).items() if args.only and not k.startswith(args.only)}
    for name, ckpt in (("text", args.text_checkpoint), ("lrsa", args.lrsa_checkpoint)):
        if args.only and name != args.only:
            continue
        for precision in ("fp32", "bf16"):
            model = LRSA.from_pretrained(ckpt, precision=precision, threads=args.threads)
            print(f"{name} {precision}: timing {len(posts)} posts ...", flush=True)
            row = throughput(model, posts, args.batch, args.rounds)
            ev = model.evaluate_split("twitter2015", "test")
            row["test_jmasa_f1"] = round(ev["scores"]["jmasa"]["f1"], 2)
            enc = encoder_rate(ckpt, posts[:16], precision=precision)
            row["encoder_gflops"] = {k: v["gflops"] for k, v in enc.items() if isinstance(v, dict)}
            row["encoder_fraction_of_peak"] = {k: round(g / peaks[precision]["gflops_best"], 3)
                                               for k, g in row["encoder_gflops"].items()}
            rows[f"{name}_{precision}"] = row
            print(json.dumps(row), flush=True)
    for name in ("text", "lrsa"):
        rows[f"{name}_bf16"]["f1_change_vs_fp32"] = round(
            rows[f"{name}_bf16"]["test_jmasa_f1"] - rows[f"{name}_fp32"]["test_jmasa_f1"], 2)
    best = {n: max(("fp32", "bf16"), key=lambda p: rows[f"{n}_{p}"]["posts_per_s_best"]) for n in ("text", "lrsa")}
    fig = {
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "cpu_bf16": cpu_has_bf16(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "loadavg_start": [round(x, 2) for x in load0],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "checkpoints": {"text": str(args.text_checkpoint), "lrsa": str(args.lrsa_checkpoint)},
        "posts": "twitter2015 test + MDCA captions as image_text; lrsa writes lexicon rationales per post",
        "matmul_peak_gflops": {p: v["gflops_best"] for p, v in peaks.items()},
        "rows": rows,
        "text_only_posts_per_s": rows[f"text_{best['text']}"]["posts_per_s_best"],
        "side_posts_per_s": rows[f"lrsa_{best['lrsa']}"]["posts_per_s_best"],
        # the fastest path's encoder against the peak of its own dtype, and the fp32 path's against fp32's
        "encoder_fraction_of_peak": rows[f"text_{best['text']}"]["encoder_fraction_of_peak"]["posts_16"],
        "encoder_fraction_of_peak_fp32": rows["text_fp32"]["encoder_fraction_of_peak"]["posts_16"],
        "fastest_precision": best,
    }
    print(f"\n| model | precision | posts/s | test JMASA F1 | encoder GFLOP/s (16 posts) | of {'/'.join(peaks)} peak |")
    print("|---|---|---|---|---|---|")
    for key, r in rows.items():
        n, p = key.split("_")
        print(f"| {n} | {p} | {r['posts_per_s_best']} | {r['test_jmasa_f1']} | {r['encoder_gflops']['posts_16']} "
              f"| {100 * r['encoder_fraction_of_peak']['posts_16']:.0f} % of {peaks[p]['gflops_best']} |")
    record("inference", fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
