"""The openai-compatible backend against a real fault-injecting HTTP server on 127.0.0.1, the SQLite cache
(resume, reruns, concurrent writers, kill -9), output checks, and the CLI report."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrsa.rationales import RationaleCache, RationaleInput, generate, make_backend
from lrsa.rationales.checks import cap_tokens, check, count_tokens
from lrsa.rationales.fakeserver import FAULTS, FakeLLMServer, FaultPlan, fingerprint
from lrsa.rationales.openai_backend import parse_retry_after
from lrsa.rationales.prompts import build_messages

REPO = Path(__file__).resolve().parents[1]


def _inputs(n: int, prefix: str = "p") -> list[RationaleInput]:
    return [RationaleInput(id=f"{prefix}{i}", text=f"Tweet {i}: @fan{i} loves #Paris in the spring",
                           image_texts=(f"a photo of a city street number {i}",)) for i in range(n)]


def _fps(inputs, kinds=("text", "image")) -> dict[str, tuple[str, str]]:
    out = {}
    for inp in inputs:
        for kind in kinds:
            task = "text" if kind == "text" else "image_from_texts"
            out[fingerprint(build_messages(task, inp))] = (inp.id, kind)
    return out


def _backend(srv, **kw):
    opts = dict(base_url=srv.url, model="fake", timeout_s=0.5, max_retries=3, backoff_s=0.01, backoff_max_s=0.05)
    opts.update(kw)
    return make_backend("openai", **opts)


def test_every_fault_is_survived_and_counted(tmp_path):
    inputs = _inputs(28)
    plan = FaultPlan(faults=FAULTS, retry_after_s=0.3, slow_s=0.2)
    with FakeLLMServer(plan) as srv, RationaleCache(tmp_path / "c.sqlite") as cache:
        res = generate(inputs, _backend(srv), cache=cache, concurrency=8)
        log = list(srv.log)
        stored = len(cache)
    rep = res.report
    first = {e.fp: e.outcome for e in log if e.attempt == 1}
    assert set(first.values()) == set(FAULTS)  # each fault was injected at least once
    retryable = sum(1 for o in first.values() if o in {"429", "500", "hang", "malformed"})
    n_empty = sum(1 for o in first.values() if o == "empty")  # empty on every attempt (empty_always)
    # an empty reply is retried like any transient failure, then counted as failed and never cached
    assert rep.requested == 56 and rep.generated == 56 - n_empty and rep.failed == n_empty and rep.cached == 0
    assert rep.retried == retryable + 3 * n_empty and rep.calls == len(log) == 56 + retryable + 3 * n_empty
    assert rep.flagged["empty"] == 0
    assert rep.prompt_tokens > 0 and rep.completion_tokens > 0
    assert stored == 56 - n_empty and sum(len(v) for v in res.missing.values()) == n_empty
    # Retry-After is honoured: the retry of a 429 comes no sooner than the header said
    for fp, o in first.items():
        if o == "429":
            t1, t2 = sorted(e.t for e in log if e.fp == fp)[:2]
            assert t2 - t1 >= 0.29
    fps = _fps(inputs)
    for fp, o in first.items():
        rid, kind = fps[fp]
        if o == "empty":
            assert kind in res.missing[rid]
        else:
            assert getattr(res.rationales[rid], kind).startswith(f"This {'tweet' if kind == 'text' else 'image'}")


def test_an_empty_reply_is_retried_and_a_later_answer_kept(tmp_path):
    inputs = _inputs(28)
    plan = FaultPlan(faults=("ok", "empty"), empty_always=False)
    with FakeLLMServer(plan) as srv, RationaleCache(tmp_path / "c.sqlite") as cache:
        res = generate(inputs, _backend(srv), cache=cache, concurrency=4)
        stored = len(cache)
    n_empty = sum(1 for e in srv.log if e.attempt == 1 and e.outcome == "empty")
    assert n_empty >= 1 and res.report.retried == n_empty and res.report.failed == 0
    assert stored == 56 and not res.missing
    assert all(r.text and r.image for r in res.rationales.values())


def test_failures_are_counted_and_resumed_without_repeats(tmp_path):
    inputs = _inputs(5) + [RationaleInput(id="bad", text="FAIL-ALWAYS for now")]
    with FakeLLMServer(FaultPlan()) as srv, RationaleCache(tmp_path / "c.sqlite") as cache:
        res = generate(inputs, _backend(srv, max_retries=2), cache=cache, concurrency=3)
        assert res.report.failed == 1 and res.report.retried == 2 and res.missing == {"bad": ["text"]}
        assert res.report.generated == 10 and len(cache) == 10
        assert [r["id"] for r in res.records()] == [f"p{i}" for i in range(5)]  # incomplete items left out
        n = len(srv.log)
        srv.plan.fail_marker = "the failure is over"
        res2 = generate(inputs, _backend(srv), cache=cache, concurrency=3)
        assert len(srv.log) == n + 1 and srv.log[-1].user.count("FAIL-ALWAYS")  # only the missing part
        assert res2.report.cached == 10 and res2.report.generated == 1 and not res2.missing
        res3 = generate(inputs, _backend(srv), cache=cache, concurrency=3)
        assert len(srv.log) == n + 1  # a finished job reruns with zero calls
        assert res3.report.cached == 11 and res3.report.calls == 0
        assert res3.rationales == res2.rationales


def test_non_retryable_error_fails_fast(tmp_path):
    with FakeLLMServer() as srv:
        be = _backend(srv, base_url=srv.url.replace("/v1", "/nope"))
        res = generate(_inputs(2), be, concurrency=2)
    assert res.report.failed == 4 and res.report.calls == 4 and res.report.retried == 0


def test_hung_connection_times_out_then_gives_up():
    with FakeLLMServer(FaultPlan(faults=("hang",), hang_s=30)) as srv:
        srv.plan.faults = ("hang",)
        be = _backend(srv, timeout_s=0.3, max_retries=0)
        t = time.perf_counter()
        res = generate(_inputs(1), be, kinds=("text",))
        assert time.perf_counter() - t < 3
    assert res.report.failed == 1 and res.missing == {"p0": ["text"]}


def test_rpm_limit_spaces_requests():
    with FakeLLMServer() as srv:
        generate(_inputs(4), _backend(srv, rpm=600), concurrency=8)  # 10 per second
        times = sorted(e.t for e in srv.log)
    assert len(times) == 8 and times[-1] - times[0] >= 0.65


def test_api_key_is_sent_but_never_stored(tmp_path, monkeypatch):
    secret = "sk-test-" + "x7" * 10
    monkeypatch.setenv("LRSA_TEST_KEY", secret)
    with FakeLLMServer() as srv, RationaleCache(tmp_path / "c.sqlite") as cache:
        be = _backend(srv, api_key_env="LRSA_TEST_KEY")
        res = generate(_inputs(2), be, cache=cache)
        assert {e.auth for e in srv.log} == {f"Bearer {secret}"}
        assert secret not in repr(be) and secret not in json.dumps(be.provenance())
    assert secret not in json.dumps(res.report.to_dict()) + json.dumps(res.records(full_provenance=True))
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes()
    monkeypatch.delenv("LRSA_TEST_KEY")
    with pytest.raises(RuntimeError, match=r"\$LRSA_TEST_KEY is not set"):
        make_backend("openai", api_key_env="LRSA_TEST_KEY")


def test_vision_sends_the_image_as_a_data_url():
    skimage = pytest.importorskip("skimage")
    img = Path(skimage.__file__).parent / "data" / "chelsea.png"
    inp = RationaleInput(id="cat", text="My cat Chelsea judging me again", image_path=str(img))
    with FakeLLMServer() as srv:
        res = generate([inp], _backend(srv, vision=True))
        blind = generate([inp], _backend(srv, vision=False))
        users = [e.user for e in srv.log]
    assert sum('"url": "data:image/png;base64,' in u for u in users) == 1
    assert res.rationales["cat"].image and not res.missing
    assert blind.report.skipped == 1 and blind.rationales["cat"].image == ""  # no image info: no L_i


def test_retry_after_parsing():
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert 0 <= parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))) <= 6


def test_output_checks():
    assert check("<|im_start|>assistant\nSure, here is the explanation: The tweet praises Paris.<|im_end|>") \
        == ("The tweet praises Paris.", None)
    assert check("   ")[1] == "empty" and check(None)[1] == "empty"
    assert check("I'm sorry, but I cannot see the image you mentioned.")[1] == "refusal"
    assert check("As an AI language model, I can't help with that.")[1] == "refusal"
    assert check("#### !!! ??? 1234 5678")[1] == "garbage"
    assert check(" ".join(["the cat"] * 30))[1] == "garbage"
    long = "The tweet is about a match. " * 40
    text, flag = check(long, max_tokens=20)
    assert flag is None and count_tokens(text) <= 20 and text.endswith(".")
    assert cap_tokens("one two three", 0) == "one two three"


_WRITER = """
import sys
from lrsa.rationales import RationaleCache, RationaleInput, generate, make_backend
url, path, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
inputs = [RationaleInput(id=f"p{i}", text=f"Tweet {i}: shared cache #test") for i in range(start, start + 40)]
with RationaleCache(path) as cache:
    res = generate(inputs, make_backend("openai", base_url=url, model="fake"), cache=cache, concurrency=8,
                   kinds=("text",))
