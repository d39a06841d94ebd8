"""Scoring against hand computations, and the `lrsa score` command on the real benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lrsa.data import Aspect, Example, load_dataset
from lrsa.training.metrics import gold_as_predictions, score, write_predictions


def A(s: int, e: int, p: str) -> Aspect:
    return Aspect(start=s, end=e, polarity=p)


GOLD = [
    Example(id="test-0", words="Chuck Bass is everything , NYC hates it".split(),
            aspects=[A(0, 2, "POS"), A(5, 6, "NEG")]),
    # the same aspect string twice, with different polarities: spans decide, never strings
    Example(id="test-1", words="Trump says Trump wins".split(), aspects=[A(0, 1, "NEU"), A(2, 3, "POS")]),
    Example(id="test-2", words="Go Hawks".split(), aspects=[A(1, 2, "NEU")]),
]


def test_hand_computed_scores_with_missing_sentence() -> None:
    pred = {
        "test-0": [A(0, 2, "POS"), A(0, 2, "POS"),  # a duplicate predicted span counts once
                   A(5, 6, "POS")],  # right span, wrong polarity
        "test-1": [A(2, 3, "POS"),
                   A(0, 1, "POS")],  # string "Trump"/POS exists in gold, but not at this span
        # test-2 missing: an empty prediction
    }
    r = score(GOLD, pred)
    # JMASA: 4 distinct predicted triples, 2 correct, 5 gold
    assert r["jmasa"] == pytest.approx({"p": 50.0, "r": 40.0, "f1": 400 / 9})
    # MATE: 4 distinct spans, all correct, 5 gold
    assert r["mate"] == pytest.approx({"p": 100.0, "r": 80.0, "f1": 800 / 9})
    assert r["masc"] is None  # test-2's gold span has no predicted polarity
    assert r["masc_joint"] == pytest.approx({"acc": 50.0, "n": 4})
    assert r["missing"] == 1


def test_hand_computed_masc_when_every_gold_span_is_predicted() -> None:
    pred = {
        "test-0": [A(0, 2, "POS"), A(5, 6, "POS")],
        "test-1": [A(0, 1, "POS"), A(2, 3, "POS")],
        "test-2": [A(1, 2, "NEG")],
    }
    r = score(GOLD, pred)
    assert r["jmasa"] == pytest.approx({"p": 40.0, "r": 40.0, "f1": 40.0})
    # pairs (gold, pred): POS/POS NEG/POS NEU/POS POS/POS NEU/NEG -> acc 2/5
    # F1: POS P=2/4 R=2/2 -> 2/3; NEU 0; NEG 0 -> macro 2/9
    assert r["masc"] == pytest.approx({"acc": 40.0, "macro_f1": 200 / 9})


def test_conflicting_polarities_on_one_span() -> None:
    pred = {"test-0": [A(0, 2, "POS"), A(0, 2, "NEG")]}
    r = score(GOLD[:1], pred)
    assert r["jmasa"]["p"] == pytest.approx(50.0)  # two distinct triples, one right
    assert r["mate"]["p"] == pytest.approx(100.0)  # one span
    assert r["masc_joint"] == pytest.approx({"acc": 0.0, "n": 1})  # no single answer: wrong


def test_empty_predictions_everywhere() -> None:
    r = score(GOLD, {})
    assert r["jmasa"] == {"p": 0.0, "r": 0.0, "f1": 0.0}
    assert r["missing"] == 3 and r["masc"] is None


def _score_cli(data_dir: Path, pred: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrsa", "score", "--gold", "twitter2015", "--split", "test",
                           "--pred", str(pred), "--data-dir", str(data_dir), "--json"],
                          capture_output=True, text=True)


@pytest.mark.data
def test_gold_as_prediction_scores_100_everywhere(tmp_path: Path, data_dir: Path) -> None:
    gold = load_dataset("twitter2015", "test", data_dir)
    write_predictions(gold_as_predictions(gold), tmp_path / "p.jsonl")
    out = _score_cli(data_dir, tmp_path / "p.jsonl")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["jmasa"] == r["mate"] == {"p": 100.0, "r": 100.0, "f1": 100.0}
    assert r["masc"] == {"acc": 100.0, "macro_f1": 100.0}
    assert r["masc_joint"]["acc"] == 100.0 and r["missing"] == 0


@pytest.mark.data
def test_hand_made_prediction_file_on_real_test_split(tmp_path: Path, data_dir: Path) -> None:
    gold = load_dataset("twitter2015", "test", data_dir)
    g0 = gold[0].aspects  # predict sentence 0 exactly, sentence 1 with flipped polarities, nothing else
    flip = {"POS": "NEG", "NEG": "NEU", "NEU": "POS"}
    lines = [{"id": "test-0", "aspects": [a.model_dump() for a in g0]},
             {"id": "test-1", "aspects": [{**a.model_dump(), "polarity": flip[a.polarity]}
                                          for a in gold[1].aspects]}]
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = json.loads(_score_cli(data_dir, p).stdout)
    n_pred = len(g0) + len(gold[1].aspects)
    assert r["jmasa"]["p"] == pytest.approx(100 * len(g0) / n_pred)
    assert r["jmasa"]["r"] == pytest.approx(100 * len(g0) / 1037)
    assert r["mate"]["r"] == pytest.approx(100 * n_pred / 1037)
    assert r["masc_joint"]["acc"] == pytest.approx(100 * len(g0) / n_pred)
    assert r["missing"] == 672
