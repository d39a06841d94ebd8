"""Batch prediction over a large file: `lrsa predict --input` on N posts (the Twitter-2015 test split
repeated), its throughput and its memory: RSS sampled every 0.5 s, growth from the sample after the first
1,000 posts to the largest later one. Writes ``batch_predict`` into results/benchmarks/speed.json.

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/batch_predict.py --checkpoint DIR [--posts 100000]

Without --checkpoint an untrained span `text` model is built (the speed and memory of the path are the
same; its predictions are not meaningful).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default="results/benchmarks/speed.json")
    args = ap.parse_args()

    from lrsa.data import load_dataset
    from lrsa.io import git_commit

    tmp = Path(tempfile.mkdtemp(prefix="lrsa-batch-"))
    ckpt = args.checkpoint
    if ckpt is None:
        from lrsa.api import LRSA
        from lrsa.config import RunConfig, apply_overrides, variant_overrides

        ckpt = str(tmp / "text")
        LRSA.build(RunConfig.model_validate(apply_overrides({}, variant_overrides("text")))).save_pretrained(ckpt)
    exs = load_dataset("twitter2015", "test")
    src = tmp / "posts.jsonl"
    with open(src, "w") as fh:
        for i in range(args.posts):
            fh.write(json.dumps({"id": f"p{i}", "text": exs[i % len(exs)].text}) + "\n")
    dest = tmp / "preds.jsonl"
    cmd = [sys.executable, "-m", "lrsa", "predict", "--checkpoint", ckpt, "--input", str(src), "--out", str(dest),
           "--batch-size", str(args.batch_size), "--json"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    samples: list[tuple[int, int]] = []  # (posts written, rss kB)
    written, reader = 0, None
    while proc.poll() is None:
        try:
            rss = rss_kb(proc.pid)
        except FileNotFoundError:
            break
        if reader is None and dest.exists():
            reader = open(dest, "rb")
        if reader is not None:
            written += reader.read().count(b"\n")  # the lines added since the last sample
        samples.append((written, rss))
        time.sleep(0.5)
    out, _ = proc.communicate()
    seconds = time.time() - t0
    summary = json.loads(out)
    after = [r for n, r in samples if n >= 1000]
    base = after[0] if after else None
    growth = round(100 * (max(after) - base) / base, 1) if after else None
    fig = {"posts": args.posts, "posts_per_s": summary["posts_per_s"], "wall_seconds": round(seconds, 1),
           "rss_mb_after_1000": round(base / 1024, 1) if base else None,
           "rss_mb_max": round(max(r for _, r in samples) / 1024, 1) if samples else None,
           "rss_growth_pct": growth, "batch_size": args.batch_size,
           "checkpoint": args.checkpoint or "untrained span text model", "commit": git_commit(),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                      f"load {os.getloadavg()[0]:.2f}"}
    print(json.dumps(fig, indent=2))
    from speed_record import record

    record("batch_predict", fig, Path(args.out))


if __name__ == "__main__":
    main()
