"""`lrsa serve --workers N`: N server processes on one port, each with its own copy of the model.

Each worker is a fresh (spawned) Python process that loads the checkpoint, builds the app and runs uvicorn
on its own listening socket bound with ``SO_REUSEPORT``: the kernel spreads incoming connections over the
workers' sockets (a keep-alive connection stays with the worker that accepted it). One process per core
with one torch thread each avoids the Python work of one request (JSON, validation, rationales, collation)
waiting for the GIL while another request's batch runs. The parent only supervises: it waits until every
worker has loaded its model and listens, says so, forwards SIGTERM / SIGINT, and stops all workers when
one of them exits (a failed worker is an error, never a silently smaller service).

Counters (``GET /v1/stats``) are per worker: a request sees those of the worker that answered it.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import socket
import sys
import time
from typing import Any


def reuseport_socket(host: str, port: int, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` with SO_REUSEPORT (and listening, unless ``listen`` is False)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_in_process(spec: dict[str, Any], sock: socket.socket | None = None, on_ready=None) -> None:
    """Load the model, build the app and run uvicorn (in this process). ``spec``: ``checkpoint``, ``model``
    (keyword arguments of ``ModelPredictor.from_checkpoint``), ``config`` (a ``ServingConfig``),
    ``torch_threads``, ``host``, ``port``, ``log_level``, ``access_log``; ``sock``: a listening socket to
    serve on instead of binding ``host:port``."""
    import uvicorn

    from lrsa.serving import create_app
    from lrsa.serving.model import ModelPredictor
    from lrsa.serving.server import uvicorn_config

    if spec.get("torch_threads"):
        import torch

        torch.set_num_threads(spec["torch_threads"])
    predictor = ModelPredictor.from_checkpoint(spec["checkpoint"], **spec.get("model", {}))
    app = create_app(predictor, spec["config"])
    server = uvicorn.Server(uvicorn_config(app, spec["config"].limits, host=spec["host"], port=spec["port"],
                                           log_level=spec.get("log_level", "info"),
                                           access_log=spec.get("access_log", False)))
    if on_ready is not None:
        on_ready()
    server.run(sockets=[sock] if sock is not None else None)


def _worker(spec: dict[str, Any], index: int, ready: Any) -> None:
    sock = reuseport_socket(spec["host"], spec["port"])
    serve_in_process(spec, sock, on_ready=lambda: ready.put(index))


def run_workers(spec: dict[str, Any], workers: int, say=lambda m: print(m, file=sys.stderr, flush=True),
                load_timeout_s: float = 600) -> int:
    """Start ``workers`` processes serving ``spec`` on one port; return when they have stopped (the exit
    status: 0 after SIGTERM / SIGINT, 1 when a worker failed)."""
    # Hold the port from the start (bound, not listening: it takes no connections): a port in use by
    # another program fails here, before any model is loaded.
    guard = reuseport_socket(spec["host"], spec["port"], listen=False)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(spec, i, ready), name=f"lrsa-serve-worker-{i}", daemon=False)
             for i in range(workers)]
    stopping = {"signal": None}

    def on_signal(signum, _frame) -> None:
        stopping["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for p in procs:
            p.start()
        waiting = set(range(workers))
        deadline = time.monotonic() + load_timeout_s
        while waiting and stopping["signal"] is None:
            try:
                waiting.discard(ready.get(timeout=0.5))
            except queue.Empty:
                pass
            dead = [p for p in procs if p.exitcode is not None]
            if dead:
                say(f"lrsa serve: worker {dead[0].name} exited with {dead[0].exitcode} while loading")
                return 1
            if time.monotonic() > deadline:
                say(f"lrsa serve: {len(waiting)} worker(s) not ready after {load_timeout_s:.0f} s")
                return 1
        if not waiting:
            say(f"lrsa serve: {workers} workers ready on http://{spec['host']}:{spec['port']}/")
        while stopping["signal"] is None:
            dead = [p for p in procs if p.exitcode is not None]
            if dead:
                say(f"lrsa serve: worker {dead[0].name} exited with {dead[0].exitcode}; stopping the others")
                status = 1
                break
            time.sleep(0.5)
        return status
    finally:
        for p in procs:
            if p.exitcode is None and p.pid is not None:
                p.terminate()  # SIGTERM: uvicorn finishes the requests in flight and exits
        for p in procs:
            if p.pid is not None:
                p.join(timeout=30)
                if p.exitcode is None:
                    p.kill()
                    p.join()
        guard.close()
        for s, h in old.items():
            signal.signal(s, h)
