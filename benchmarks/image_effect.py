"""Where the image helps and where it hurts a served `lrsa` model, on dev and on test, aspect by aspect.

Issue 28 asks that the main job's `lrsa` model, as served, score no lower on test than the same weights with
the image removed. On dev the image side (V from the MDCA captions; L_i is empty when served) helps most
checkpoints a little; on test it costs most of them about a point. This benchmark reads both splits with both
inputs for several checkpoints and says where the difference comes from:

- per checkpoint and split: JMASA F1 served (text + captions as ``image_text``, the checkpoint's default
  writers) and with no image (text alone), their difference with a paired bootstrap over the split's posts;
- over the checkpoints (each one a "seed" of ``lrsa.training.stats.paired``): the mean difference per split,
  its t-interval over checkpoints and the two-level bootstrap (checkpoints, then posts);
- the gold triples that one reading finds and the other does not, split by whether the gold aspect's words
  occur in the captions ("named by the image text") and by polarity; the wrong triples each reading adds,
  split into a span that is not gold and a gold span with the wrong polarity.

Predictions are cached per checkpoint and split under ``runs/image_effect/`` (a rerun only re-scores);
the summary goes to ``results/experiments/image_effect.json``.

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/image_effect.py \
        --checkpoint main=runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0 [--checkpoint NAME=PATH ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
CACHE = REPO / "runs" / "image_effect"
OUT = REPO / "results" / "experiments" / "image_effect.json"


def _predict(name: str, path: str, split: str, batch: int) -> tuple[str, dict[str, dict[str, list]]]:
    """(dataset, {"served": {id: [[start, end, polarity], ...]}, "no_image": {...}}) on the gold words,
    cached on disk (atomic write) keyed by the checkpoint's weights file and the split."""
    from fast_path_check import served_aspects
    from serving_bench import real_posts

    from lrsa import LRSA
    from lrsa.data import load_dataset

    best = Path(path) / "best" if (Path(path) / "best" / "config.json").exists() else Path(path)
    digest = hashlib.sha256((best / "model.safetensors").read_bytes()).hexdigest()[:16]
    cache = CACHE / f"{name}-{split}-{digest}.json"
    if cache.is_file():
        d = json.loads(cache.read_text())
        return d["dataset"], d["predictions"]
    model = LRSA.from_pretrained(path)
    dataset = model.run.train.dataset
    examples = load_dataset(dataset, split)
    posts = real_posts(len(examples), dataset, split)
    bare = [{"id": p["id"], "text": p["text"]} for p in posts]
    preds = {}
    for reading, inputs in (("served", posts), ("no_image", bare)):
        got = served_aspects(examples, model.predict_batch(inputs, batch_size=batch))
        preds[reading] = {k: [[a.start, a.end, a.polarity] for a in v] for k, v in got.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".part")
    tmp.write_text(json.dumps({"checkpoint": path, "dataset": dataset, "split": split, "predictions": preds}))
    os.replace(tmp, cache)
    return dataset, preds


