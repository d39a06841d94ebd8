"""Bad input against the real service over HTTP: each case gets its specific 4xx and JSON error, and the
server keeps serving (health checked after every case, a real prediction at the end)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from serving_fixtures import (  # noqa: F401 - fixtures
    artifacts_dir,
    bomb_png,
    checkpoint_dir,
    huge_header_png,
    model_server,
    photo_jpeg,
    skimage_data,
)

from lrsa.serving import ERROR_CODES, Limits

pytestmark = pytest.mark.data
LIMITS = Limits()  # `lrsa serve` runs with the default limits in these tests


def _jpeg() -> bytes:
    return photo_jpeg()


def _cases():
    jpg = _jpeg()
    b64 = base64.b64encode(jpg).decode()
    return {
        "oversized_text": ("/v1/predict", {"json": {"text": "a " * (LIMITS.max_text_chars // 2 + 1)}},
                           413, "text_too_long"),
        "oversized_text_multipart": ("/v1/predict", {"files": {"text": (None, "x" * (LIMITS.max_text_chars + 1))}},
                                     413, "text_too_long"),
        "non_image_upload": ("/v1/predict", {"data": {"text": "Cats rule"},
                                             "files": {"image": ("notes.pdf", b"%PDF-1.4\n% not an image\n",
                                                                 "application/pdf")}}, 415, "unsupported_image"),
        "tiff_not_accepted": ("/v1/predict", {"data": {"text": "Cats rule"},
                                              "files": {"image": ("page.tif", skimage_data("multipage.tif").read_bytes(),
                                                                  "image/tiff")}}, 415, "unsupported_image"),
        "truncated_jpeg": ("/v1/predict", {"data": {"text": "Cats rule"},
                                           "files": {"image": ("cat.jpg", jpg[: len(jpg) // 2], "image/jpeg")}},
                           422, "image_truncated"),
        "truncated_jpeg_base64": ("/v1/predict", {"json": {"text": "Cats rule",
                                                           "image": base64.b64encode(jpg[: len(jpg) // 3]).decode()}},
                                  422, "image_truncated"),
        "decompression_bomb": ("/v1/predict", {"data": {"text": "Cats rule"},
                                               "files": {"image": ("bomb.png", bomb_png(), "image/png")}},
                               413, "image_too_many_pixels"),
        "bomb_header_10g_pixels": ("/v1/predict", {"json": {"text": "Cats rule",
                                                            "image": base64.b64encode(huge_header_png()).decode()}},
                                   413, "image_too_many_pixels"),
        "image_too_many_bytes": ("/v1/predict", {"data": {"text": "Cats rule"},
                                                 "files": {"image": ("big.jpg", jpg + b"\0" * LIMITS.max_image_bytes,
                                                                     "image/jpeg")}}, 413, "image_too_large"),
        "wrong_content_type": ("/v1/predict", {"content": b"Cats rule", "headers": {"content-type": "text/plain"}},
                               415, "unsupported_content_type"),
        "no_content_type": ("/v1/predict", {"content": json.dumps({"text": "Cats rule"}).encode()},
                            415, "unsupported_content_type"),
        "batch_as_multipart": ("/v1/predict/batch", {"files": {"text": (None, "Cats rule")}}, 415, "unsupported_content_type"),
        "missing_text_json": ("/v1/predict", {"json": {"image": b64}}, 422, "missing_field"),
        "missing_text_multipart": ("/v1/predict", {"files": {"image": ("cat.jpg", jpg, "image/jpeg")}},
                                   422, "missing_field"),
        "missing_posts": ("/v1/predict/batch", {"json": {"use_rationales": True}}, 422, "missing_field"),
        "empty_body": ("/v1/predict", {"content": b"", "headers": {"content-type": "application/json"}},
                       422, "missing_field"),
        "text_not_a_string": ("/v1/predict", {"json": {"text": 42}}, 422, "invalid_field"),
        "text_blank": ("/v1/predict", {"json": {"text": "   "}}, 422, "invalid_field"),
        "unknown_field_image_url": ("/v1/predict", {"json": {"text": "Cats rule",
                                                             "image_url": "https://example.com/cat.jpg"}},
                                    422, "invalid_field"),
        "image_is_a_url": ("/v1/predict", {"json": {"text": "Cats rule", "image": "https://example.com/cat.jpg"}},
                           400, "invalid_base64"),
        "image_is_a_path": ("/v1/predict", {"json": {"text": "Cats rule", "image": "/etc/passwd"}},
                            400, "invalid_base64"),
        "oversized_batch": ("/v1/predict/batch", {"json": {"posts": [{"text": "Cats rule"}] * (LIMITS.max_batch + 1)}},
                            413, "batch_too_large"),
        "empty_batch": ("/v1/predict/batch", {"json": {"posts": []}}, 422, "invalid_field"),
        "bad_post_in_batch": ("/v1/predict/batch", {"json": {"posts": [{"text": "ok"}, {"text": "ok", "image": "@@"}]}},
                              400, "invalid_base64"),
        "invalid_utf8_json": ("/v1/predict", {"content": b'{"text": "caf\xe9 \xff"}',
                                              "headers": {"content-type": "application/json"}}, 400, "invalid_utf8"),
        "invalid_utf8_multipart": ("/v1/predict", {"files": {"text": (None, b"caf\xe9 \xff")}}, 400, "invalid_utf8"),
        "lone_surrogate": ("/v1/predict", {"content": b'{"text": "bad \\ud800 text"}',
                                           "headers": {"content-type": "application/json"}}, 400, "invalid_utf8"),
        "invalid_json": ("/v1/predict", {"content": b'{"text": "unclosed', "headers": {"content-type": "application/json"}},
                         400, "invalid_json"),
        "body_too_large": ("/v1/predict", {"content": b" " * (LIMITS.max_body_bytes + 1),
                                           "headers": {"content-type": "application/json"}}, 413, "body_too_large"),
        "body_too_large_chunked": ("/v1/predict", {"content": iter([b" " * (1 << 20)] * 17),
                                                   "headers": {"content-type": "application/json"}},
                                   413, "body_too_large"),
        "unknown_route": ("/v1/nothing", {"json": {}}, 404, "not_found"),
        # hostile JSON once answered 500 with a traceback in the log: bad input is a 400
        "json_nested_100k_deep": ("/v1/predict", {"content": b"[" * 100_000 + b"]" * 100_000,
                                                  "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        "json_5000_digit_integer": ("/v1/predict", {"content": b'{"text": "Cats rule", "id": ' + b"9" * 5000 + b"}",
                                                    "headers": {"content-type": "application/json"}},
                                    400, "invalid_json"),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_its_4xx(model_server, name):
    path, kwargs, status, code = CASES[name]
    with httpx.Client(base_url=model_server.url, timeout=60) as client:
        r = client.post(path, **kwargs)
        assert r.status_code == status, (name, r.status_code, r.text[:500])
        assert r.headers["content-type"].startswith("application/json")
        err = r.json()["error"]
        assert err["code"] == code, err
        assert err["status"] == status == ERROR_CODES[code][0]
        assert err["message"]
        # ... and the server keeps serving
        assert client.get("/healthz").status_code == 200
    assert model_server.alive()


def test_wrong_method_is_405(model_server):
    r = httpx.get(f"{model_server.url}/v1/predict", timeout=30)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_server_still_predicts_after_bad_input(model_server):
    # Send a burst of the nastiest inputs, then a good post with a real photo.
    with httpx.Client(base_url=model_server.url, timeout=60) as client:
        for name in ("decompression_bomb", "truncated_jpeg", "invalid_utf8_json", "body_too_large", "oversized_batch"):
            path, kwargs, status, _ = CASES[name]
            assert client.post(path, **kwargs).status_code == status
        jpg = _jpeg()
        r = client.post("/v1/predict", data={"text": "My cat Chelsea loves this sunny window",
                                             "image_text": "a tabby cat looking at the camera"},
                        files={"image": ("chelsea.jpg", jpg, "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["image"] == {"format": "JPEG", "width": 451, "height": 300, "bytes": len(jpg)}
    assert model_server.alive()
