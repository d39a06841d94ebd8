"""The serving fast path: int8 dynamic quantization and the side-text token budget (``lrsa.model.quantize``,
``LRSA.from_pretrained(quantize=..., side_max_tokens=...)``) and `lrsa serve --quantize / --side-max-tokens /
--workers / --onednn-cache-capacity`, on the real tiny checkpoint, over real HTTP on 127.0.0.1.

What int8 costs in F1 on the main job's checkpoint is measured by benchmarks/fast_path_check.py (docs/serving.md);
here: the switches do what they say, the quantized path stays close to the reference, several workers share
the port and stop together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serving_fixtures import REPO, ServeProcess, checkpoint_dir, real_posts  # noqa: F401

pytestmark = pytest.mark.data


def _triples(pred) -> set:
    return {(a.start, a.end, a.polarity) for a in pred.aspects}


def test_fast_path_in_process_is_close_to_the_reference(checkpoint_dir):
    import torch

    from lrsa.api import LRSA

    posts = real_posts(32)
    ref = LRSA.from_pretrained(checkpoint_dir)
    fast = LRSA.from_pretrained(checkpoint_dir, quantize="all", side_max_tokens=64)
    info = fast.fast_path
    assert info["quantize"] == "all" and info["side_max_tokens"] == 64
    assert info["int8_linear_layers"]["side"] >= 24 and info["int8_linear_layers"]["host"] >= 24
    assert fast.precision == "fp32" and info["precision"] == {"host": "fp32", "side": "fp32"}
    assert not hasattr(ref, "fast_path") or ref.fast_path is None

    # the side encoder: int8 states of real captions stay close to the reference's (cosine per token)
    texts = [p["image_text"] for p in posts[:8]]
    s_ref, m_ref = ref.side_encoder.encode(texts)
    s_int8, m_int8 = fast.side_encoder.encode(texts)
    assert torch.equal(m_ref, m_int8)
    cos = torch.nn.functional.cosine_similarity(s_ref.float()[m_ref], s_int8.float()[m_int8], dim=-1)
    assert cos.mean() > 0.97 and cos.quantile(0.05) > 0.93, (cos.mean(), cos.quantile(0.05))
    assert fast.side_encoder.key(texts) != ref.side_encoder.key(texts)  # int8 states never share a cache file

    # the token budget: a long image description is cut to 64 side tokens (the reference reads up to 256)
    long = " ".join(["a man in a blue suit standing next to a red car"] * 20)
    assert fast.side_encoder.encode([long])[0].shape[1] == 64
    assert ref.side_encoder.encode([long])[0].shape[1] > 64

    # predictions: the same posts and words; int8 moves the scores a little, so spans may differ on a few
    a, b = ref.predict_batch(posts, batch_size=16), fast.predict_batch(posts, batch_size=16)
    assert [p.words for p in a] == [p.words for p in b]
    same = sum(_triples(x) == _triples(y) for x, y in zip(a, b))
    assert same >= 0.75 * len(posts), f"{same}/{len(posts)} posts predicted alike"


def test_fast_path_switches_are_checked(checkpoint_dir):
    from lrsa.api import LRSA
    from lrsa.model.quantize import apply_fast_path

    with pytest.raises(ValueError, match="quantize 'int4'"):
        LRSA.from_pretrained(checkpoint_dir, quantize="int4")
    with pytest.raises(ValueError, match="side_max_tokens"):
        LRSA.from_pretrained(checkpoint_dir, side_max_tokens=0)
    side = LRSA.from_pretrained(checkpoint_dir, quantize="side")
    assert side.fast_path["int8_linear_layers"] == {"side": side.fast_path["int8_linear_layers"]["side"]}
    assert side.net.precision == side.run.train.precision  # the host keeps its precision
    assert apply_fast_path(side, "side")["quantize"] == "side"  # the same again: nothing to do
    with pytest.raises(ValueError, match="already quantized"):
        apply_fast_path(side, "all")


def _worker_pids(parent: int) -> list[int]:
    kids = [int(c) for t in Path(f"/proc/{parent}/task").iterdir() for c in (t / "children").read_text().split()]
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_serve_workers_share_the_port_with_the_fast_path(checkpoint_dir, tmp_path):
    log = tmp_path / "serve.log"
    server = ServeProcess(checkpoint_dir, log, "--workers", "2", "--torch-threads", "1", "--quantize", "side",
                          "--side-max-tokens", "64", "--onednn-cache-capacity", "16").start(timeout_s=600)
    try:
        deadline = time.monotonic() + 600  # both workers load the model (minutes on a busy 2-core machine)
        while b"2 workers ready" not in log.read_bytes():
            assert server.alive() and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        workers = _worker_pids(server.proc.pid)
        assert len(workers) == 2, workers
        for w in workers:  # the oneDNN cache setting reaches every worker before its first primitive
            assert b"ONEDNN_PRIMITIVE_CACHE_CAPACITY=16" in Path(f"/proc/{w}/environ").read_bytes()
        card = httpx.get(f"{server.url}/v1/model", timeout=30).json()["model"]
        assert card["fast_path"]["quantize"] == "side" and card["fast_path"]["side_max_tokens"] == 64

        cpu0 = {w: _cpu_s(w) for w in workers}
        posts = real_posts(32)

        def one(post: dict) -> int:  # a new connection per request: the kernel spreads them over the workers
            with httpx.Client(base_url=server.url, timeout=120) as c:
                r = c.post("/v1/predict", json=post)
                assert r.json()["prediction"]["text"] == post["text"]
                return r.status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, posts))
        assert codes == [200] * len(posts)
        used = {w: _cpu_s(w) - cpu0[w] for w in workers}
        assert all(v > 0.05 for v in used.values()), used  # both workers ran models
    finally:
        server.stop()
    assert server.proc.returncode == 0, log.read_text()
    time.sleep(0.5)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "workers outlived the server"


def test_serve_fails_loudly_when_a_worker_cannot_load(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "lrsa", "serve", "--checkpoint", str(tmp_path), "--quantize",
                          "int4"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "int4" in bad.stderr
    from lrsa.serving.client import free_port

    empty = subprocess.run([sys.executable, "-m", "lrsa", "serve", "--checkpoint", str(tmp_path), "--workers", "2",
                            "--port", str(free_port())], capture_output=True, text=True, cwd=REPO,
                           timeout=300)
    assert empty.returncode == 1, empty.stderr[-2000:]
    assert "exited with" in empty.stderr and "while loading" in empty.stderr


def test_committed_speed_figures_hold_the_service_keys_and_the_scores_as_served():
    """results/benchmarks/speed.json (issue 28): the wrk service figures, and per model the test scores as
    served / with no image / with its bundle, each row naming the clean commit and machine it was measured on;
    the README's "Scores as served" row for the main job's lrsa model quotes the committed figures."""
    import json

    speed = json.loads((REPO / "results" / "benchmarks" / "speed.json").read_text(encoding="utf-8"))
    service = speed["service"]
    assert service["load_generator"].startswith("wrk")
    for key in ("requests_per_s", "p95_ms", "errors", "rss_growth_pct"):
        assert isinstance(service[key], (int, float)), key
    assert len(service["commit"]) == 40 and not service["commit"].endswith("+dirty"), service["commit"]
    rows = {k: v for k, v in speed["served_scores"].items() if not k.startswith("_")}
    assert {"main_text", "main_lrsa"} <= set(rows)
    for name, row in rows.items():
        for key in ("served_test_jmasa_f1", "no_image_test_jmasa_f1", "bundle_test_jmasa_f1"):
            assert 0 < row[key] < 100, (name, key)
        assert not row["checkpoint"].startswith("/"), name  # relative to the checkout
        commit = row["measured"]["commit"]
        assert len(commit) == 40 and not commit.endswith("+dirty"), (name, commit)
        assert row["measured"]["machine"]["cpu_model"], name
    lrsa = rows["main_lrsa"]
    assert lrsa["served_writers"]["image"]["writer"] is None  # MiniGPT-4 cannot run here: L_i left empty
    assert "left empty" in lrsa["served_writers"]["image"]["note"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("| main job `lrsa` (current"))
    assert f"**{lrsa['served_test_jmasa_f1']:.1f}** | {lrsa['no_image_test_jmasa_f1']:.1f} | " \
           f"{lrsa['bundle_test_jmasa_f1']:.1f} |" in line, line
