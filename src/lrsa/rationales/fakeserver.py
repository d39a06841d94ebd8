"""A real chat-completions HTTP server on 127.0.0.1 that injects faults, for tests and benchmarks.

Each distinct request (fingerprint = sha256 of its messages) gets, on its *first* attempt, the fault chosen
by its fingerprint from ``faults`` (cycled: "ok", "429", "500", "hang", "malformed", "empty", "slow"); later
attempts succeed, so a client that retries correctly ends with every answer. Requests whose text contains
``fail_marker`` fail with HTTP 500 on every attempt. Every request is logged (fingerprint, attempt, outcome).

    python -m lrsa.rationales.fakeserver --port 8099 --latency 0.2 --faults ok,429,500
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

FAULTS = ("ok", "429", "500", "hang", "malformed", "empty", "slow")


def fingerprint(messages: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class FaultPlan:
    latency_s: float = 0.0  # added to every answer
    faults: tuple[str, ...] = ()  # first-attempt fault cycle; empty = always "ok"
    retry_after_s: float = 0.1  # Retry-After sent with 429
    slow_s: float = 1.0  # extra delay of a "slow" answer
    hang_s: float = 3600.0  # how long a "hang" holds the connection without answering
    fail_marker: str = "FAIL-ALWAYS"
    empty_always: bool = True  # an "empty" request is empty on every attempt (content, not transport)


@dataclass
class LogEntry:
    fp: str
    attempt: int
    outcome: str
    t: float
    user: str = field(repr=False, default="")
    auth: str = field(repr=False, default="")


def _answer(messages: list[dict[str, Any]]) -> str:
    user = messages[-1]["content"] if messages else ""
    if isinstance(user, list):
        user = " ".join(p.get("text", "") for p in user if isinstance(p, dict))
    tweet = user.split('"')[1] if user.count('"') >= 2 else user
    words = " ".join(tweet.split()[:8])
    kind = "image" if "image" in (messages[0]["content"] if messages else "") else "tweet"
    return (f"This {kind} rationale is about: {words}. It explains who and what is mentioned, the context "
            f"needed to follow it, and the attitude it expresses.")


def make_app(plan: FaultPlan, log: list[LogEntry]):
    app = FastAPI()
    attempts: dict[str, int] = {}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        messages = body.get("messages", [])
        fp = fingerprint(messages)
        attempts[fp] = attempts.get(fp, 0) + 1
        n = attempts[fp]
        user = json.dumps(messages[-1]["content"]) if messages else ""
        if plan.fail_marker in user:
            outcome = "500"
        elif plan.faults and (n == 1 or (plan.empty_always and plan.faults[int(fp[:8], 16) % len(plan.faults)]
                                         == "empty")):
            outcome = plan.faults[int(fp[:8], 16) % len(plan.faults)]
        else:
            outcome = "ok"
        log.append(LogEntry(fp, n, outcome, time.time(), user, request.headers.get("authorization", "")))
        if plan.latency_s:
            await asyncio.sleep(plan.latency_s)
        if outcome == "429":
            return JSONResponse({"error": {"message": "rate limited"}}, status_code=429,
                                headers={"Retry-After": str(plan.retry_after_s)})
        if outcome == "500":
            return JSONResponse({"error": {"message": "internal error"}}, status_code=500)
        if outcome == "hang":  # hold the connection, answer nothing, until the client gives up
            deadline = time.monotonic() + plan.hang_s
            while time.monotonic() < deadline and not await request.is_disconnected():
                await asyncio.sleep(0.05)
            return PlainTextResponse("", status_code=504)
        if outcome == "malformed":
            return PlainTextResponse('{"choices": [{"message": {"content": "trunc', media_type="application/json")
        if outcome == "slow":
            await asyncio.sleep(plan.slow_s)
        content = "" if outcome == "empty" else _answer(messages)
        prompt_tokens = sum(len(json.dumps(m["content"]).split()) for m in messages)
        return {"id": f"fake-{fp[:12]}-{n}", "object": "chat.completion", "model": body.get("model", "fake"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content.split()),
                          "total_tokens": prompt_tokens + len(content.split())}}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fake", "object": "model"}]}

    return app


class FakeLLMServer:
    """Runs the app with uvicorn in a background thread; ``url`` is the ``/v1`` base URL."""

    def __init__(self, plan: FaultPlan | None = None, port: int = 0):
        import uvicorn

        self.plan = plan or FaultPlan()
        self.log: list[LogEntry] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(make_app(self.plan, self.log), log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        daemon=True)

    def start(self) -> "FakeLLMServer":
        self._thread.start()
        deadline = time.time() + 20
        while not self._server.started:
            if time.time() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def outcomes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.log:
            out[e.outcome] = out.get(e.outcome, 0) + 1
        return out


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--faults", default="", help=f"comma list of {', '.join(FAULTS)}")
    a = ap.parse_args()
    faults = tuple(f for f in a.faults.split(",") if f)
    bad = set(faults) - set(FAULTS)
    if bad:
        ap.error(f"unknown faults {sorted(bad)}")
    srv = FakeLLMServer(FaultPlan(latency_s=a.latency, faults=faults), port=a.port).start()
    print(f"fake chat-completions server at {srv.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
