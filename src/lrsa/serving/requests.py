"""Parsing and validating request bodies (JSON or multipart) into posts, with the service's limits.

Nothing here touches the network or the file system: an `image` is base64 data or uploaded bytes, never a
URL or a path.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from lrsa.serving.config import Limits
from lrsa.serving.errors import ApiError

POST_FIELDS = {"text", "image", "image_text", "id", "use_rationales", "aspects", "explain"}
MAX_ASPECTS = 32
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.ASCII)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass
class RawPost:
    """A validated post whose image (if any) is still encoded bytes."""

    text: str
    image: bytes | None
    image_text: str | None
    id: str | None
    use_rationales: bool
    aspects: list[Any] | None = None  # given aspects (MASC models): surface strings or {"start", "end"}
    explain: bool = False  # each aspect's attribution (lrsa.model.attribution): opt-in, slower


def media_type(content_type: str | None) -> tuple[str, dict[bytes, bytes]]:
    if not content_type:
        return "", {}
    mt, params = parse_options_header(content_type)
    return mt.decode("latin-1").lower(), params


# --------------------------------------------------------------------------- field validation


def _string(value: Any, limits: Limits, field: str, name: str) -> str:
    """A client string field: a str, valid UTF-8, within the text length limit."""
    if not isinstance(value, str):
        raise ApiError("invalid_field", f"`{name}` must be a string, got {type(value).__name__}", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError("invalid_utf8", f"`{name}` holds characters that are not valid UTF-8: {e.reason}", field) from e
    if len(value) > limits.max_text_chars:
        raise ApiError(
            "text_too_long", f"`{name}` has {len(value)} characters; the limit is {limits.max_text_chars}", field
        )
    return value


def _text(value: Any, limits: Limits, field: str) -> str:
    if value is None:
        raise ApiError("missing_field", "`text` is required", field)
    value = _string(value, limits, field, "text")
    if not value.split():
        raise ApiError("invalid_field", "`text` is empty or only whitespace", field)
    return value


def _image_text(value: Any, limits: Limits, field: str) -> str | None:
    if value is None:
        return None
    value = _string(value, limits, field, "image_text")
    return value if value.strip() else None


def _aspects(value: Any, limits: Limits, field: str) -> list[Any] | None:
    """Given aspects: a JSON list of strings or {"start": int, "end": int} (form field: a JSON list, or one
    aspect per line)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            value = parse_json(value.encode("utf-8"))
        else:
            value = [line.strip() for line in value.splitlines() if line.strip()]
    if not isinstance(value, list) or not value:
        raise ApiError("invalid_field", "`aspects` must be a non-empty list", field)
    if len(value) > MAX_ASPECTS:
        raise ApiError("invalid_field", f"`aspects` has {len(value)} entries; the limit is {MAX_ASPECTS}", field)
    out: list[Any] = []
    for j, a in enumerate(value):
        if isinstance(a, str):
            out.append(_string(a, limits, f"{field}[{j}]", "aspect"))
        elif isinstance(a, dict) and set(a) == {"start", "end"} and all(
                type(a[k]) is int and 0 <= a[k] <= 10_000 for k in ("start", "end")):
            out.append({"start": a["start"], "end": a["end"]})
        else:
            raise ApiError("invalid_field", "each aspect is a string or {\"start\": int, \"end\": int} (word "
                                            "indices, end exclusive)", f"{field}[{j}]")
    return out


