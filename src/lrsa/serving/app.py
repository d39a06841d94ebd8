"""The FastAPI application: routes, error handlers, body-size guard, static web page.

Routes: GET / (web page), GET /healthz, GET /v1/model, GET /v1/stats, POST /v1/predict (JSON or multipart),
POST /v1/predict/batch (JSON), GET /docs, /redoc, /openapi.json (served without any CDN).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import lrsa
from lrsa.model.posts import resolve_aspects, tokenize
from lrsa.data.schema import Prediction
from lrsa.serving.batcher import InferenceRunner
from lrsa.serving.config import ServingConfig
from lrsa.serving.errors import ApiError, error_responses
from lrsa.serving.images import ALLOWED_FORMATS, PixelBudget, declared_pixels, decode_image
from lrsa.serving.predictor import Post, Predictor
from lrsa.serving.requests import RawPost, media_type, parse_batch_json, parse_multipart, parse_single_json

log = logging.getLogger("lrsa.serving")

# The page loads nothing from elsewhere; images are previewed from blob: URLs of the user's own file.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


# --------------------------------------------------------------------------- response models


class ImageInfo(BaseModel):
    format: str
    width: int
    height: int
    bytes: int


class ServerTimings(BaseModel):
    decode_ms: float  # image decoding and request parsing
    queue_ms: float  # waiting for the inference thread / the micro-batch to start
    inference_ms: float  # the predict_batch call that served this request
    total_ms: float
    batch_posts: int  # posts in that predict_batch call (more than this request's when requests were merged)


class PredictResponse(BaseModel):
    prediction: Prediction
    image: ImageInfo | None
    server: ServerTimings


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    images: list[ImageInfo | None]
    server: ServerTimings


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["text"],
                    "additionalProperties": False,
                    "properties": {
                        "text": {"type": "string", "description": "the post"},
                        "image": {
                            "type": ["string", "null"],
                            "description": "base64 image bytes or a data:image/...;base64, URL (never a URL or path)",
                        },
                        "image_text": {
                            "type": ["string", "null"],
                            "description": "a caption / description of the image, read by models that "
                            "read the image as text (image_side in GET /v1/model); without it such a model reads "
                            "the text alone and the prediction's notes say so",
                        },
                        "id": {"type": ["string", "null"]},
                        "use_rationales": {"type": "boolean", "default": True},
                        "explain": {"type": "boolean", "default": False,
                                    "description": "each aspect also gets an `attribution`: what it leaned on "
                                    "(text, V, L_t, L_i) and the rationale words that mattered; slower"},
                    },
                },
                "example": {"text": "Chuck Bass is everything #MCM", "image": None},
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {"type": "string"},
                        "image": {"type": "string", "format": "binary"},
                        "image_text": {"type": "string"},
                        "id": {"type": "string"},
                        "use_rationales": {"type": "boolean", "default": True},
                        "explain": {"type": "boolean", "default": False},
                    },
                }
            },
        },
    }
}

_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["posts"],
                    "properties": {
                        "posts": {
                            "type": "array",
                            "items": _PREDICT_BODY["requestBody"]["content"]["application/json"]["schema"],
                        },
                        "use_rationales": {"type": "boolean", "default": True},
                    },
                }
            }
        },
    }
}

_COMMON_ERRORS = ("body_too_large", "invalid_json", "invalid_utf8", "missing_field", "invalid_field", "overloaded")
_IMAGE_ERRORS = ("invalid_base64", "image_too_large", "image_too_many_pixels", "unsupported_image", "image_truncated")


# --------------------------------------------------------------------------- body-size guard


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


class BodyLimitMiddleware:
    """Rejects bodies over `max_bytes` from Content-Length, or while a chunked body streams in; answers 408
    when a body read waits longer than `body_timeout_s` (a client that stalls mid-body); ends quietly when
    the client hangs up mid-body (nobody is left to answer, and it is not a server fault to log)."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout_s: float | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(send, ApiError("body_too_large", f"request body of {declared} bytes; "
                                                                        f"the limit is {self.max_bytes}"))
                    return
        received = 0
        started = False
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done or self.body_timeout_s is None:
                message = await receive()  # after the body: e.g. waiting for a disconnect, no deadline
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.body_timeout_s)
                except TimeoutError:
                    raise _BodyTimeout() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, ApiError("body_too_large", f"request body of {received} bytes; the "
                                                                    f"limit is {self.max_bytes}"))
        except _BodyTimeout:
            if not started:
                await self._reject(send, ApiError("request_timeout", f"the request body stalled: no data for "
                                                  f"{self.body_timeout_s:g} s after {received} bytes"))
        except ClientDisconnect:
            log.info("client hung up before its request body was complete (%d bytes received)", received)

    async def _reject(self, send: Send, err: ApiError) -> None:
        response = JSONResponse(err.body(), status_code=err.status, headers={"Connection": "close"})
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a JSONResponse never reads the request
    return {"type": "http.disconnect"}


