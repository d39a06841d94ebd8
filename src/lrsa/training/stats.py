"""Statistics for claims that one variant beats another: mean ± std over seeds, seed-paired differences
with their t-interval over seeds, a paired bootstrap over test items and a two-level bootstrap (seeds, then
test items), plus the MASC baselines that need no training.

A claim that a variant helps needs an interval that includes seed variance (``seed_t_interval``,
``two_level_bootstrap``): the paired bootstrap over test items holds the trained models fixed and is
reported beside them, never instead.

Paired bootstrap (``paired``): the test items (sentences for JMASA, gold aspects for MASC) are resampled
with replacement ``n`` times (seed 0); on every resample each seed's score of the variant and of its
baseline is recomputed from per-item counts (JMASA: micro F1 from per-sentence true positives, predicted
and gold triples; MASC: accuracy), their difference averaged over the common seeds. The interval is the
2.5th and 97.5th percentile of those averages. The counts come from the run records
(``lrsa.training.records``); seed-paired differences use every common seed, the bootstrap the common seeds
whose records hold counts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lrsa.data.schema import POLARITIES

N_RESAMPLES = 2000


def summary(values: list[float]) -> dict[str, float | None]:
    """``{"mean", "std"}`` (sample std; None for fewer than two values)."""
    if not values:
        return {"mean": None, "std": None}
    m = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": round(m, 2), "std": None}
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return {"mean": round(m, 2), "std": round(sd, 2)}


def _score(task: str, c: np.ndarray) -> np.ndarray:
    """Score per resample from summed counts ``c [..., k]`` (percent)."""
    if task == "masc":
        return 100 * c[..., 0] / np.maximum(c[..., 1], 1)
    tp, n_pred, n_gold = c[..., 0], c[..., 1], c[..., 2]
    p = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0)
    r = np.where(n_gold > 0, tp / np.maximum(n_gold, 1), 0.0)
    return 100 * np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)


def _resampled_diffs(task: str, variant_items: dict[int, tuple[str, np.ndarray]],
                     baseline_items: dict[int, tuple[str, np.ndarray]], seeds: list[int], n: int,
                     rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(items, [n, seeds] differences): each seed's variant − baseline score on ``n`` resamples of the test
    items (the same resamples for every seed), recomputed from the per-item counts."""
    if len({h for s in seeds for h, _ in (variant_items[s], baseline_items[s])}) != 1:
        raise ValueError(f"runs to compare were scored on different test items (seeds {seeds})")
    v = [variant_items[s][1] for s in seeds]
    b = [baseline_items[s][1] for s in seeds]
    if task == "masc":  # accuracy = correct / items: carry the item count as a second column
        v = [np.concatenate([x, np.ones_like(x)], axis=1) for x in v]
        b = [np.concatenate([x, np.ones_like(x)], axis=1) for x in b]
    items = v[0].shape[0]
    w = rng.multinomial(items, np.full(items, 1.0 / items), size=n).astype(np.float64)  # [n, items]
    return items, np.stack([_score(task, w @ x) - _score(task, w @ y) for x, y in zip(v, b)], axis=1)


def paired(task: str, variant: dict[int, float], baseline: dict[int, float],
           variant_items: dict[int, tuple[str, np.ndarray]], baseline_items: dict[int, tuple[str, np.ndarray]],
           n: int = N_RESAMPLES) -> dict[str, Any]:
    """Seed-paired differences (variant − baseline) of the per-seed test scores over the common seeds, and
    the paired bootstrap 95 % interval of their mean over the common seeds that have per-item counts
    (``(ids_sha256, counts)`` per seed, ``lrsa.training.records``); ``bootstrap`` is None without any."""
    seeds = sorted(set(variant) & set(baseline))
    diffs = [variant[s] - baseline[s] for s in seeds]
    out: dict[str, Any] = {"seeds": seeds, "diffs": [round(d, 2) for d in diffs], "seed_diff": summary(diffs),
                           "seed_ci95": seed_t_interval(diffs), "bootstrap": None, "two_level": None}
    boot_seeds = [s for s in seeds if s in variant_items and s in baseline_items]
    if not boot_seeds:
        return out
    out["two_level"] = two_level_bootstrap(task, {s: variant_items[s] for s in boot_seeds},
                                           {s: baseline_items[s] for s in boot_seeds}, n)
    items, diff = _resampled_diffs(task, variant_items, baseline_items, boot_seeds, n, np.random.default_rng(0))
    boot = diff.mean(axis=1)  # the mean difference over the seeds, per resample
    lo, hi = np.percentile(boot, [2.5, 97.5])
    out["bootstrap"] = {"seeds": boot_seeds, "mean": round(float(boot.mean()), 2), "lo": round(float(lo), 2),
                        "hi": round(float(hi), 2), "resamples": n, "items": items, "above_zero": bool(lo > 0)}
    return out


