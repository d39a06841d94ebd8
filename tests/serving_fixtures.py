"""Shared fixtures and helpers of the serving tests (imported by tests/test_serving*.py, tests/test_browser*.py).

Session-wide objects (the trained checkpoint, the server process) are cached in `config.stash`, so that test
modules importing these fixtures share one instance instead of building one each.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from lrsa.serving.client import free_port, wait_healthy

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- real images


def skimage_data(name: str) -> Path:
    """A real photo shipped inside the scikit-image wheel."""
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in the installed scikit-image wheel")
    return path


def photo_jpeg(name: str = "chelsea.png", quality: int = 90) -> bytes:
    """A real photo (scikit-image's chelsea.png, a cat) re-encoded as JPEG."""
    from PIL import Image

    with Image.open(skimage_data(name)) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=quality)
        return buf.getvalue()


def bomb_png(width: int = 12_000, height: int = 12_000) -> bytes:
    """A real, valid grey PNG of width*height zero pixels: ~140 kB on disk, 144 MB once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    rows = (b"\x00" + b"\x00" * width) * 100
    parts = [comp.compress(rows) for _ in range(height // 100)]
    parts.append(comp.compress((b"\x00" + b"\x00" * width) * (height % 100)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def huge_header_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A small PNG whose header declares 10^10 pixels (Pillow's own bomb error path)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
            + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- a deterministic stand-in model


class StubPredictor:
    """Marks capitalised words as aspects (POS, NEU, NEG in turn). For tests of the service machinery only
    (batching, failures); the acceptance tests run the real checkpoint."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def predict_batch(self, posts: list[dict]) -> list:
        from lrsa.data.schema import PredictedAspect, Prediction, Rationale, char_offsets

        with self.lock:
            self.calls.append(len(posts))
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for p in posts:
            if p["text"].strip() == "boom":
                raise RuntimeError("stub model failure")
            words = p["text"].split()
            offs = char_offsets(words)
            caps = [i for i, w in enumerate(words) if w[:1].isupper()]
            aspects = [
                PredictedAspect(start=i, end=i + 1, polarity=("POS", "NEU", "NEG")[k % 3],
                                confidence=(0.93, 0.61, 0.87)[k % 3], char_start=offs[i][0], char_end=offs[i][1],
                                text=words[i])
                for k, i in enumerate(caps)
            ]
            rationale = Rationale(text="stub text rationale", image="stub image rationale" if p["image"] else "",
                                  provenance={"backend": "stub"})
            out.append(Prediction(id=p["id"], text=" ".join(words), words=words, aspects=aspects,
                                  rationale=rationale if p["use_rationales"] else None,
                                  used_rationales=p["use_rationales"]))
        return out

    def info(self) -> dict[str, Any]:
        return {"backbone": "stub"}


# --------------------------------------------------------------------------- servers


class InThreadServer:
    """uvicorn serving an app on 127.0.0.1 from a thread of the test process (real HTTP, real sockets)."""

    def __init__(self, app):
        import uvicorn

        from lrsa.serving.server import uvicorn_config

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(app, app.state.config.limits, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "InThreadServer":
        self.thread.start()
        wait_healthy(self.url, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class ServeProcess:
    """`python -m lrsa serve --checkpoint DIR` as a child process (what a user runs)."""

    def __init__(self, checkpoint: Path, log: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "lrsa", "serve", "--checkpoint", str(checkpoint), "--port", str(self.port),
               "--log-level", "warning", *extra]
        self._log_fh = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_fh, stderr=subprocess.STDOUT, cwd=REPO)

    def start(self, timeout_s: float = 120) -> "ServeProcess":
        try:
            wait_healthy(self.url, timeout_s, self.proc, self.log)
        except Exception:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_fh.close()


# --------------------------------------------------------------------------- the real checkpoint

_CKPT_KEY = pytest.StashKey[Path]()
_SERVER_KEY = pytest.StashKey[ServeProcess]()


def _train_tiny_checkpoint(out: Path, data_dir: str) -> Path:
    """A real checkpoint from the project's training loop: full LRSA (dual cross-attention, rationales from the
    offline lexicon backend, image read as MDCA captions), top 2 MiniLM layers trained for 3 epochs on 300 real
    twitter2015 training posts (about a minute on 2 cores). Weak (dev JMASA F1 ~25), but it finds real
    aspects, so the tests see the whole path from post to highlighted aspect."""
    from lrsa.config import ModelConfig, RunConfig, TrainConfig
    from lrsa.training.loop import train

    run = RunConfig(
        name="serving-test",
        model=ModelConfig(fusion="dual", image_side="captions", train_layers=2),
        train=TrainConfig(dataset="twitter2015", epochs=3, patience=3, train_limit=300, dev_limit=60,
                          batch_size=16, head_lr=3e-3, eval_test=False, seed=0, threads=1),
    )
    train(run, out, data_dir=data_dir, log=lambda _msg: None)
    return out / "best"


def real_posts(n: int, split: str = "test") -> list[dict[str, str]]:
    """Real twitter2015 posts with the MDCA captions of their images (what this model reads as the image)."""
    from lrsa.data import load_dataset
    from lrsa.data.side import side_inputs

    examples = load_dataset("twitter2015", split)[:n]
    captions = side_inputs("twitter2015")["mdca_captions"]
    return [{"id": ex.id, "text": ex.text, "image_text": "; ".join(t.strip() for t in captions[ex.image_id][:4])} for ex in examples]


@pytest.fixture(scope="session")
def checkpoint_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.environ.get("LRSA_DATA_DIR"):
        pytest.fail("LRSA_DATA_DIR is not set: the serving tests train a tiny real checkpoint on twitter2015")
    stash = request.config.stash
    if _CKPT_KEY not in stash:
        t0 = time.perf_counter()
        stash[_CKPT_KEY] = _train_tiny_checkpoint(tmp_path_factory.mktemp("serving-ckpt") / "run",
                                                  os.environ["LRSA_DATA_DIR"])
        print(f"\n[serving] tiny checkpoint trained in {time.perf_counter() - t0:.1f} s")
    return stash[_CKPT_KEY]


@pytest.fixture(scope="session")
def model_server(request: pytest.FixtureRequest, checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`lrsa serve` on the real tiny checkpoint, shared by every serving test module."""
    stash = request.config.stash
    if _SERVER_KEY not in stash:
        log = tmp_path_factory.mktemp("serving-log") / "serve.log"
        server = ServeProcess(checkpoint_dir, log).start()
        stash[_SERVER_KEY] = server
        request.config.add_cleanup(server.stop)
    server = stash[_SERVER_KEY]
    if not server.alive():
        pytest.fail(f"the lrsa serve process died:\n{server.log.read_text()}")
    return server


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where test artefacts (screenshots) go: $LRSA_ARTIFACTS if set, else pytest's temporary directory."""
    env = os.environ.get("LRSA_ARTIFACTS")
    path = Path(env) if env else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
