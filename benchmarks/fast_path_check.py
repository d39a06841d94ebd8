"""Does the serving fast path predict what the reference path predicts? Predictions on the full Twitter-2015
test split, as a user's posts are served (``LRSA.predict_batch``: the post's text with its MDCA captions as
``image_text``, rationales from the checkpoint's serving writer), for the reference setting (the
checkpoint's precision, no quantization, its own side-text token budget) and for each fast-path setting
(``lrsa.model.quantize``: int8 dynamic quantization, side-text token budget; and the precision).

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/fast_path_check.py \\
        [--checkpoint runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0] [--settings quantize=all ...]

For each setting it prints and writes (default results/serving/fast_path_check.json) the test JMASA F1 (and
P, R, MATE F1) of the served predictions next to the reference's, the F1 change, the number of posts whose
predicted (span, polarity) set differs from the reference's, and the largest confidence change on the
aspects both found. Posts go in batches of ``--batch`` (16: the service's micro-batch); the same batches
for every setting, so the only difference is the setting. The posts/s printed are informative only (this
machine may be busy); the service's speed is measured by ``benchmarks/serving_bench.py``.

A setting is ``key=value[,key=value]`` with keys ``precision`` (fp32, bf16), ``quantize`` (none, side, host,
all), ``side_max_tokens`` and ``int8_recipe`` (``lrsa.model.quantize.RECIPES``; default: its default);
``reference`` is the checkpoint as it loads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
MAIN_LRSA = REPO / "runs" / "reproduce" / "main" / "twitter2015" / "span" / "lrsa-arkmsa" / "seed0"
DEFAULT_SETTINGS = ("precision=fp32", "quantize=side", "quantize=host", "quantize=all", "side_max_tokens=64",
                    "precision=fp32,quantize=side", "quantize=all,side_max_tokens=64")
KEYS = {"precision": str, "quantize": str, "side_max_tokens": int, "int8_recipe": str}


def parse_setting(s: str) -> dict[str, Any]:
    """``"quantize=all,side_max_tokens=64"`` -> keyword arguments of ``LRSA.from_pretrained``."""
    if s in ("", "reference"):
        return {}
    out: dict[str, Any] = {}
    for part in s.split(","):
        k, _, v = part.partition("=")
        if k not in KEYS or not v:
            raise SystemExit(f"setting {s!r}: {part!r} is not key=value with a key of {', '.join(KEYS)}")
        out[k] = KEYS[k](v)
    return out


def setting_name(kw: dict[str, Any]) -> str:
    """The canonical name of a setting (keys in a fixed order; ``reference`` when empty)."""
    return ",".join(f"{k}={kw[k]}" for k in KEYS if kw.get(k) is not None) or "reference"


def served_aspects(examples, preds) -> dict[str, list]:
    """Predicted aspects on the gold words: the served prediction's character spans mapped to the word
    indices of the example (the served tokeniser may split the text differently from the data's words)."""
    from lrsa.data.schema import Aspect

    out: dict[str, list] = {}
    for ex, pred in zip(examples, preds):
        starts, pos = [], 0
        for w in ex.words:
            starts.append(pos)
            pos += len(w) + 1
        def word_at(c: int) -> int:
            i = 0
            while i + 1 < len(starts) and starts[i + 1] <= c:
                i += 1
            return i
        out[ex.id] = [Aspect(start=word_at(a.char_start), end=word_at(a.char_end - 1) + 1, polarity=a.polarity)
                      for a in pred.aspects]
    return out


def triples(pred) -> set[tuple[int, int, str]]:
    return {(a.start, a.end, a.polarity) for a in pred.aspects}


def run_setting(ckpt: Path, kw: dict[str, Any], posts: list[dict], batch: int) -> tuple[list, float, dict]:
    from lrsa.api import LRSA

    kw = dict(kw)
    recipe = kw.pop("int8_recipe", None)
    if recipe is None:
        model = LRSA.from_pretrained(ckpt, **kw)
    else:  # another int8 recipe than the default (lrsa.model.quantize.RECIPES)
        from lrsa.model.quantize import apply_fast_path

        model = LRSA.from_pretrained(ckpt, precision=kw.get("precision"))
        apply_fast_path(model, kw.get("quantize"), kw.get("side_max_tokens"), recipe=recipe)
    model.predict_batch(posts[:batch], batch_size=batch)  # lazy loads (side encoder, rationale writer)
    t0 = time.perf_counter()
    preds = model.predict_batch(posts, batch_size=batch)
    rate = len(posts) / (time.perf_counter() - t0)
    info = {"precision": model.precision, "fast_path": getattr(model, "fast_path", None)}
    return preds, rate, info


def compare(ref: list, got: list) -> dict[str, Any]:
    differ = sum(triples(a) != triples(b) for a, b in zip(ref, got))
    conf = 0.0
    for a, b in zip(ref, got):
        cb = {(x.start, x.end, x.polarity): x.confidence for x in b.aspects}
        for x in a.aspects:
            k = (x.start, x.end, x.polarity)
            if k in cb:
                conf = max(conf, abs(cb[k] - x.confidence))
    return {"posts_differ": differ, "max_confidence_change": round(conf, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=MAIN_LRSA)
    ap.add_argument("--settings", nargs="*", default=list(DEFAULT_SETTINGS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--limit", type=int, default=None, help="first N test posts only (development)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "serving" / "fast_path_check.json")
    args = ap.parse_args()
    if not os.environ.get("LRSA_DATA_DIR"):
        sys.exit("set LRSA_DATA_DIR (e.g. ../shared/data)")

    import torch

    from lrsa.data import load_dataset
    from lrsa.env import cpu_model
    from lrsa.io import git_commit
    from lrsa.training.metrics import score
    from serving_bench import real_posts

    torch.set_num_threads(args.threads)
    examples = load_dataset("twitter2015", "test")
    if args.limit:
        examples = examples[:args.limit]
    posts = real_posts(len(examples))
    assert [p["id"] for p in posts] == [ex.id for ex in examples]
    ckpt = args.checkpoint / "best" if (args.checkpoint / "best" / "config.json").exists() else args.checkpoint
    own = json.loads((ckpt / "config.json").read_text())["run"]["train"].get("precision", "fp32")
    settings = [{k: v for k, v in parse_setting(s).items() if not (k == "precision" and v == own)}
                for s in ["reference", *args.settings]]  # the checkpoint's own precision is the reference
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "checkpoint": str(args.checkpoint), "checkpoint_precision": own, "commit": git_commit(),
        "machine": {"cpu": cpu_model() or "unknown", "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": args.threads, "loadavg_at_start": os.getloadavg()},
        "posts": f"twitter2015 test ({len(posts)} posts) + MDCA captions as image_text, as served "
                 f"(LRSA.predict_batch, batch {args.batch})",
        "settings": {},
    }
    ref_preds = None
    ref_f1 = None
    print(f"{'setting':<42} {'F1':>6} {'dF1':>6} {'P':>6} {'R':>6} {'MATE':>6} {'differ':>7} {'max dconf':>9} "
          f"{'posts/s':>8}", flush=True)
    for kw in settings:
        name = setting_name(kw)
        if name in result["settings"]:
            continue
        preds, rate, info = run_setting(args.checkpoint, kw, posts, args.batch)
        s = score(examples, served_aspects(examples, preds))
        row: dict[str, Any] = {"kwargs": kw, **info, "test_jmasa_f1": round(s["jmasa"]["f1"], 2),
                               "test_jmasa_p": round(s["jmasa"]["p"], 2), "test_jmasa_r": round(s["jmasa"]["r"], 2),
                               "test_mate_f1": round(s["mate"]["f1"], 2),
                               "posts_per_s_informative": round(rate, 1)}
        if ref_preds is None:
            ref_preds, ref_f1 = preds, row["test_jmasa_f1"]
            row.update({"posts_differ": 0, "max_confidence_change": 0.0})
        else:
            row.update(compare(ref_preds, preds))
        row["f1_change"] = round(row["test_jmasa_f1"] - ref_f1, 2)
        result["settings"][name] = row
        print(f"{name:<42} {row['test_jmasa_f1']:>6.2f} {row['f1_change']:>+6.2f} {row['test_jmasa_p']:>6.2f} "
              f"{row['test_jmasa_r']:>6.2f} {row['test_mate_f1']:>6.2f} {row['posts_differ']:>4}/{len(posts):<3}"
              f"{row['max_confidence_change']:>9.4f} {rate:>8.1f}", flush=True)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from lrsa.io import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