print(res.report.failed, len(res.missing))
"""


def test_two_processes_share_one_cache(tmp_path):
    path = tmp_path / "shared.sqlite"
    with FakeLLMServer(FaultPlan(latency_s=0.01)) as srv:
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, srv.url, str(path), str(start)],
                                  stdout=subprocess.PIPE, text=True) for start in (0, 20)]
        outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs == [["0", "0"], ["0", "0"]]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = sorted(r[0] for r in db.execute("SELECT item_id FROM rationales"))
    assert ids == sorted(f"p{i}" for i in range(60))  # the overlap p20..p39 stored once


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lrsa", "rationales", *args]


@pytest.mark.data
def test_kill_9_then_resume(tmp_path):
    """kill -9 mid-run: what finished is in the cache; the resumed run asks exactly for the rest, once."""
    from lrsa.rationales import dataset_inputs

    cache = tmp_path / "c.sqlite"
    report = tmp_path / "report.json"
    inputs = dataset_inputs("twitter2015", ["test"])[:40]
    fps = _fps(inputs)
    with FakeLLMServer(FaultPlan(latency_s=0.05)) as srv:
        cmd = _cli("generate", "--dataset", "twitter2015", "--split", "test", "--limit", "40", "--backend",
                   "openai", "--base-url", srv.url, "--model", "fake", "--concurrency", "2", "--cache",
                   str(cache), "--no-progress", "--report", str(report))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ)
        deadline = time.time() + 90
        done_before = 0
        while time.time() < deadline and proc.poll() is None:
            if cache.exists():
                try:
                    done_before = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM rationales").fetchone()[0]
                except sqlite3.OperationalError:
                    done_before = 0
                if done_before >= 20:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        db = sqlite3.connect(cache)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = {(r[0], r[1]) for r in db.execute("SELECT item_id, kind FROM rationales")}
        db.close()
        assert 20 <= len(kept) < 80
        first_run = {fps[e.fp] for e in srv.log}
        assert kept <= first_run  # every stored part was a finished request
        n = len(srv.log)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        second = [fps[e.fp] for e in srv.log[n:]]
    assert len(second) == len(set(second))  # no duplicate requests
    assert set(second) == set(fps.values()) - kept  # exactly what was missing
    rep = json.loads(report.read_text())
    assert {"requested", "generated", "cached", "failed", "retried", "prompt_tokens", "completion_tokens",
            "wall_s"} <= set(rep)
    assert rep["requested"] == 80 and rep["cached"] == len(kept) and rep["generated"] == 80 - len(kept)
    assert rep["failed"] == 0


def test_cli_streams_user_posts_in_chunks(tmp_path):
    """--input: a user's JSONL of posts, processed in chunks, priced, written as JSONL; rerun = 0 calls."""
    from typer.testing import CliRunner

    from lrsa.cli import app

    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"u{i}", "text": f"Post {i} about the #WorldCup final",
                                         "image_texts": ["a football stadium at night"] if i % 2 else []}) + "\n"
                             for i in range(23)))
    out, rep, cache = tmp_path / "out.jsonl.gz", tmp_path / "rep.json", tmp_path / "c.sqlite"
    with FakeLLMServer() as srv:
        args = ["rationales", "generate", "--input", str(posts), "--backend", "openai", "--base-url", srv.url,
                "--model", "fake", "--cache", str(cache), "--chunk-size", "5", "--out", str(out), "--report",
                str(rep), "--price-prompt", "1.0", "--price-completion", "2.0", "--no-progress"]
        res = CliRunner().invoke(app, args, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        n = len(srv.log)
        again = CliRunner().invoke(app, args, catch_exceptions=False)
        assert again.exit_code == 0 and len(srv.log) == n
    r = json.loads(rep.read_text())
    assert n == 23 + 11 and r["cached"] == 34 and r["calls"] == 0 and r["skipped"] == 12
    import gzip

    recs = [json.loads(line) for line in gzip.open(out, "rt")]
    assert [x["id"] for x in recs] == [f"u{i}" for i in range(23)]
    assert recs[1]["image"].startswith("This image rationale") and recs[0]["image"] == ""
    first = json.loads(res.output[res.output.index("{"):])
    assert first["generated"] == 34 and first["est_cost_usd"] == pytest.approx(
        (first["prompt_tokens"] * 1.0 + first["completion_tokens"] * 2.0) / 1e6)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok"}\n{"id": "b"}\n')
    res = CliRunner().invoke(app, ["rationales", "generate", "--input", str(bad), "--backend", "lexicon"])
    assert res.exit_code != 0 and "line 2" in str(res.exception)


def test_cli_run_against_a_server_that_answers_empty_fails_and_caches_no_hole(tmp_path):
    """The reported defect: empty replies were cached as rationales and the run exited 0."""
    from typer.testing import CliRunner

    from lrsa.cli import app

    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"p{i}", "text": f"Post {i} about the new phone"}) + "\n"
                             for i in range(20)))
    with FakeLLMServer(FaultPlan(faults=("ok", "ok", "ok", "empty"))) as srv:
        args = ["rationales", "generate", "--input", str(posts), "--backend", "openai", "--base-url", srv.url,
                "--model", "fake", "--retries", "1", "--cache", str(tmp_path / "c.sqlite"),
                "--out", str(tmp_path / "out.jsonl"), "--no-progress"]
        r = CliRunner().invoke(app, args)
        n_empty = len({e.fp for e in srv.log if e.outcome == "empty"})
    assert n_empty >= 1
    assert r.exit_code == 2, r.output  # a run with failures says so in its exit code
    rep = json.loads(r.stdout[r.stdout.index("{"):])
    assert rep["failed"] == n_empty and rep["flagged"]["empty"] == 0
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        outputs = [row[0] for row in db.execute("SELECT output FROM rationales")]
    # one part per post (no image): nothing empty was cached
    assert len(outputs) == 20 - n_empty and all(o.strip() for o in outputs)
    written = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(written) == 20 - n_empty and all(w["text"] for w in written)  # failed posts left out, no holes


