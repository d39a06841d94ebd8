"""The service's error model: every failure is `{"error": {"code", "status", "message", "field"}}`.

`ERROR_CODES` is the single table of codes, HTTP statuses and meanings; docs/serving.md mirrors it and a
test checks that they agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# code -> (HTTP status, when it is returned)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "invalid_json": (400, "The body is not valid JSON."),
    "invalid_utf8": (400, "The body or a text field is not valid UTF-8 (or holds lone surrogates)."),
    "invalid_base64": (400, "`image` is not valid base64 (URLs and file paths are never fetched or opened)."),
    "not_found": (404, "No such route."),
    "method_not_allowed": (405, "The route exists but not for this HTTP method."),
    "request_timeout": (408, "The request body stalled for longer than `body_timeout_s` (the connection is closed)."),
    "text_too_long": (413, "`text` has more characters than `max_text_chars`."),
    "image_too_large": (413, "The encoded image has more bytes than `max_image_bytes`."),
    "image_too_many_pixels": (
        413,
        "The image header declares more than `max_image_pixels` pixels or a side over `max_image_side`, or "
        "the images of one request more than `max_request_pixels` in all (decompression-bomb guard; checked "
        "before decoding).",
    ),
    "batch_too_large": (413, "More posts than `max_batch` in one batch request."),
    "body_too_large": (413, "The request body is larger than `max_body_bytes`."),
    "unsupported_content_type": (
        415,
        "Content-Type is not application/json or multipart/form-data (for this route).",
    ),
    "unsupported_image": (415, "The upload is not an image in an accepted format (JPEG, PNG, GIF, WEBP, BMP)."),
    "missing_field": (422, "A required field is absent (e.g. `text`, `posts`)."),
    "invalid_field": (422, "A field has the wrong type or value, or an unknown field was sent."),
    "image_truncated": (422, "The image is truncated or corrupt and cannot be decoded."),
    "overloaded": (503, "Too many posts are queued; retry later (see Retry-After)."),
    "internal_error": (500, "The model failed on this input; the server keeps serving."),
}


class ErrorInfo(BaseModel):
    code: str
    status: int
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class ApiError(Exception):
    """A client-visible failure with a code from ERROR_CODES."""

    def __init__(self, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        if code not in ERROR_CODES:
            raise KeyError(f"undocumented error code {code!r}")
        self.code = code
        self.status = ERROR_CODES[code][0]
        self.message = message
        self.field = field
        self.headers = headers or {}
        super().__init__(f"{code}: {message}")

    def body(self) -> dict[str, Any]:
        return ErrorResponse(
            error=ErrorInfo(code=self.code, status=self.status, message=self.message, field=self.field)
        ).model_dump()


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entry listing the given codes under their statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status, meaning = ERROR_CODES[code]
        entry = out.setdefault(status, {"model": ErrorResponse, "description": ""})
        entry["description"] = (entry["description"] + "; " if entry["description"] else "") + f"`{code}`: {meaning}"
    return out
