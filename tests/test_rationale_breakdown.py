"""benchmarks/rationale_breakdown.py on the real Twitter-2015 test split and the real MiniGPT-4 aspect reasons:
the MASC breakdown groups every gold aspect by the sentiment its reason states, and scores each model on them.
Two stand-in "models" whose answers are known make every number checkable: one answers gold, the other
answers what the reason states (the report's reason_stated baseline)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import rationale_breakdown as rb  # noqa: E402

pytestmark = pytest.mark.data


def _write_run(run, examples, polarity_of) -> None:
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {"rationale_source": "arkmsa-aspect"}}))
    (run / "predictions_test.jsonl").write_text("".join(json.dumps(
        {"id": ex.id, "aspects": [{"start": a.start, "end": a.end, "polarity": polarity_of(ex, a)}
                                  for a in ex.aspects]}) + "\n" for ex in examples))


def test_masc_breakdown_groups_aspects_by_what_their_reason_states(tmp_path, data_dir):
    from lrsa.data import load_dataset
    from lrsa.rationales.bundle import bundle_path, load_bundle
    from lrsa.rationales.published import aspect_key, import_published, stated_sentiment

    if not bundle_path("twitter2015", "arkmsa-aspect").is_file():
        import_published("twitter2015", "arkmsa-aspect", data_dir)
    reasons = load_bundle("twitter2015", "arkmsa-aspect", level="aspect")
    examples = load_dataset("twitter2015", "test", data_dir)

    def said(ex, a):  # an unparsed reason is wrong in the baseline: here, a polarity that is not gold
        stated = stated_sentiment(reasons[aspect_key(ex.id, a.start, a.end)].text)
        return stated or next(p for p in ("POS", "NEU", "NEG") if p != a.polarity)

    runs, results = tmp_path / "runs", tmp_path / "results"
    for k in ("seed0", "seed1"):
        _write_run(runs / "twitter2015/masc/aspect/lrsa-arkmsa-aspect" / k, examples, lambda ex, a: a.polarity)
        _write_run(runs / "twitter2015/masc/aspect/text" / k, examples, said)
        for v in ("lrsa-arkmsa-aspect", "text"):
            (results / "twitter2015/runs/masc/aspect" / v).mkdir(parents=True, exist_ok=True)
            (results / "twitter2015/runs/masc/aspect" / v / f"{k}.json").write_text("{}")
    # seed2 has runs but no records: it never entered the table, so it is left out
    _write_run(runs / "twitter2015/masc/aspect/lrsa-arkmsa-aspect/seed2", examples, lambda ex, a: a.polarity)
    b = rb.masc_breakdown("twitter2015", runs, "lrsa-arkmsa-aspect", results)
    assert b["seeds"] == ["seed0", "seed1"] and b["metric"] == "accuracy"
    g = b["groups"]
    n = sum(len(ex.aspects) for ex in examples)
    assert g["all gold aspects"]["n"] == n == 1037
    yes, no = g["the reason states the gold sentiment: yes"], g["the reason states the gold sentiment: no"]
    assert yes["recall_text"] == 100.0 and no["recall_text"] == 0.0  # the stand-in text model is the reason
    assert yes["recall_lrsa"] == no["recall_lrsa"] == 100.0
    # the "text" stand-in is the committed report's reason_stated baseline
    baseline = json.loads((REPO / "results/twitter2015/report.json").read_text())["masc_baselines"]["reason_stated"]
    assert b["masc_acc"]["text"] == pytest.approx(baseline["test"]["acc"], abs=0.01)
    assert yes["n"] + no["n"] + g.get("the reason states the gold sentiment: none stated", {"n": 0})["n"] == n
    assert b["masc_acc"]["diff"] == pytest.approx(100 - baseline["test"]["acc"], abs=0.01)
    ci = b["masc_acc"]["seed_ci95"]  # two identical seeds: an interval of zero width at the difference
    assert ci["lo"] == pytest.approx(b["masc_acc"]["diff"], abs=0.01) == ci["hi"]
    none = g["the reason states the gold sentiment: none stated"]
    assert none["n"] == baseline["test"]["unparsed"] == 2 and none["recall_text"] == 0.0
