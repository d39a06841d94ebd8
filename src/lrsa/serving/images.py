"""Safe image decoding for untrusted uploads.

Order of checks: byte size (before anything is parsed) -> format sniffed among an allow-list only (no EPS,
PDF, ... plugins are ever tried) -> declared pixel count and side from the header (before decoding, so a
decompression bomb never allocates) -> full decode (a truncated or corrupt file fails here) -> RGB.
Pillow's process-wide settings (MAX_IMAGE_PIXELS, LOAD_TRUNCATED_IMAGES) are left untouched.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from lrsa.serving.config import Limits
from lrsa.serving.errors import ApiError

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP")


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, fully loaded
    format: str
    width: int
    height: int
    bytes: int


def decode_image(data: bytes, limits: Limits, field: str = "image") -> DecodedImage:
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
        try:
            img.seek(0)  # first frame of an animation
            img.load()
            rgb = img.convert("RGB")
        except Image.DecompressionBombError as e:
            raise ApiError("image_too_many_pixels", f"image rejected as a decompression bomb: {e}", field) from e
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning) as e:
            raise ApiError("image_truncated", f"image cannot be decoded: {e}", field) from e
    return DecodedImage(image=rgb, format=fmt, width=width, height=height, bytes=len(data))
