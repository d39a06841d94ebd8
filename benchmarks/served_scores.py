"""Scores as served: test JMASA F1 of a checkpoint with the inputs a user's post gets on this machine.

For each checkpoint (default: the main job's span `text` and `lrsa` models) three readings of the test split
of the dataset it was trained on (Twitter-2015 or Twitter-2017), all from the same weights:
- ``served``: ``LRSA.predict_batch`` on the posts as a user sends them (the text, the MDCA captions as
  ``image_text``) with the checkpoint's default rationale writers: a part whose training writer cannot run
  here (e.g. the published MiniGPT-4 descriptions) is left empty, never filled by another writer;
- ``no_image``: the same posts without any image (no V, no L_i): what a text-only post gets;
- ``bundle``: ``evaluate_split`` with the rationale bundle the model was trained with (the benchmark's
  reading; for a text model the same as served).
Predicted character spans are mapped back to the benchmark's words (``fast_path_check.served_aspects``).
Writes ``served_scores`` into results/benchmarks/speed.json: per model ``served_test_jmasa_f1``,
``no_image_test_jmasa_f1``, ``bundle_test_jmasa_f1`` and the writer of each rationale part as served.

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/served_scores.py [--checkpoint NAME=PATH ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
MAIN = REPO / "runs" / "reproduce" / "main" / "twitter2015" / "span"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                    help="default: main_text and main_lrsa (the main job's models)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--split", default="test", choices=("dev", "test"),
                    help="dev: the served-style reading for choosing a served model's schedule (never recorded)")
    ap.add_argument("--no-record", action="store_true", help="print only; leave speed.json alone")
    args = ap.parse_args()

    import torch

    from fast_path_check import served_aspects
    from serving_bench import real_posts
    from speed_record import read, record

    from lrsa import LRSA
    from lrsa.data import load_dataset
    from lrsa.env import machine
    from lrsa.io import git_commit
    from lrsa.training.metrics import score

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpts = dict(c.split("=", 1) for c in args.checkpoint) or {
        "main_text": str(MAIN / "text" / "seed0"), "main_lrsa": str(MAIN / "lrsa-arkmsa" / "seed0")}
    out = {}
    measured = {"commit": git_commit(), "machine": machine(torch.get_num_threads())}  # per row: rows of other runs stay
    for name, path in ckpts.items():
        model = LRSA.from_pretrained(path)
        dataset = model.run.train.dataset
        examples = load_dataset(dataset, args.split)
        posts = real_posts(len(examples), dataset, args.split)
        bare = [{"id": p["id"], "text": p["text"]} for p in posts]
        served = model.predict_batch(posts, batch_size=args.batch)
        no_image = model.predict_batch(bare, batch_size=args.batch)
        bundle = model.evaluate_split(dataset, args.split)["scores"]
        row = {"checkpoint": os.path.relpath(Path(path).resolve(), REPO),  # e.g. ../lrsa-table-<commit>/runs/...
               "dataset": dataset,
               "served_test_jmasa_f1": score(examples, served_aspects(examples, served))["jmasa"]["f1"],
               "no_image_test_jmasa_f1": score(examples, served_aspects(examples, no_image))["jmasa"]["f1"],
               "bundle_test_jmasa_f1": bundle["jmasa"]["f1"]}
        row["served_writers"] = {k: v.model_dump() for k, v in served[0].rationale_writers.items()}
        row["served_notes"] = sorted({n for p in served for n in p.notes})
        row["measured"] = measured
        out[name] = row
        print(f"{name}: served {row['served_test_jmasa_f1']:.2f}, no image {row['no_image_test_jmasa_f1']:.2f}, "
              f"bundle {row['bundle_test_jmasa_f1']:.2f} ({path})")
    if not args.no_record and args.split == "test":
        section = read().get("served_scores", {}) | out
        section["_about"] = {"posts": "the test split of each model's dataset, MDCA captions as image_text",
                             "script": "benchmarks/served_scores.py", "measured": "per row (commit, machine)"}
        record("served_scores", section)


if __name__ == "__main__":
    main()
