"""Every kind of malformed input gets its own clear error naming the file, the record and the reason;
lenient mode skips, counts and reports; the CLI prints one line, never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lrsa.data import Example, DataError
from lrsa.data.readers import ReadReport, read_conll, read_jmasa, read_jsonl, read_semeval, read_tsv
from lrsa.data.side import read_side_file
from lrsa.training.metrics import read_predictions

GOOD = {"words": ["Chuck", "Bass", "is", "great"], "image_id": "1.jpg",
        "aspects": [{"from": 0, "to": 2, "polarity": "POS", "term": ["Chuck", "Bass"]}]}
HEADER = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String\n"


def jmasa(tmp: Path, records) -> Path:
    p = tmp / "train.json"
    p.write_text(records if isinstance(records, str) else json.dumps(records))
    return p


def rec(**kw):
    return {**GOOD, **kw}


CASES = [
    # (reader, file name, content, expected message fragment)
    ("jmasa", "bad JSON", '[{"words": ["a"],', "line 1 column 18", "bad JSON"),
    ("jmasa", "not a list", {"words": []}, "top level", "expected a JSON list"),
    ("jmasa", "span out of range", [rec(aspects=[{"from": 3, "to": 6, "polarity": "POS"}])],
     "record 0", "span [3, 6) out of range for 4 words"),
    ("jmasa", "overlapping spans", [rec(aspects=[{"from": 0, "to": 2, "polarity": "POS"},
                                                 {"from": 1, "to": 3, "polarity": "NEG"}])],
     "record 0", "overlapping spans [0, 2) and [1, 3)"),
    ("jmasa", "empty span", [rec(aspects=[{"from": 2, "to": 2, "polarity": "POS"}])],
     "record 0", "empty span [2, 2)"),
    ("jmasa", "unknown label", [GOOD, rec(aspects=[{"from": 0, "to": 1, "polarity": "POSITIVE"}])],
     "record 1", "unknown polarity 'POSITIVE'"),
    ("jmasa", "missing field", [{"image_id": "1.jpg", "aspects": []}], "record 0", "missing field 'words'"),
    ("jmasa", "empty text", [rec(words=[], aspects=[])], "record 0", "empty text"),
    ("jmasa", "term mismatch", [rec(aspects=[{"from": 0, "to": 1, "polarity": "POS", "term": ["Bass"]}])],
     "record 0", "does not match words[0:1]"),
    ("tsv", "wrong column count", HEADER + "1\t2\t1.jpg\t$T$ is great\n", "line 2",
     "expected 5 tab-separated columns, found 4"),
    ("tsv", "unknown label code", HEADER + "1\t3\t1.jpg\t$T$ is great\tChuck\n", "line 2",
     "unknown label '3' (expected 0, 1 or 2)"),
    ("tsv", "$T$ missing", HEADER + "1\t2\t1.jpg\tChuck is great\tChuck\n", "line 2",
     "'$T$' must occur exactly once in the text, found 0"),
    ("tsv", "no header", "1\t2\t1.jpg\t$T$ is great\tChuck\n", "line 1", "missing header line"),
    ("conll", "I- without B-", "IMGID:1\nChuck\tI-POS\tO\nBass\tI-POS\tO\n", "line 2",
     "tag 'I-POS' does not continue an open aspect span"),
    ("conll", "unknown tag", "IMGID:1\nChuck\tB-GOOD\tO\n", "line 2", "unknown tag 'B-GOOD'"),
    ("conll", "missing IMGID", "Chuck\tB-POS\tO\n", "line 1", "must start with 'IMGID:<id>'"),
    ("semeval", "incomplete record", "the $T$ is good\nfood\nPositive\nthe $T$ is bad\nstaff\n",
     "line 5", "5 lines is not a whole number of 3-line records"),
    ("semeval", "unknown label", "the $T$ is good\nfood\nMixed\n", "line 3", "unknown label 'Mixed'"),
    ("jsonl", "duplicate id", '{"id": "a", "text": "x y"}\n{"id": "a", "text": "z"}\n', "line 2",
     "duplicate id 'a' (first at line 1)"),
    ("jsonl", "no text", '{"id": "a", "image": "x.jpg"}\n', "line 1", "needs 'text' (string) or 'words'"),
    ("jsonl", "invalid UTF-8", b'{"text": "caf\xe9"}\n', "byte 13", "invalid UTF-8"),
]
READERS = {"jmasa": read_jmasa, "tsv": read_tsv, "conll": read_conll, "semeval": read_semeval,
           "jsonl": read_jsonl}


@pytest.mark.parametrize("reader,name,content,where,reason", CASES, ids=[c[1] for c in CASES])
def test_malformed_input_error(tmp_path: Path, reader, name, content, where, reason) -> None:
    p = tmp_path / f"input.{reader}"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DataError) as exc:
        READERS[reader](p, "train")
    msg = str(exc.value)
    assert msg.startswith(str(p)), msg  # names the file
    assert where in exc.value.where and reason in exc.value.reason, msg


def test_at_least_fifteen_distinct_malformed_inputs() -> None:
    assert len({c[4] for c in CASES}) >= 15


def test_malformed_predictions(tmp_path: Path) -> None:
    gold = [Example(id="test-0", words=["a", "b", "c"])]
    cases = [
        ('{"id": "test-9", "aspects": []}', "unknown id 'test-9'"),
        ('{"id": "test-0", "aspects": [{"start": 2, "end": 5, "polarity": "POS"}]}',
         "span [2, 5) outside the sentence 'test-0' of 3 words"),
        ('{"id": "test-0", "aspects": [{"start": 0, "end": 1, "polarity": "positive"}]}',
         "unknown polarity 'positive'"),
        ('{"id": "test-0", "aspects": []}\n{"id": "test-0", "aspects": []}', "duplicate id 'test-0'"),
        ('{"id": "test-0"}', "each line needs 'id' and 'aspects'"),
    ]
    for content, reason in cases:
        p = tmp_path / "p.jsonl"
        p.write_text(content + "\n")
        with pytest.raises(DataError, match=reason.replace("[", r"\[").replace(")", r"\)")):
            read_predictions(p, gold)


def test_malformed_side_file(tmp_path: Path) -> None:
    p = tmp_path / "captions.json"
    p.write_text(json.dumps({"1.jpg": ["ok"], "2.jpg": 7}))
    with pytest.raises(DataError, match="key '2.jpg': value must be a string or a list of strings"):
        read_side_file(p)


def test_lenient_mode_skips_counts_and_reports(tmp_path: Path) -> None:
    records = [GOOD, rec(aspects=[{"from": 0, "to": 9, "polarity": "POS"}]), GOOD,
               rec(aspects=[{"from": 0, "to": 1, "polarity": "BAD"}])]
    report = ReadReport("train")
    exs = read_jmasa(jmasa(tmp_path, records), "train", lenient=True, report=report)
    assert [e.id for e in exs] == ["train-0", "train-1"]
    assert report.examples == 2 and len(report.skipped) == 2
    assert "record 1" in report.skipped[0] and "record 3" in report.skipped[1]


@pytest.mark.data
def test_cli_reports_bad_data_in_one_line(tmp_path: Path, data_dir: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(data_dir / "twitter2015", root / "twitter2015")
    dev = root / "twitter2015/jmasa/dev.json"
    records = json.loads(dev.read_text())
    records[5]["aspects"][0]["polarity"] = "GOOD"
    dev.write_text(json.dumps(records))
    cmd = [sys.executable, "-m", "lrsa", "data", "stats", "twitter2015", "--data-dir", str(root), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {dev}: record 5: unknown polarity 'GOOD' (expected one of POS/NEU/NEG)"
    assert "Traceback" not in out.stderr
    lenient = subprocess.run(cmd + ["--lenient"], capture_output=True, text=True)
    assert lenient.returncode == 0, lenient.stderr
    got = json.loads(lenient.stdout)["dev"]
    assert got["sentences"] == 726 and got["skipped"] == 1 and "record 5" in got["skip_reasons"][0]
