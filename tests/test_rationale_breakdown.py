"""benchmarks/rationale_breakdown.py on the real Twitter-2015 test split and the real MiniGPT-4 aspect reasons:
the MASC breakdown groups every gold aspect by the sentiment its reason states, and scores each model on them.
Two stand-in "models" whose answers are known make every number checkable: one answers gold, the other
answers what the reason states (the report's reason_stated baseline)."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import rationale_breakdown as rb  # noqa: E402

pytestmark = pytest.mark.data


def _write_run(runs, results, key, examples, polarity_of, record=True) -> None:
    """A finished table run: its test predictions in the run directory and, unless ``record`` is False, its
    record (per-item counts from those predictions, as ``lrsa reproduce`` writes it)."""
    from lrsa.training.records import item_record, record_path

    run = runs / key
    run.mkdir(parents=True)
    (run / "predictions_test.jsonl").write_text("".join(json.dumps(
        {"id": ex.id, "aspects": [{"start": a.start, "end": a.end, "polarity": polarity_of(ex, a)}
                                  for a in ex.aspects]}) + "\n" for ex in examples))
    if record:
        rec = {"key": key, "origin": "run", "result": {"config": {"train": {"rationale_source": "arkmsa-aspect"}}},
               "test_items": item_record("masc", examples, run / "predictions_test.jsonl")}
        record_path(results, key).parent.mkdir(parents=True, exist_ok=True)
        record_path(results, key).write_text(json.dumps(rec))


@pytest.fixture(scope="module")
def reasons_and_test(data_dir):
    from lrsa.data import load_dataset
    from lrsa.rationales.bundle import bundle_path, load_bundle
    from lrsa.rationales.published import import_published

    if not bundle_path("twitter2015", "arkmsa-aspect").is_file():
        import_published("twitter2015", "arkmsa-aspect", data_dir)
    return load_bundle("twitter2015", "arkmsa-aspect", level="aspect"), load_dataset("twitter2015", "test", data_dir)


def _said(reasons):
    from lrsa.rationales.published import aspect_key, stated_sentiment

    def said(ex, a):  # an unparsed reason is wrong in the baseline: here, a polarity that is not gold
        stated = stated_sentiment(reasons[aspect_key(ex.id, a.start, a.end)].text)
        return stated or next(p for p in ("POS", "NEU", "NEG") if p != a.polarity)
    return said


def test_masc_breakdown_groups_aspects_by_what_their_reason_states(tmp_path, reasons_and_test):
    reasons, examples = reasons_and_test
    runs, results = tmp_path / "runs", tmp_path / "results"
    for k in ("seed0", "seed1"):
        _write_run(runs, results, f"twitter2015/masc/aspect/lrsa-arkmsa-aspect/{k}", examples, lambda ex, a: a.polarity)
        _write_run(runs, results, f"twitter2015/masc/aspect/text/{k}", examples, _said(reasons))
    # seed2 has runs but no records: it never entered the table, so it is left out
    _write_run(runs, results, "twitter2015/masc/aspect/lrsa-arkmsa-aspect/seed2", examples, lambda ex, a: a.polarity,
               record=False)
    _write_run(runs, results, "twitter2015/masc/aspect/text/seed2", examples, _said(reasons), record=False)
    # the breakdown reads the predictions archived beside the records, not the run directories
    assert rb.masc_breakdown("twitter2015", "lrsa-arkmsa-aspect", results)["seeds"] == []
    assert rb.archive_all(runs, results, log=lambda m: None) == 4
    assert rb.archive_all(runs, results, log=lambda m: None) == 0  # written once
    shutil.rmtree(runs)  # the machine that trained them is gone
    b = rb.masc_breakdown("twitter2015", "lrsa-arkmsa-aspect", results)
    assert b["seeds"] == b["archived_seeds"] == ["seed0", "seed1"] and b["metric"] == "accuracy"
    assert "carried" not in b
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


def test_an_archive_must_match_its_record_and_unarchived_seeds_are_carried(tmp_path, reasons_and_test):
    """A run directory retrained after its record was written is refused; seeds of the committed breakdown
    whose predictions were never archived keep their per-seed figures, and new seeds are added to them."""
    from lrsa.training.records import archive_predictions, predictions_path

    reasons, examples = reasons_and_test
    runs, results = tmp_path / "runs", tmp_path / "results"
    key = "twitter2015/masc/aspect/text/seed2"
    _write_run(runs, results, key, examples, _said(reasons))
    (runs / key / "predictions_test.jsonl").write_text((runs / key / "predictions_test.jsonl").read_text()
                                                       .replace('"NEG"', '"POS"'))  # retrained since
    with pytest.raises(ValueError, match="do not give the per-item counts of the record"):
        archive_predictions(results, key, runs / key, examples)
    assert not predictions_path(results, key).exists()
    shutil.rmtree(runs)

    # seed2: lrsa answers gold, text the reason (the first test's figures); seeds 0-1 only in the old breakdown
    _write_run(runs, results, key, examples, _said(reasons))
    _write_run(runs, results, "twitter2015/masc/aspect/lrsa-arkmsa-aspect/seed2", examples, lambda ex, a: a.polarity)
    assert rb.archive_all(runs, results, log=lambda m: None) == 2
    fresh = rb.masc_breakdown("twitter2015", "lrsa-arkmsa-aspect", results)
    d2 = fresh["masc_acc"]["diff"]
    old = {"seeds": ["seed0", "seed1"], "rationale_source": "arkmsa-aspect",
           "masc_acc": {"lrsa": 70.0, "text": 69.0, "diff": 1.0, "per_seed": [0.5, 1.5]},
           "groups": {key: {"n": g["n"], "recall_lrsa": 50.0, "recall_text": 40.0, "per_seed": [9.0, 11.0]}
                      for key, g in fresh["groups"].items()}}
    b = rb.masc_breakdown("twitter2015", "lrsa-arkmsa-aspect", results, old)
    assert b["seeds"] == ["seed0", "seed1", "seed2"] and b["archived_seeds"] == ["seed2"]
    assert b["carried"]["seeds"] == ["seed0", "seed1"]
    acc = b["masc_acc"]
    assert acc["per_seed"] == [0.5, 1.5, round(d2, 2)]
    assert acc["lrsa"] == pytest.approx((2 * 70.0 + fresh["masc_acc"]["lrsa"]) / 3, abs=0.01)
    assert acc["diff"] == pytest.approx((0.5 + 1.5 + d2) / 3, abs=0.01) and acc["seed_ci95"]["n"] == 3
    yes = b["groups"]["the reason states the gold sentiment: yes"]
    assert yes["seeds"] == 3 and yes["recall_text"] == pytest.approx((2 * 40.0 + 100.0) / 3, abs=0.01)
    assert yes["per_seed"][:2] == [9.0, 11.0]
    # a rerun carries the same seeds from the breakdown it wrote; a carried seed cannot lose its figures
    assert rb.masc_breakdown("twitter2015", "lrsa-arkmsa-aspect", results, b) == b
    with pytest.raises(SystemExit, match="cannot be split"):
        rb.masc_breakdown("twitter2015", "lrsa-arkmsa-aspect", results, {**b, "seeds": ["seed0", "seed1", "seed2",
                                                                                       "seed3"]})


def test_a_torn_archive_is_an_error_naming_the_file(tmp_path, reasons_and_test):
    import gzip

    from lrsa.data.schema import DataError
    from lrsa.training.metrics import read_predictions

    _, examples = reasons_and_test
    line = json.dumps({"id": examples[0].id, "aspects": []}) + "\n"
    path = tmp_path / "seed0.predictions_test.jsonl.gz"
    path.write_bytes(gzip.compress(line.encode())[:-6])  # cut before its end
    with pytest.raises(DataError, match="seed0.predictions_test.jsonl.gz.*not a whole gzip file"):
        read_predictions(path, examples)
    path.write_bytes(gzip.compress(line.encode()))
    assert read_predictions(path, examples) == {examples[0].id: []}