def _breakdown(examples, captions: dict[str, str], served: dict, no_image: dict) -> dict:
    """Gold triples found by one reading only (by caption naming and polarity) and wrong triples added."""
    gained, lost = Counter(), Counter()
    wrong = {"served": Counter(), "no_image": Counter()}
    changed = named_gold = 0
    for ex in examples:
        gold = {(a.start, a.end, a.polarity) for a in ex.aspects}
        gold_spans = {(a.start, a.end) for a in ex.aspects}
        s = {tuple(t) for t in served.get(ex.id, [])}
        n = {tuple(t) for t in no_image.get(ex.id, [])}
        changed += s != n
        cap = captions.get(ex.id, "").lower()
        named_gold += sum(" ".join(ex.words[a.start:a.end]).lower() in cap for a in ex.aspects)
        for t in gold:
            named = " ".join(ex.words[t[0]:t[1]]).lower() in cap
            key = f"{'named' if named else 'not_named'}/{t[2]}"
            if t in s and t not in n:
                gained[key] += 1
            elif t in n and t not in s:
                lost[key] += 1
        for reading, pred in (("served", s), ("no_image", n)):
            for t in pred - gold:
                wrong[reading]["gold_span_wrong_polarity" if t[:2] in gold_spans else "span_not_gold"] += 1
    return {"posts": len(examples), "posts_changed": changed,
            "gold_aspects": sum(len(ex.aspects) for ex in examples), "gold_named_by_captions": named_gold,
            "gold_found_by_served_only": dict(sorted(gained.items())),
            "gold_found_by_no_image_only": dict(sorted(lost.items())),
            "wrong_triples": {k: dict(sorted(v.items())) for k, v in wrong.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--splits", nargs="+", default=["dev", "test"], choices=("dev", "test"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    import numpy as np
    import torch

    from serving_bench import real_posts

    from lrsa.data import load_dataset
    from lrsa.data.schema import Aspect
    from lrsa.env import machine
    from lrsa.io import git_commit
    from lrsa.training.metrics import item_counts, score
    from lrsa.training.stats import paired

    torch.set_num_threads(args.threads)
    ckpts = dict(c.split("=", 1) for c in args.checkpoint)
    out: dict = {"what": __doc__.split("\n\n")[0], "commit": git_commit(), "machine": machine(args.threads),
                 "checkpoints": {k: os.path.relpath(Path(v).resolve(), REPO) for k, v in ckpts.items()},
                 "splits": {}}
    for split in args.splits:
        rows, f1 = {}, {"served": {}, "no_image": {}}
        items: dict[str, dict[int, tuple[str, np.ndarray]]] = {"served": {}, "no_image": {}}
        datasets = {}
        for i, (name, path) in enumerate(ckpts.items()):
            dataset, preds = _predict(name, path, split, args.batch)
            datasets[name] = dataset
            examples = load_dataset(dataset, split)
            ids = hashlib.sha256("\n".join(ex.id for ex in examples).encode()).hexdigest()
            captions = {p["id"]: p["image_text"] for p in real_posts(len(examples), dataset, split)}
            as_aspects = {r: {k: [Aspect(start=s, end=e, polarity=p) for s, e, p in v] for k, v in preds[r].items()}
                          for r in preds}
            row = {"dataset": dataset}
            for reading in ("served", "no_image"):
                row[reading] = round(score(examples, as_aspects[reading])["jmasa"]["f1"], 2)
                f1[reading][i] = row[reading]
                items[reading][i] = (f"{dataset}:{ids}", np.array(item_counts("jmasa", examples, as_aspects[reading])))
            one = paired("jmasa", {0: row["served"]}, {0: row["no_image"]}, {0: items["served"][i]},
                         {0: items["no_image"][i]})
            row["served_minus_no_image"] = round(row["served"] - row["no_image"], 2)
            row["post_bootstrap95"] = {k: one["bootstrap"][k] for k in ("lo", "hi")}
            row["breakdown"] = _breakdown(examples, captions, preds["served"], preds["no_image"])
            rows[name] = row
            print(f"{split} {name} ({dataset}): served {row['served']:.2f}, no image {row['no_image']:.2f}, "
                  f"diff {row['served_minus_no_image']:+.2f} [{one['bootstrap']['lo']:+.2f}, "
                  f"{one['bootstrap']['hi']:+.2f}]; changed posts {row['breakdown']['posts_changed']}")
        split_out: dict = {"per_checkpoint": rows}
        for dataset in sorted(set(datasets.values())):  # one pooled comparison per dataset (same test items)
            idx = [i for i, n in enumerate(ckpts) if datasets[n] == dataset]
            if len(idx) < 2:
                continue
            p = paired("jmasa", {i: f1["served"][i] for i in idx}, {i: f1["no_image"][i] for i in idx},
                       {i: items["served"][i] for i in idx}, {i: items["no_image"][i] for i in idx})
            split_out[f"over_checkpoints_{dataset}"] = {
                "checkpoints": [list(ckpts)[i] for i in idx], "diffs": p["diffs"], "mean": p["seed_diff"]["mean"],
                "t95": p["seed_ci95"], "two_level95": p["two_level"]}
            print(f"{split} {dataset} over {len(idx)} checkpoints: mean {p['seed_diff']['mean']:+.2f}, "
                  f"t95 [{p['seed_ci95']['lo']:+.2f}, {p['seed_ci95']['hi']:+.2f}], two-level "
                  f"[{p['two_level']['lo']:+.2f}, {p['two_level']['hi']:+.2f}]")
        out["splits"][split] = split_out
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {os.path.relpath(args.out, REPO)}")


if __name__ == "__main__":
    main()
