"""Service limits and micro-batching settings (plain frozen dataclasses; no globals)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Limits:
    """What one request may carry. Each breach is answered with a documented JSON error (see errors.py)."""

    max_text_chars: int = 2_000  # characters of one post's text
    max_image_bytes: int = 5 * 1024 * 1024  # encoded image bytes (after base64 decoding)
    max_image_pixels: int = 40_000_000  # width * height, checked from the header before decoding
    max_image_side: int = 12_000  # longest side in pixels, also checked before decoding
    max_batch: int = 32  # posts in one /v1/predict/batch request
    max_body_bytes: int = 16 * 1024 * 1024  # whole request body, enforced while it streams in
    max_request_pixels: int = 400_000_000  # declared pixels of all images of one request, before decoding
    max_pixels_in_flight: int = 120_000_000  # full-size decoded pixels at once, over all requests
    keep_image_side: int = 1024  # a decoded image is downscaled to this longest side before it is kept
    header_timeout_s: int = 10  # a client must send its request line and headers within this
    body_timeout_s: int = 30  # ... and its body within this (each read)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class BatchingConfig:
    """Dynamic micro-batching: concurrent requests are collected for up to `max_wait_ms` or until
    `max_batch` posts are waiting, then run as one `predict_batch` call in the inference thread."""

    enabled: bool = True
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 1_024  # posts waiting; beyond this requests get 503 overloaded
    # glibc malloc_trim after a model call at most every this many seconds (negative: never). Batches of
    # varying shapes leave freed memory in malloc's heaps; trimming keeps resident memory flat under load.
    trim_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"BatchingConfig.max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"BatchingConfig.max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ValueError(f"BatchingConfig.max_queue must be >= 1, got {self.max_queue}")


@dataclass(frozen=True)
class ServingConfig:
    limits: Limits = field(default_factory=Limits)
    batching: BatchingConfig = field(default_factory=BatchingConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"limits": asdict(self.limits), "batching": asdict(self.batching)}
