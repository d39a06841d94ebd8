"""Any OpenAI-compatible chat-completions endpoint (OpenAI, Gemini, vLLM, Ollama, llama.cpp server).

Async (httpx), with a per-request timeout, retries with exponential backoff and full jitter on 429, 5xx,
timeouts, connection errors and malformed responses (``Retry-After`` is honoured), and an optional
requests-per-minute limit. The API key is read from an environment variable when the backend is built; it is
sent only in the ``Authorization`` header and never logged, stored, cached or put into provenance.
Images are attached as data URLs when the model is marked vision-capable and the input has an image file.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import mimetypes
import os
import random
import time
from typing import Any

from lrsa.rationales.backends import Backend, BackendError, Completion, Request
from lrsa.rationales.checks import check
from lrsa.rationales.prompts import DEFAULT_VERSION

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RateLimiter:
    """At most ``rpm`` request starts per minute, evenly spaced (no bursts)."""

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, base_url: str = "https://api.openai.com/v1", model: str = "gpt-4o-mini",
                 api_key_env: str | None = None, vision: bool = False, timeout_s: float = 60.0,
                 max_retries: int = 5, backoff_s: float = 0.5, backoff_max_s: float = 30.0,
                 max_retry_after_s: float = 120.0, rpm: float | None = None, temperature: float = 0.0,
                 max_new_tokens: int = 200, top_p: float | None = None, seed: int | None = None,
                 prompt_version: str = DEFAULT_VERSION, extra_body: dict[str, Any] | None = None, **_: Any):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.vision = vision
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.top_p = top_p
        self.seed = seed
        self.prompt_version = prompt_version
        self.extra_body = extra_body or {}
        self.rpm = rpm
        self._limiter: RateLimiter | None = None
        self._client = None
        env = api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(env)
        if api_key_env and not key:
            raise RuntimeError(f"the API key variable ${api_key_env} is not set")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._rng = random.Random()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, vision={self.vision})"

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_new_tokens}
        if self.top_p is not None:
            s["top_p"] = self.top_p
        if self.seed is not None:
            s["seed"] = self.seed
        if self.extra_body:
            s["extra_body"] = self.extra_body
        return s

    def provenance(self) -> dict[str, Any]:
        p = super().provenance()
        p["endpoint"] = self.base_url
        return p

    def _client_get(self):
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s),
                                             limits=httpx.Limits(max_connections=None,
                                                                 max_keepalive_connections=64),
                                             headers=self._headers)
            self._limiter = RateLimiter(self.rpm)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _payload(self, req: Request) -> dict[str, Any]:
        messages = [dict(m) for m in req.messages]
        if self.vision and req.task == "image" and req.input.image_path:
            mime = mimetypes.guess_type(req.input.image_path)[0] or "image/jpeg"
            with open(req.input.image_path, "rb") as fh:
                data = base64.b64encode(fh.read()).decode("ascii")
            messages[-1]["content"] = [
                {"type": "text", "text": messages[-1]["content"]},
                {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}},
            ]
        body: dict[str, Any] = {"model": self.model, "messages": messages, **self.settings()}
        body.pop("extra_body", None)
        body.update(self.extra_body)
        return body

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^attempt)]."""
        return self._rng.uniform(0, min(self.backoff_max_s, self.backoff_s * (2 ** attempt)))

    async def complete(self, req: Request) -> Completion:
        import httpx

        client = self._client_get()
        body = self._payload(req)
        url = f"{self.base_url}/chat/completions"
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            await self._limiter.wait()
            wait: float | None = None
            try:
                resp = await client.post(url, json=body)
            except httpx.TimeoutException:
                last = f"timeout after {self.timeout_s}s"
            except httpx.TransportError as err:
                last = f"connection error: {type(err).__name__}"
            else:
                if resp.status_code == 200:
                    try:
                        data = resp.json()
                        msg = data["choices"][0]["message"]
                        text = msg.get("content") or ""
                        if isinstance(text, list):  # some servers return content parts
                            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
                        if not isinstance(text, str):
                            raise TypeError("content is not a string")
                        if check(text)[1] == "empty":  # no usable content: transient, like a 5xx
                            last = "empty reply"
                        else:
                            usage = data.get("usage") or {}
                            return Completion(text, int(usage.get("prompt_tokens") or 0),
                                              int(usage.get("completion_tokens") or 0), attempts=attempt + 1)
                    except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as err:
                        last = f"malformed response: {type(err).__name__}"
                elif resp.status_code in RETRY_STATUS:
                    last = f"HTTP {resp.status_code}"
                    ra = parse_retry_after(resp.headers.get("retry-after"))
                    if ra is not None:
                        wait = min(ra, self.max_retry_after_s)
                else:
                    raise BackendError(f"{url}: HTTP {resp.status_code}: {resp.text[:200]}", attempt + 1)
            if attempt < self.max_retries:
                await asyncio.sleep(wait if wait is not None else self._backoff(attempt))
        raise BackendError(f"{url}: gave up after {self.max_retries + 1} attempts ({last})",
                           self.max_retries + 1)