@pytest.mark.data
def test_a_bundle_grows_by_split_and_resumes_on_a_machine_without_the_cache(tmp_path, data_dir):
    """--bundle keeps the records of splits written earlier; a new machine (empty cache) asks for nothing
    the committed bundle already holds."""
    from typer.testing import CliRunner

    from lrsa.cli import app
    from lrsa.rationales.bundle import load_bundle, read_manifest

    root = tmp_path / "bundles"

    def run(split: str, cache: str, srv) -> dict:
        args = ["rationales", "generate", "--dataset", "twitter2015", "--split", split, "--backend", "openai",
                "--base-url", srv.url, "--model", "fake", "--kinds", "text", "--cache", str(tmp_path / cache),
                "--bundle", "--source", "fake", "--bundle-root", str(root), "--data-dir", str(data_dir),
                "--no-progress"]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout[r.stdout.index("{"):])

    with FakeLLMServer(FaultPlan()) as srv:
        assert run("dev", "a.sqlite", srv)["generated"] == 727
        dev = load_bundle("twitter2015", "fake", root)
        assert run("test", "b.sqlite", srv)["generated"] == 674  # another machine: only the test split
        entry = read_manifest("twitter2015", root)["sources"]["fake"]
        assert entry["counts"] == {"dev": 727, "test": 674} and entry["report"]["generated"] == 727 + 674
        both = load_bundle("twitter2015", "fake", root)
        assert all(both[k].text == r.text for k, r in dev.items())  # the dev records were kept as they were
        calls = len(srv.log)
        again = run("dev", "c.sqlite", srv)  # an empty cache again: the bundle is the resume point
        assert again["generated"] == 0 and again["cached"] == 727 and len(srv.log) == calls
    after = read_manifest("twitter2015", root)["sources"]["fake"]
    assert after["sha256"] == entry["sha256"] and after["report"]["generated"] == 727 + 674
