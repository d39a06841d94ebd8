"""Running the app under uvicorn with deadlines on slow clients.

uvicorn (0.54, h11) closes idle keep-alive connections but has no deadline for a request's headers: a
client that sends a header line now and then (slowloris) holds its connection forever, since every byte
cancels the keep-alive timer. ``GuardedH11Protocol`` arms a header deadline when a connection opens and
after every response; when it fires and the client has still not completed a request line and its
headers, the connection is closed. The body deadline (``Limits.body_timeout_s`` per read, 408) is the
app's (``lrsa.serving.app.BodyLimitMiddleware``), which also ends quietly when a client hangs up mid-body.

``uvicorn_config(app, limits, ...)`` is the one place that builds the server's configuration; ``lrsa
serve`` and the tests use it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from lrsa.serving.config import Limits


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline of ``header_timeout_s`` for each request's headers."""

    header_timeout_s: float = Limits().header_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._on_header_deadline)

    def _on_header_deadline(self) -> None:
        # IDLE: h11 has not yet parsed a complete request line and headers for this cycle
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete headers in %.0f s", self.header_timeout_s)
            self.transport.close()


def protocol_class(header_timeout_s: float) -> type[GuardedH11Protocol]:
    """A ``GuardedH11Protocol`` with this header deadline (uvicorn takes a class, not an instance)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": float(header_timeout_s)})


def uvicorn_config(app: Any, limits: Limits, host: str = "127.0.0.1", port: int = 8000,
                   **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, http=protocol_class(limits.header_timeout_s), **kwargs)
