"""Batch prediction over JSONL files: streamed, in order, resumable after kill -9, errors named or counted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrsa.config import RunConfig, apply_overrides, variant_overrides
from lrsa.data import load_dataset

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    from lrsa.api import LRSA

    path = tmp_path_factory.mktemp("ckpt") / "text"
    LRSA.build(RunConfig.model_validate(apply_overrides({}, variant_overrides("text")))).save_pretrained(path)
    return path


def _posts(n: int) -> list[dict]:
    exs = load_dataset("twitter2015", "test")
    return [{"id": f"p{i}", "text": exs[i % len(exs)].text} for i in range(n)]


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _strip(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        d = json.loads(line)
        d.pop("timings_ms", None)
        out.append(d)
    return out


def test_a_file_is_predicted_in_order_like_predict_batch_and_resumes_a_torn_output(tmp_path, text_model):
    from lrsa.api import LRSA
    from lrsa.serving.files import predict_file

    model = LRSA.from_pretrained(text_model)
    posts = _posts(70)
    del posts[5]["id"]  # keyed by its line number
    src = _write(tmp_path / "posts.jsonl", [*posts[:10], "", *posts[10:]])
    summary = predict_file(model, src, tmp_path / "out.jsonl", batch_size=16, progress=False)
    assert summary["posts"] == 70 and summary["errors"] == 0 and summary["already_done"] == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [p.get("id", "line-6") for p in posts]
    keyed = [{"text": p["text"], "id": p.get("id", "line-6")} for p in posts]
    # the same batches as predict_batch (an untrained model's near-ties can flip with the padding of a batch)
    direct = model.predict_batch(keyed, batch_size=16)
    assert _strip(lines) == _strip([json.dumps(p.model_dump()) for p in direct])
    # a crash mid-write: 30 whole lines and half of the next; the rerun cuts the torn line, redoes the rest
    torn = "\n".join(lines[:30]) + "\n" + lines[30][:25]
    (tmp_path / "torn.jsonl").write_text(torn)
    again = predict_file(model, src, tmp_path / "torn.jsonl", batch_size=16, progress=False)
    assert again["already_done"] == 30 and again["posts"] == 40
    resumed = (tmp_path / "torn.jsonl").read_text().splitlines()
    assert resumed[:30] == lines[:30]
    rest = model.predict_batch(keyed[30:], batch_size=16)  # batches restart at the first unfinished post
    assert _strip(resumed[30:]) == _strip([json.dumps(p.model_dump()) for p in rest])
    assert predict_file(model, src, tmp_path / "torn.jsonl", progress=False)["posts"] == 0  # all done


def test_bad_lines_stop_the_run_naming_the_line_or_are_counted_when_lenient(tmp_path, text_model):
    from lrsa.api import LRSA
    from lrsa.data.schema import DataError
    from lrsa.serving.files import predict_file

    model = LRSA.from_pretrained(text_model)
    posts = _posts(6)
    src = _write(tmp_path / "posts.jsonl", [*posts[:3], "{not json", {"id": "x", "text": "   "},
                                           {"text": 5}, *posts[3:], posts[0]])
    with pytest.raises(DataError, match=r"line 4.*not JSON"):
        predict_file(model, src, tmp_path / "strict.jsonl", progress=False)
    summary = predict_file(model, src, tmp_path / "lenient.jsonl", lenient=True, progress=False, batch_size=4)
    rows = [json.loads(x) for x in (tmp_path / "lenient.jsonl").read_text().splitlines()]
    assert summary["errors"] == 4  # bad JSON, blank text, non-string text, the duplicate id p0
    assert [r["id"] for r in rows] == ["p0", "p1", "p2", "line-4", "x", "line-6", "p3", "p4", "p5"]
    errs = {r["id"]: r["error"] for r in rows if "error" in r}
    assert "not JSON" in errs["line-4"] and "empty text" in errs["x"] and "string 'text'" in errs["line-6"]
    assert all("aspects" in r for r in rows if "error" not in r)  # the bad post's batch neighbours predicted
    # the CLI: lenient errors make a non-zero exit; a strict error names the file and line
    cli = [sys.executable, "-m", "lrsa", "predict", "--checkpoint", str(text_model), "--input", str(src)]
    r = subprocess.run([*cli, "--out", str(tmp_path / "c.jsonl"), "--lenient"], capture_output=True, text=True)
    assert r.returncode == 1 and "4 errors" in r.stderr, r.stderr
    r = subprocess.run([*cli, "--out", str(tmp_path / "d.jsonl")], capture_output=True, text=True)
    assert r.returncode == 2 and "line 4" in r.stderr and str(src) in r.stderr


def test_photos_are_read_relative_to_the_input_file(tmp_path, data_dir):
    from lrsa.api import LRSA
    from lrsa.serving.files import predict_file

    model = LRSA.build(RunConfig.model_validate(apply_overrides(
        {}, {**variant_overrides("image"), "model.image_side": "pixels"})))
    exs = [e for e in load_dataset("twitter2015", "test")[:4]]
    (tmp_path / "pics").mkdir()
    for e in exs:
        shutil.copy(data_dir / "twitter2015" / "images" / e.image_id, tmp_path / "pics" / e.image_id)
    src = _write(tmp_path / "posts.jsonl", [{"id": e.id, "text": e.text, "image": f"pics/{e.image_id}"} for e in exs])
    predict_file(model, src, tmp_path / "out.jsonl", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    direct = model.predict(exs[2].text, image=tmp_path / "pics" / exs[2].image_id)
    # the photo was read (no note) and gives the post's own prediction (a batch of 4 and a batch of 1 pad
    # differently: confidences agree to float precision, not bit for bit)
    assert rows[2]["notes"] == []
    got, want = rows[2]["aspects"], [a.model_dump() for a in direct.aspects]
    assert [{**a, "confidence": None} for a in got] == [{**a, "confidence": None} for a in want]
    assert [a["confidence"] for a in got] == pytest.approx([a["confidence"] for a in want], rel=1e-5)
    _write(src, [{"id": "gone", "text": "a post", "image": "pics/missing.jpg"}])
    with pytest.raises(Exception, match="missing.jpg"):
        predict_file(model, src, tmp_path / "out2.jsonl", progress=False)


def test_kill_9_mid_file_then_rerun_gives_the_uninterrupted_output(tmp_path, text_model):
    posts = _posts(320)
    src = _write(tmp_path / "posts.jsonl", posts)
    cmd = [sys.executable, "-m", "lrsa", "predict", "--checkpoint", str(text_model), "--input", str(src),
           "--batch-size", "32", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and (not killed.exists() or killed.read_text().count("\n") < 100):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = killed.read_text().count("\n")
    assert 100 <= n_before < 320, n_before  # killed part way
    r = subprocess.run([*cmd, "--out", str(killed)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["already_done"] >= 100 and summary["already_done"] + summary["posts"] == 320
    clean = tmp_path / "clean.jsonl"
    assert subprocess.run([*cmd, "--out", str(clean)], env=env, capture_output=True).returncode == 0
    got, want = _strip(killed.read_text().splitlines()), _strip(clean.read_text().splitlines())
    assert [g["id"] for g in got] == [w["id"] for w in want] == [p["id"] for p in posts]  # each once, in order
    assert [g["words"] for g in got] == [w["words"] for w in want]
    assert got[:n_before - 32] == want[:n_before - 32]  # whole batches before the kill are the clean run's


def test_worker_processes_write_the_same_output_in_input_order(tmp_path, text_model):
    from lrsa.api import LRSA
    from lrsa.serving.files import predict_file

    model = LRSA.from_pretrained(text_model, threads=1)  # as each worker (an untrained model's near-ties can
    posts = _posts(90)                                     # flip with the thread count)
    src = _write(tmp_path / "posts.jsonl", [*posts[:40], "{not json", *posts[40:]])
    one = predict_file(model, src, tmp_path / "one.jsonl", batch_size=8, progress=False, lenient=True)
    two = predict_file(model, src, tmp_path / "two.jsonl", batch_size=8, progress=False, lenient=True, workers=2)
    assert one["posts"] == two["posts"] == 90 and one["errors"] == two["errors"] == 1 and two["workers"] == 2
    a, b = (tmp_path / "one.jsonl").read_text().splitlines(), (tmp_path / "two.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in b] == [json.loads(x)["id"] for x in a]  # the error line in its place
    assert json.loads(b[40]) == {"id": "line-41", "line": 41, "error": json.loads(a[40])["error"]}
    assert _strip(a) == _strip(b)
    # not lenient: a bad post predicted by a worker still stops the run, naming its lines
    bad = _write(tmp_path / "bad.jsonl", [*posts[:20], {"id": "empty", "text": "   "}, *posts[20:30]])
    with pytest.raises(ValueError, match=r"bad\.jsonl: lines 17-24: post 4: empty text"):
        predict_file(model, bad, tmp_path / "bad_out.jsonl", batch_size=8, progress=False, workers=2)


def test_the_cluster_recipe_runs_on_a_local_dask_cluster(tmp_path, text_model):
    """README's recipe for an engine users already run (Dask here; Ray Data / Spark call the same function):
    each partition is predicted by predict_partition in a separate worker process, in order."""
    import dask
    import dask.bag as db

    from lrsa.api import LRSA
    from lrsa.serving.files import predict_partition

    posts = _posts(40)
    bag = db.from_sequence(posts, npartitions=4).map_partitions(
        lambda part: predict_partition(str(text_model), part, threads=1))
    with dask.config.set(scheduler="processes", num_workers=2):
        got = bag.compute()
    assert [g["id"] for g in got] == [p["id"] for p in posts]
    model = LRSA.from_pretrained(text_model, threads=1)
    direct = [p.model_dump(mode="json") for q in range(4)
              for p in model.predict_batch(posts[10 * q:10 * q + 10], batch_size=64)]
    assert _strip([json.dumps(g) for g in got]) == _strip([json.dumps(d) for d in direct])
