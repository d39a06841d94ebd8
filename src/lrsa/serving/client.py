"""Small helpers for scripts that start an `lrsa serve` process and talk to it over HTTP."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None,
                 log: Path | None = None, poll_s: float = 0.2) -> None:
    """Block until ``GET {url}/healthz`` answers 200. Raises RuntimeError (with the server's log, when
    given) if ``proc`` exits first or the deadline passes."""
    def tail() -> str:
        return f"\n{Path(log).read_text(errors='replace')[-4000:]}" if log and Path(log).exists() else ""

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}{tail()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    raise RuntimeError(f"{url} not healthy after {timeout_s} s{tail()}")
