"""Safe image decoding for untrusted uploads.

Order of checks: byte size (before anything is parsed) -> format sniffed among an allow-list only (no EPS,
PDF, ... plugins are ever tried) -> declared pixel count and side from the header (before decoding, so a
decompression bomb never allocates) -> full decode (a truncated or corrupt file fails here) -> RGB.
Pillow's process-wide settings (MAX_IMAGE_PIXELS, LOAD_TRUNCATED_IMAGES) are left untouched.

Memory: the model reads at most ``Limits.keep_image_side`` pixels a side (the pixel encoder 224), so a
JPEG is decoded at the smallest scale that still covers that (``draft``), every image is downscaled to it
before it is kept, and no more than ``Limits.max_pixels_in_flight`` full-size pixels are being decoded at
once over all requests (``PixelBudget``). ``declared_pixels`` reads only headers, so a request's images can
be bounded together (``Limits.max_request_pixels``) before any of them is decoded.
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from lrsa.serving.config import Limits
from lrsa.serving.errors import ApiError

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP")


class PixelBudget:
    """At most ``capacity`` pixels being decoded at once (threads wait their turn). A single image larger
    than the capacity waits until nothing else is decoding, then goes alone."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int):
        need = min(pixels, self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + need <= self.capacity)
            self.in_use += need
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= need
                self._cond.notify_all()


def declared_pixels(data: bytes) -> int:
    """Width x height from the header only (0 if it cannot be read: ``decode_image`` then names the error)."""
    try:
        with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as img:
            return img.size[0] * img.size[1]
    except Exception:  # noqa: BLE001 - anything unreadable is decode_image's to report, with its field
        return 0


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, fully loaded, longest side at most Limits.keep_image_side
    format: str
    width: int  # as uploaded (before downscaling)
    height: int
    bytes: int


def decode_image(data: bytes, limits: Limits, field: str = "image",
                 budget: PixelBudget | None = None) -> DecodedImage:
    if len(data) > limits.max_image_bytes:
        raise ApiError(
            "image_too_large", f"image has {len(data)} bytes; the limit is {limits.max_image_bytes}", field
        )
    if not data:
        raise ApiError("invalid_field", "image is empty", field)
    try:
        img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError as e:
        raise ApiError("image_too_many_pixels", f"image rejected as a decompression bomb: {e}", field) from e
    except UnidentifiedImageError as e:
        raise ApiError(
            "unsupported_image", f"not an image in an accepted format ({', '.join(ALLOWED_FORMATS)})", field
        ) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # malformed header of a recognised format
        raise ApiError("image_truncated", f"image header is corrupt: {e}", field) from e
    with img:
        width, height = img.size
        if width * height > limits.max_image_pixels or max(width, height) > limits.max_image_side:
            raise ApiError(
                "image_too_many_pixels",
                f"image declares {width}x{height} = {width * height} pixels; the limits are "
                f"{limits.max_image_pixels} pixels and {limits.max_image_side} per side",
                field,
            )
        fmt = img.format or "unknown"
        keep = limits.keep_image_side
        try:
            img.seek(0)  # first frame of an animation
            if fmt == "JPEG":
                img.draft("RGB", (keep, keep))  # decode at 1/2, 1/4 or 1/8 scale when that still covers keep
            with budget.hold(img.size[0] * img.size[1]) if budget else nullcontext():
                img.load()
                if max(img.size) > keep:
                    img.thumbnail((keep, keep), Image.Resampling.BILINEAR)  # in the decoded mode: fewer bytes
                rgb = img.convert("RGB")
        except Image.DecompressionBombError as e:
            raise ApiError("image_too_many_pixels", f"image rejected as a decompression bomb: {e}", field) from e
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning) as e:
            raise ApiError("image_truncated", f"image cannot be decoded: {e}", field) from e
    return DecodedImage(image=rgb, format=fmt, width=width, height=height, bytes=len(data))