# --------------------------------------------------------------------------- the app


def create_app(predictor: Predictor, config: ServingConfig | None = None) -> FastAPI:
    config = config or ServingConfig()
    limits = config.limits
    runner = InferenceRunner(lambda posts: predictor.predict_batch(posts), config.batching)
    pixel_budget = PixelBudget(limits.max_pixels_in_flight)  # full-size decodes at once, over all requests
    started_at = time.time()
    host = (predictor.info() or {}).get("host")  # "aspect": the posts must carry their aspects

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    app = FastAPIOffline(
        title="LRSA",
        version=lrsa.__version__,
        description=(
            "Multimodal aspect-based sentiment analysis with LLM-generated rationales. Every error is "
            '`{"error": {"code", "status", "message", "field"}}`; the codes are listed in docs/serving.md.'
        ),
        lifespan=lifespan,
    )
    app.state.runner = runner
    app.state.config = config
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes, body_timeout_s=limits.body_timeout_s)

    # ---- errors
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        if code is None:
            return JSONResponse({"error": {"code": "http_error", "status": exc.status_code,
                                           "message": str(exc.detail), "field": None}}, status_code=exc.status_code)
        err = ApiError(code, str(exc.detail))
        return JSONResponse(err.body(), status_code=err.status, headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        err = ApiError("invalid_field", str(first.get("msg", "invalid request")), ".".join(map(str, first.get("loc", ()))))
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("prediction failed")
        err = ApiError("internal_error", f"{type(exc).__name__}: {exc}")
        return JSONResponse(err.body(), status_code=err.status)

    # ---- helpers
    def decode_posts(raw: list[RawPost], fields: list[str]) -> tuple[list[Post], list[ImageInfo | None]]:
        posts: list[Post] = []
        infos: list[ImageInfo | None] = []
        declared = sum(declared_pixels(r.image) for r in raw if r.image is not None)  # headers only
        if declared > limits.max_request_pixels:
            raise ApiError("image_too_many_pixels", f"the images of this request declare {declared} pixels in "
                           f"all; the limit per request is {limits.max_request_pixels}: send fewer or "
                           "smaller images per request", fields[0] if len(raw) == 1 else "posts")
        for r, field in zip(raw, fields):
            img = None
            info = None
            if r.image is not None:
                decoded = decode_image(r.image, limits, field, pixel_budget)
                img = decoded.image
                info = ImageInfo(format=decoded.format, width=decoded.width, height=decoded.height, bytes=decoded.bytes)
            prefix = field[: -len("image")]  # "" for a single post, "posts[3]." in a batch
            spans = None
            if host == "aspect" and r.aspects is None:
                raise ApiError("missing_field", "this model classifies given aspects (MASC): give `aspects`",
                               f"{prefix}aspects")
            if r.aspects is not None:
                if host != "aspect":
                    raise ApiError("invalid_field", f"this model extracts the aspects itself (host {host}); "
                                                    "given aspects need a MASC checkpoint", f"{prefix}aspects")
                try:
                    spans = [{"start": s, "end": e}
                             for s, e in resolve_aspects(r.aspects, tokenize(r.text)[0], "aspects")]
                except ValueError as e:
                    raise ApiError("invalid_field", str(e), f"{prefix}aspects") from None
            posts.append(Post(id=r.id, text=r.text, image=img, image_text=r.image_text,
                              use_rationales=r.use_rationales, aspects=spans, explain=r.explain))
            infos.append(info)
        return posts, infos

    async def read_body(request: Request) -> bytes:
        return await request.body()

    async def infer(posts: list[Post]):
        try:
            return await runner.submit(posts)
        except ApiError:
            raise
        except Exception as e:  # the model failed on this input: answer 500, keep serving
            log.exception("prediction failed")
            raise ApiError("internal_error", f"{type(e).__name__}: {e}") from e

    # ---- routes
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            str(files("lrsa.serving").joinpath("static/index.html")),
            media_type="text/html",
            headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                     "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(packages=[("lrsa.serving", "static")]), name="static")

    @app.get("/healthz", summary="Liveness: the model is loaded and the inference thread is up")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - started_at, 3)}

    @app.get("/v1/model", summary="The model: backbone, training data, scores, rationale backend; and the limits")
    async def model_info() -> dict[str, Any]:
        return {
            "model": predictor.info(),
            "serving": config.to_dict(),
            "image_formats": list(ALLOWED_FORMATS),
            "lrsa_version": lrsa.__version__,
        }

    @app.get("/v1/stats", summary="Counters of the inference runner (batches and their sizes)")
    async def stats() -> dict[str, Any]:
        return runner.stats.to_dict()

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="Aspects, sentiments and rationales for one post (JSON with base64 image, or multipart upload)",
        openapi_extra=_PREDICT_BODY,
        responses=error_responses(*_COMMON_ERRORS, *_IMAGE_ERRORS, "text_too_long", "unsupported_content_type"),
    )
    async def predict(request: Request) -> PredictResponse:
        t0 = time.perf_counter()
        mt, params = media_type(request.headers.get("content-type"))
        if mt not in ("application/json", "multipart/form-data"):
            raise ApiError(
                "unsupported_content_type",
                f"Content-Type {mt or '(none)'!s} is not accepted; use application/json or multipart/form-data",
            )
        body = await read_body(request)
        raw = parse_single_json(body, limits) if mt == "application/json" else parse_multipart(body, params, limits)
        posts, infos = await asyncio.to_thread(decode_posts, [raw], ["image"])
        t1 = time.perf_counter()
        result = await infer(posts)
        total = (time.perf_counter() - t0) * 1000
        return PredictResponse(
            prediction=result.predictions[0],
            image=infos[0],
            server=ServerTimings(decode_ms=(t1 - t0) * 1000, queue_ms=result.queue_ms,
                                 inference_ms=result.inference_ms, total_ms=total, batch_posts=result.batch_posts),
        )

    @app.post(
        "/v1/predict/batch",
        response_model=BatchResponse,
        summary="Predict up to `max_batch` posts in one request (JSON)",
        openapi_extra=_BATCH_BODY,
        responses=error_responses(*_COMMON_ERRORS, *_IMAGE_ERRORS, "text_too_long", "batch_too_large",
                                  "unsupported_content_type"),
    )
    async def predict_batch(request: Request) -> BatchResponse:
        t0 = time.perf_counter()
        mt, _ = media_type(request.headers.get("content-type"))
        if mt != "application/json":
            raise ApiError("unsupported_content_type", f"Content-Type {mt or '(none)'!s} is not accepted; use application/json")
        raw = parse_batch_json(await read_body(request), limits)
        posts, infos = await asyncio.to_thread(decode_posts, raw, [f"posts[{i}].image" for i in range(len(raw))])
        t1 = time.perf_counter()
        result = await infer(posts)
        total = (time.perf_counter() - t0) * 1000
        return BatchResponse(
            predictions=result.predictions,
            images=infos,
            server=ServerTimings(decode_ms=(t1 - t0) * 1000, queue_ms=result.queue_ms,
                                 inference_ms=result.inference_ms, total_ms=total, batch_posts=result.batch_posts),
        )

    return app