def _image_b64(value: Any, limits: Limits, field: str) -> bytes | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError("invalid_field", "`image` must be a base64 string (or a data: URL) or null", field)
    payload = _DATA_URL.sub("", value, count=1)
    # Cheap size check before decoding: 4 base64 characters carry 3 bytes.
    if (len(payload) // 4) * 3 > limits.max_image_bytes + 3:
        raise ApiError(
            "image_too_large",
            f"image has about {(len(payload) // 4) * 3} bytes; the limit is {limits.max_image_bytes}",
            field,
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(
            "invalid_base64",
            "`image` must be base64-encoded image bytes; URLs and file paths are not accepted",
            field,
        ) from e


def _id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ApiError("invalid_field", "`id` must be a string or an integer", field)
    value = str(value)
    if len(value) > 200:
        raise ApiError("invalid_field", "`id` is longer than 200 characters", field)
    return value


def _flag(value: Any, default: bool, field: str) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ApiError("invalid_field", f"`{field.rsplit('.', 1)[-1]}` must be a boolean", field)


def post_from_obj(obj: Any, limits: Limits, where: str = "", default_rationales: bool = True) -> RawPost:
    if not isinstance(obj, dict):
        raise ApiError("invalid_field", "a post must be a JSON object", where or None)
    unknown = sorted(set(obj) - POST_FIELDS)
    if unknown:
        raise ApiError(
            "invalid_field",
            f"unknown field(s) {unknown}; accepted: {sorted(POST_FIELDS)} (images are sent as base64, "
            "never as URLs or paths)",
            f"{where}{unknown[0]}",
        )
    return RawPost(
        text=_text(obj.get("text"), limits, f"{where}text"),
        image=_image_b64(obj.get("image"), limits, f"{where}image"),
        image_text=_image_text(obj.get("image_text"), limits, f"{where}image_text"),
        id=_id(obj.get("id"), f"{where}id"),
        use_rationales=_flag(obj.get("use_rationales"), default_rationales, f"{where}use_rationales"),
        aspects=_aspects(obj.get("aspects"), limits, f"{where}aspects"),
        explain=_flag(obj.get("explain"), False, f"{where}explain"),
    )


# --------------------------------------------------------------------------- bodies


def parse_json(body: bytes) -> Any:
    if not body:
        raise ApiError("missing_field", "the request body is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError("invalid_utf8", f"the body is not valid UTF-8 (byte {e.start})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError("invalid_json", f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError:  # hostile nesting ([[[[...): bad input, not a server fault
        raise ApiError("invalid_json", "the body is nested too deeply") from None
    except ValueError as e:  # e.g. an integer of thousands of digits (Python's int-string limit)
        raise ApiError("invalid_json", f"the body is not acceptable JSON: {e}") from None


def parse_single_json(body: bytes, limits: Limits) -> RawPost:
    return post_from_obj(parse_json(body), limits)


def parse_batch_json(body: bytes, limits: Limits) -> list[RawPost]:
    obj = parse_json(body)
    if not isinstance(obj, dict):
        raise ApiError("invalid_field", "the body must be a JSON object with a `posts` list")
    unknown = sorted(set(obj) - {"posts", "use_rationales"})
    if unknown:
        raise ApiError("invalid_field", f"unknown field(s) {unknown}; accepted: ['posts', 'use_rationales']", unknown[0])
    posts = obj.get("posts")
    if posts is None:
        raise ApiError("missing_field", "`posts` is required", "posts")
    if not isinstance(posts, list):
        raise ApiError("invalid_field", "`posts` must be a list", "posts")
    if not posts:
        raise ApiError("invalid_field", "`posts` is empty", "posts")
    if len(posts) > limits.max_batch:
        raise ApiError("batch_too_large", f"{len(posts)} posts; the limit is {limits.max_batch}", "posts")
    default = _flag(obj.get("use_rationales"), True, "use_rationales")
    return [post_from_obj(p, limits, f"posts[{i}].", default) for i, p in enumerate(posts)]


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    data: bytearray | None = None


def parse_multipart(body: bytes, content_type_params: dict[bytes, bytes], limits: Limits) -> RawPost:
    """Fields: `text` (required), `image` (a file), `id`, `use_rationales`, `explain`."""
    boundary = content_type_params.get(b"boundary")
    if not boundary:
        raise ApiError("unsupported_content_type", "multipart/form-data without a boundary")
    parts: list[_Part] = []
    current: dict[str, Any] = {"part": None, "hname": b"", "hvalue": b"", "headers": {}}

    def on_part_begin() -> None:
        current["part"] = _Part(data=bytearray())
        current["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current["hname"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current["hvalue"] += data[start:end]

    def on_header_end() -> None:
        current["headers"][current["hname"].decode("latin-1").lower()] = current["hvalue"]
        current["hname"], current["hvalue"] = b"", b""

    def on_headers_finished() -> None:
        part: _Part = current["part"]
        disp, opts = parse_options_header(current["headers"].get("content-disposition", b""))
        name = opts.get(b"name")
        part.name = name.decode("utf-8", "replace") if name is not None else None
        fn = opts.get(b"filename")
        part.filename = fn.decode("utf-8", "replace") if fn is not None else None
        ct = current["headers"].get("content-type")
        part.content_type = ct.decode("latin-1") if ct is not None else None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current["part"].data += data[start:end]

    def on_part_end() -> None:
        parts.append(current["part"])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:  # python-multipart raises its own MultipartParseError / ValueError
        raise ApiError("invalid_field", f"malformed multipart body: {e}") from e

    fields: dict[str, _Part] = {}
    for part in parts:
        if part.name is None:
            raise ApiError("invalid_field", "a multipart part has no name")
        if part.name not in POST_FIELDS:
            raise ApiError("invalid_field", f"unknown form field {part.name!r}; accepted: {sorted(POST_FIELDS)}", part.name)
        if part.name in fields:
            raise ApiError("invalid_field", f"form field {part.name!r} is given more than once", part.name)
        fields[part.name] = part

    def as_text(name: str) -> str | None:
        part = fields.get(name)
        if part is None:
            return None
        try:
            return bytes(part.data or b"").decode("utf-8")
        except UnicodeDecodeError as e:
            raise ApiError("invalid_utf8", f"form field {name!r} is not valid UTF-8 (byte {e.start})", name) from e

    image = bytes(fields["image"].data or b"") if "image" in fields else b""
    if len(image) > limits.max_image_bytes:
        raise ApiError("image_too_large", f"image has {len(image)} bytes; the limit is {limits.max_image_bytes}", "image")
    return RawPost(
        text=_text(as_text("text"), limits, "text"),
        image=image or None,  # an empty file input sends an empty part: no image
        image_text=_image_text(as_text("image_text"), limits, "image_text"),
        id=_id(as_text("id"), "id"),
        use_rationales=_flag(as_text("use_rationales"), True, "use_rationales"),
        aspects=_aspects(as_text("aspects"), limits, "aspects"),
        explain=_flag(as_text("explain"), False, "explain"),
    )
