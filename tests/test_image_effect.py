"""benchmarks/image_effect.py (issue 28, item 1): the per-aspect breakdown of served vs no-image predictions
on the real Twitter-2015 test split, and the committed summary that the README quotes."""

from __future__ import annotations

import importlib.util
import json
from statistics import mean

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.data


def _bench():
    spec = importlib.util.spec_from_file_location("image_effect", REPO / "benchmarks" / "image_effect.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_breakdown_counts_gained_lost_and_wrong_triples_on_real_posts(data_dir):
    from lrsa.data import load_dataset

    examples = load_dataset("twitter2015", "test", data_dir)
    captions = {ex.id: "" for ex in examples}
    first = next(ex for ex in examples if ex.aspects)
    a = first.aspects[0]
    captions[first.id] = "a photo of " + " ".join(first.words[a.start:a.end]).upper()  # names it (any case)
    gold = {ex.id: [[x.start, x.end, x.polarity] for x in ex.aspects] for ex in examples}
    b = _bench()._breakdown(examples, captions, gold, {})
    n_gold = sum(len(ex.aspects) for ex in examples)
    assert b["gold_aspects"] == n_gold == sum(b["gold_found_by_served_only"].values())
    assert b["gold_found_by_no_image_only"] == {} and b["gold_named_by_captions"] >= 1
    assert b["gold_found_by_served_only"][f"named/{a.polarity}"] >= 1
    assert b["posts_changed"] == sum(bool(ex.aspects) for ex in examples)
    assert b["wrong_triples"] == {"served": {}, "no_image": {}}
    # one flipped polarity on a gold span and one invented span: each counted as its kind of wrong triple
    flip = next(p for p in ("POS", "NEU", "NEG") if p != a.polarity)
    assert (0, len(first.words)) not in {(x.start, x.end) for x in first.aspects}
    served = {**gold, first.id: [[a.start, a.end, flip], *gold[first.id][1:], [0, len(first.words), "POS"]]}
    b = _bench()._breakdown(examples, captions, served, gold)
    assert b["posts_changed"] == 1 and b["gold_found_by_served_only"] == {}
    assert b["gold_found_by_no_image_only"] == {f"named/{a.polarity}": 1}
    assert b["wrong_triples"] == {"served": {"gold_span_wrong_polarity": 1, "span_not_gold": 1}, "no_image": {}}


def test_committed_summary_is_consistent_and_quoted_by_the_readme():
    d = json.loads((REPO / "results" / "experiments" / "image_effect.json").read_text(encoding="utf-8"))
    assert "+dirty" not in d["commit"] and d["machine"]["cpu_model"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for split in ("dev", "test"):
        rows = d["splits"][split]["per_checkpoint"]
        assert set(rows) == set(d["checkpoints"])
        for name, r in rows.items():
            assert r["served_minus_no_image"] == round(r["served"] - r["no_image"], 2), (split, name)
            assert r["post_bootstrap95"]["lo"] <= r["served_minus_no_image"] <= r["post_bootstrap95"]["hi"]
        for dataset in ("twitter2015", "twitter2017"):
            pooled = d["splits"][split][f"over_checkpoints_{dataset}"]
            assert pooled["diffs"] == [rows[n]["served_minus_no_image"] for n in pooled["checkpoints"]]
            assert abs(pooled["mean"] - mean(pooled["diffs"])) < 0.01
            lo, hi = pooled["t95"]["lo"], pooled["t95"]["hi"]
            quoted = f"{pooled['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]".replace("-", "−")
            assert quoted in readme, quoted  # README's table is this file's figures