def seed_t_interval(diffs: list[float], level: float = 0.95) -> dict[str, Any] | None:
    """The t-interval of the mean seed-paired difference (``{"lo", "hi", "n", "above_zero"}``): it treats
    the seeds as the sample, so it includes training noise; None for fewer than two seeds."""
    from scipy.stats import t

    n = len(diffs)
    if n < 2:
        return None
    m = sum(diffs) / n
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"lo": round(m - half, 2), "hi": round(m + half, 2), "n": n, "above_zero": bool(m - half > 0)}


def two_level_bootstrap(task: str, variant_items: dict[int, tuple[str, np.ndarray]],
                        baseline_items: dict[int, tuple[str, np.ndarray]], n: int = N_RESAMPLES
                        ) -> dict[str, Any] | None:
    """A two-level bootstrap of the mean seed-paired difference: each resample draws the seeds with
    replacement (training noise), then the test items with replacement (test-set noise), and recomputes
    every drawn seed's difference from its per-item counts. 95 % percentile interval; None for fewer than
    two common seeds with counts."""
    seeds = sorted(set(variant_items) & set(baseline_items))
    if len(seeds) < 2:
        return None
    rng = np.random.default_rng(0)
    items, diff = _resampled_diffs(task, variant_items, baseline_items, seeds, n, rng)
    k = len(seeds)
    pick = rng.integers(0, k, size=(n, k))  # the seeds each resample draws
    boot = np.take_along_axis(diff, pick, axis=1).mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"seeds": seeds, "lo": round(float(lo), 2), "hi": round(float(hi), 2), "resamples": n,
            "items": items, "above_zero": bool(lo > 0)}


def masc_baselines(dataset: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Accuracy / macro-F1 on dev and test of (1) the majority class of train and (2) the sentiment that
    the MiniGPT-4 reason states ("Sentiment: X."; an LLM output: unparseable counts as wrong)."""
    from lrsa.data import load_dataset
    from lrsa.data.schema import Aspect
    from lrsa.rationales.bundle import bundle_path, load_bundle
    from lrsa.rationales.published import aspect_key, stated_sentiment
    from lrsa.training.metrics import masc_pairs, score

    train = load_dataset(dataset, "train", data_dir)
    counts = {p: sum(a.polarity == p for ex in train for a in ex.aspects) for p in POLARITIES}
    majority = max(counts, key=counts.get)
    out: dict[str, Any] = {"majority": {"description": f"majority class of train ({majority})"}}
    if not bundle_path(dataset, "arkmsa-aspect").is_file():  # derived from the data files, never committed
        from lrsa.rationales.published import import_published

        import_published(dataset, "arkmsa-aspect", data_dir)
    reasons = load_bundle(dataset, "arkmsa-aspect", level="aspect")
    out["reason_stated"] = {"description": "sentiment stated by the MiniGPT-4 reason"}
    for split in ("dev", "test"):
        gold = load_dataset(dataset, split, data_dir)
        maj = {ex.id: [Aspect(start=a.start, end=a.end, polarity=majority) for a in ex.aspects] for ex in gold}
        out["majority"][split] = score(gold, maj)["masc"]
        pairs = [(a.polarity, stated_sentiment(reasons[aspect_key(ex.id, a.start, a.end)].text))
                 for ex in gold for a in ex.aspects]
        m = masc_pairs(pairs)  # an unparseable reason (None) is wrong and counts towards no class
        out["reason_stated"][split] = {"acc": m["acc"], "macro_f1": m["macro_f1"],
                                       "unparsed": sum(p is None for _, p in pairs)}
    return out
