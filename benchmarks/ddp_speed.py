"""Epoch time of one training process against a 2-process DDP run (Lightning Fabric, gloo), same global batch.

Trains the span `text` model on the full Twitter-2015 train split for `--epochs` epochs twice through the
real command (`lrsa train`): `--devices 1` with one torch thread, then `--devices 2` with one thread each
(test not scored). Records each epoch's training seconds and dev JMASA F1 from the runs' result.json and
writes ``ddp`` into results/benchmarks/speed.json (with commit and machine).

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/ddp_speed.py [--epochs 2] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(devices: int, out: Path, cache: Path, args) -> dict:
    cmd = [sys.executable, "-m", "lrsa", "train", "--config", str(REPO / "configs" / "twitter2015.yaml"),
           "--set", "model.fusion=off", "--set", "model.image_side=none", "--set", "model.train_layers=2",
           "--set", f"train.epochs={args.epochs}", "--set", f"train.patience={args.epochs}",
           "--set", "train.eval_test=false", "--set", "train.threads=1", "--set", f"train.precision={args.precision}",
           "--devices", str(devices), "--out", str(out), "--cache-dir", str(cache)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r = json.loads((out / "result.json").read_text())
    epochs = [h["train_seconds"] for h in r["history"]]
    return {"devices": devices, "wall_seconds": round(wall, 1), "train_seconds_per_epoch": epochs,
            "epoch_s": round(statistics.median(epochs), 2),
            "dev_jmasa_f1_per_epoch": [round(h["dev_jmasa_f1"], 2) for h in r["history"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "speed.json")
    args = ap.parse_args()
    from lrsa.io import git_commit

    tmp = Path(tempfile.mkdtemp(prefix="lrsa-ddp-"))
    load0 = os.getloadavg()
    run(1, tmp / "warm", tmp / "cache", argparse.Namespace(**{**vars(args), "epochs": 1}))  # fills the caches
    one = run(1, tmp / "one", tmp / "cache", args)
    two = run(2, tmp / "two", tmp / "cache", args)
    fig = {"epoch_s_1proc": one["epoch_s"], "epoch_s_2proc": two["epoch_s"],
           "ratio_2proc_to_1proc": round(two["epoch_s"] / one["epoch_s"], 3), "runs": [one, two],
           "setup": f"span text, full Twitter-2015 train (2,101 sentences), global batch 16, top-2 layers, "
                    f"{args.precision}, 1 torch thread per process, gloo",
           "commit": git_commit(),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg_start": [round(x, 2) for x in load0],
                       "loadavg_end": [round(x, 2) for x in os.getloadavg()]}}
    print(json.dumps(fig, indent=2))
    from speed_record import record

    record("ddp", fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
