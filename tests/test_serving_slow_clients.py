"""Hostile clients over real sockets: stalled headers (slowloris), stalled and abandoned bodies, and
image batches that would blow up memory. Each case reproduced a defect of the service before its fix.

The service machinery is what is under test, so the app serves the stand-in model (``StubPredictor``);
images are still decoded by the real decoder (``lrsa.serving.images``)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
from serving_fixtures import REPO, InThreadServer, StubPredictor, bomb_png, photo_jpeg

from lrsa.serving import Limits, ServingConfig, create_app
from lrsa.serving.client import free_port, wait_healthy


def _server(**limits) -> InThreadServer:
    return InThreadServer(create_app(StubPredictor(), ServingConfig(limits=Limits(**limits))))


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response: headers and Content-Length bytes of body (they may come in several
    segments), or whatever arrived before the server closed."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection (recv gives b"") within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_a_client_that_trickles_its_headers_is_disconnected():
    """Defect: a client that sends headers and stalls (or trickles a header line now and then, which also
    cancels uvicorn's keep-alive timer) stayed connected indefinitely."""
    with _server(header_timeout_s=1) as server:
        sock = _connect(server.url)
        t0 = time.perf_counter()
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        for _ in range(12):  # a header line every 0.25 s for 3 s, never the blank line that ends them
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_within(sock, 0.25):
                closed = True
                break
        elapsed = time.perf_counter() - t0
        sock.close()
        assert closed and elapsed < 2.5, f"still connected after {elapsed:.1f} s"
        # a normal client on a keep-alive connection is not affected by the deadline
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(3):
                assert client.post("/v1/predict", json={"text": "Chelsea loves Mondays"}).status_code == 200
                time.sleep(0.5)


def test_a_stalled_body_gets_408_and_an_abandoned_one_no_traceback(caplog):
    """Defects: a body that stalls held the request forever; a client hanging up mid-body logged a
    traceback."""
    with _server(body_timeout_s=1) as server:
        head = (b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n")
        sock = _connect(server.url)
        sock.sendall(head + b'{"text": "')
        sock.settimeout(5)
        reply = _read_response(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"

        caplog.set_level(logging.INFO)
        sock = _connect(server.url)
        sock.sendall(head + b'{"text": "')
        time.sleep(0.2)
        sock.close()  # hangs up mid-body
        time.sleep(0.5)
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert any("hung up before its request body" in r.getMessage() for r in caplog.records)


def test_an_image_is_downscaled_before_it_is_kept_and_jpegs_decode_at_reduced_scale():
    from lrsa.serving.images import decode_image

    limits = Limits()
    big = decode_image(bomb_png(6300, 6300), limits)
    assert (big.width, big.height, big.format) == (6300, 6300, "PNG")  # what was uploaded
    assert max(big.image.size) == limits.keep_image_side and big.image.mode == "RGB"  # what is kept
    photo = decode_image(photo_jpeg(), limits)  # 451 x 300: small images are kept as they are
    assert photo.image.size == (451, 300)


def test_pixel_budget_lets_decodes_wait_their_turn():
    import threading

    from lrsa.serving.images import PixelBudget

    budget = PixelBudget(100)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first():
        with budget.hold(70):
            order.append("first in")
            inside.set()
            release.wait(5)
            order.append("first out")

    def second():
        inside.wait(5)
        with budget.hold(70):  # 70 + 70 > 100: waits for the first
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    assert order == ["first in"] and budget.in_use == 70
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["first in", "first out", "second in"] and budget.in_use == 0
    with budget.hold(10**9):  # larger than the whole budget: goes alone
        assert budget.in_use == 100


_SERVE_STUB = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    import uvicorn
    from serving_fixtures import StubPredictor
    from lrsa.serving import ServingConfig, create_app
    from lrsa.serving.server import uvicorn_config
    app = create_app(StubPredictor(), ServingConfig())
    uvicorn.Server(uvicorn_config(app, app.state.config.limits, port=int(sys.argv[1]), log_level="warning")).run()
""")


def _peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def test_a_batch_of_huge_images_keeps_memory_bounded():
    """Defect: 32 posts with a 6300 x 6300 PNG each (131 KB each, under the pixel limit) took the service
    from 610 MB to 5.8 GB. Now the request's declared pixels are bounded before decoding (413), and an
    accepted batch is decoded one image at a time, each downscaled before it is kept."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVE_STUB, str(port)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, 60, proc)
        png = base64.b64encode(bomb_png(6300, 6300)).decode()
        with httpx.Client(base_url=url, timeout=120) as client:
            r = client.post("/v1/predict/batch", json={"posts": [{"text": "Big Picture", "image": png}] * 32})
            assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_many_pixels", r.text
            assert "limit per request is 400000000" in r.json()["error"]["message"]
            before = _peak_rss_mb(proc.pid)
            r = client.post("/v1/predict/batch", json={"posts": [{"text": "Big Picture", "image": png}] * 8})
            assert r.status_code == 200, r.text
            assert r.json()["images"][0] == {"format": "PNG", "width": 6300, "height": 6300,
                                             "bytes": len(base64.b64decode(png))}
            grew = _peak_rss_mb(proc.pid) - before
        # 8 images kept at full size would be 8 x 119 MB (RGB); one at a time, downscaled: one decode
        assert grew < 400, f"peak resident memory grew by {grew:.0f} MB for 8 images of 6300 x 6300"
    finally:
        proc.terminate()
        proc.wait(20)
    if proc.returncode not in (0, -15):
        pytest.fail(proc.stderr.read().decode())
