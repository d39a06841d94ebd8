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


def _long_post() -> str:
    """About 200 real words (real twitter2015 test posts joined): under the 2,000-character limit, far over
    the model's 256 subword tokens."""
    from lrsa.data import load_dataset

    text = ""
    for ex in load_dataset("twitter2015", "test"):
        if len(text) + len(ex.text) + 1 > LIMITS.max_text_chars:
            break
        text = f"{text} {ex.text}".strip()
    return text


def test_a_long_post_is_read_in_windows_and_does_not_fail_its_neighbours(model_server, checkpoint_dir):
    """Defect: a post over 256 subword tokens was a 500 that took its whole batch down."""
    from lrsa.api import tokenize
    from lrsa.model.inputs import word_windows
    from lrsa.serving.model import ModelPredictor

    long = _long_post()
    tok = ModelPredictor.from_checkpoint(checkpoint_dir).model.tokenizer
    words = tokenize(long)[0]
    windows = word_windows(tok, words, 256)
    assert len(long) <= LIMITS.max_text_chars and len(windows) >= 2  # the case of the defect
    short = [{"text": "Chuck Bass is everything #MCM", "image_text": "a man in a suit"},
             {"text": "Crazy hair day ! Lydia is a contender", "image_text": "a girl with pink hair"}]
    with httpx.Client(base_url=model_server.url, timeout=120) as client:
        alone = [client.post("/v1/predict", json=p).json()["prediction"] for p in short]
        r = client.post("/v1/predict/batch", json={"posts": [short[0], {"text": long, "image_text": "a crowd"},
                                                             short[1]]})
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        def key(p):  # batching pads the posts: confidences agree to float tolerance
            return [(a["start"], a["end"], a["polarity"], round(a["confidence"], 4)) for a in p["aspects"]]

        assert [key(p) for p in (got[0], got[2])] == [key(p) for p in alone]  # neighbours intact
        aspects = got[1]["aspects"]
        assert got[1]["words"] == words
        assert aspects, "the long post's windows found no aspect at all"
        for a in aspects:  # every span is a real span of the long post, found once, in order
            assert long[a["char_start"]:a["char_end"]] == a["text"] == " ".join(words[a["start"]:a["end"]])
        starts = [a["start"] for a in aspects]
        assert starts == sorted(set(starts))
        assert any(a["start"] >= windows[0][1] for a in aspects)  # found beyond the first window too
        single = client.post("/v1/predict", json={"text": long, "image_text": "a crowd"})
        assert single.status_code == 200 and key(single.json()["prediction"]) == key(got[1])
    assert model_server.alive()


def test_word_windows_cover_a_long_post_and_each_word_has_one_owner(checkpoint_dir):
    from lrsa.api import tokenize
    from lrsa.features.text import encode_words
    from lrsa.model.inputs import owner, word_windows
    from lrsa.serving.model import ModelPredictor

    tok = ModelPredictor.from_checkpoint(checkpoint_dir).model.tokenizer
    words = tokenize(_long_post())[0]
    for max_tokens in (64, 256):
        windows = word_windows(tok, words, max_tokens)
        assert windows[0][0] == 0 and windows[-1][1] == len(words)
        for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
            assert s0 < s1 < e0 <= e1  # overlapping, advancing
        for s, e in windows:
            assert len(encode_words(tok, words[s:e], max_tokens)[0]) <= max_tokens
        owners = [owner(windows, i) for i in range(len(words))]
        assert owners == sorted(owners) and set(owners) == set(range(len(windows)))
    assert word_windows(tok, words[:10], 256) == [(0, 10)]
