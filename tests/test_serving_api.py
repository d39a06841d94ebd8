"""The HTTP API of `lrsa serve` over real HTTP on 127.0.0.1, with a real (tiny) checkpoint trained on real
twitter2015 posts, real captions and a real photo from the scikit-image wheel."""

from __future__ import annotations

import base64
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serving_fixtures import checkpoint_dir, model_server, photo_jpeg, real_posts, skimage_data  # noqa: F401

from lrsa.serving import ERROR_CODES

pytestmark = pytest.mark.data
REPO = Path(__file__).resolve().parents[1]


def _strip_timings(pred: dict) -> dict:
    return {k: v for k, v in pred.items() if k != "timings_ms"}


def _check_prediction(pred: dict, post: dict) -> None:
    assert pred["text"] == post["text"]
    assert pred["id"] == post.get("id")
    assert pred["words"] and " ".join(pred["words"]).replace(" ", "") == post["text"].replace(" ", "")
    for a in pred["aspects"]:
        assert a["polarity"] in ("POS", "NEU", "NEG")
        assert 0.0 <= a["confidence"] <= 1.0
        assert 0 <= a["start"] < a["end"] <= len(pred["words"])
        assert a["text"] == pred["text"][a["char_start"]:a["char_end"]]
        assert a["text"].replace(" ", "") == "".join(pred["words"][a["start"]:a["end"]])
    assert {"rationales", "model"} <= set(pred["timings_ms"])


def test_health_and_model_card(model_server, checkpoint_dir):
    assert httpx.get(f"{model_server.url}/healthz").json()["status"] == "ok"
    info = httpx.get(f"{model_server.url}/v1/model").json()
    model = info["model"]
    assert model["backbone"] == "minilm"
    assert model["training_data"] == "twitter2015"
    assert model["image_side"] == "captions"
    assert model["rationale_backend"] == "lexicon"
    assert "dev" in model  # scores of the checkpoint (dev JMASA etc.)
    assert info["serving"]["limits"]["max_text_chars"] == 2000
    assert info["serving"]["batching"]["enabled"] is True
    assert str(checkpoint_dir) not in str(info)  # no server paths leak to clients? (only the name)


def test_predict_json_real_post(model_server):
    post = real_posts(1)[0]
    r = httpx.post(f"{model_server.url}/v1/predict", json=post, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    _check_prediction(body["prediction"], post)
    pred = body["prediction"]
    assert pred["used_rationales"] is True
    rat = pred["rationale"]
    assert rat["text"].strip() and rat["image"].strip()
    assert rat["provenance"]["backend"] == "lexicon"
    assert body["image"] is None
    assert body["server"]["batch_posts"] >= 1 and body["server"]["total_ms"] > 0


def test_predict_is_deterministic(model_server):
    post = real_posts(3)[2]
    a = httpx.post(f"{model_server.url}/v1/predict", json=post, timeout=60).json()["prediction"]
    b = httpx.post(f"{model_server.url}/v1/predict", json=post, timeout=60).json()["prediction"]
    assert _strip_timings(a) == _strip_timings(b)


def test_multipart_photo_equals_base64_json(model_server):
    post = real_posts(2)[1]
    jpg = photo_jpeg()
    r1 = httpx.post(f"{model_server.url}/v1/predict", data={k: post[k] for k in ("text", "image_text", "id")},
                    files={"image": ("chelsea.jpg", jpg, "image/jpeg")}, timeout=60)
    assert r1.status_code == 200, r1.text
    assert r1.json()["image"] == {"format": "JPEG", "width": 451, "height": 300, "bytes": len(jpg)}
    png = skimage_data("chelsea.png").read_bytes()
    r2 = httpx.post(f"{model_server.url}/v1/predict", timeout=60,
                    json={**post, "image": "data:image/png;base64," + base64.b64encode(png).decode()})
    assert r2.status_code == 200, r2.text
    assert r2.json()["image"]["format"] == "PNG"
    _check_prediction(r1.json()["prediction"], post)
    # This model reads the image through its description: same text + description -> same answer.
    assert _strip_timings(r1.json()["prediction"]) == _strip_timings(r2.json()["prediction"])


def test_photo_without_description_and_text_only_posts_answer_from_the_text(model_server):
    post = real_posts(1)[0]
    r = httpx.post(f"{model_server.url}/v1/predict", data={"text": post["text"]},
                   files={"image": ("c.jpg", photo_jpeg(), "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    unread = r.json()["prediction"]
    assert len(unread["notes"]) == 1 and "the photo was not read" in unread["notes"][0]
    r = httpx.post(f"{model_server.url}/v1/predict", json={"text": post["text"]}, timeout=60)
    assert r.status_code == 200, r.text
    alone = r.json()["prediction"]
    assert alone["notes"] == ["no image: predicted from the text alone (the visual memory is empty)"]
    assert alone["aspects"] == unread["aspects"]
    r = httpx.post(f"{model_server.url}/v1/predict", json=post, timeout=60)
    assert r.json()["prediction"]["notes"] == []  # with its image text: nothing to say


def test_without_rationales_says_so(model_server):
    post = real_posts(1)[0]
    r = httpx.post(f"{model_server.url}/v1/predict", json={**post, "use_rationales": False}, timeout=60)
    pred = r.json()["prediction"]
    assert pred["used_rationales"] is False and pred["rationale"] is None


def test_batch_matches_single_requests(model_server):
    posts = real_posts(6)
    posts[3] = {**posts[3], "image": base64.b64encode(photo_jpeg()).decode()}
    r = httpx.post(f"{model_server.url}/v1/predict/batch", json={"posts": posts}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 6 and body["server"]["batch_posts"] >= 6
    assert body["images"][3]["width"] == 451 and body["images"][0] is None
    for post, pred in zip(posts, body["predictions"]):
        _check_prediction(pred, post)
        single = httpx.post(f"{model_server.url}/v1/predict", json=post, timeout=60).json()["prediction"]
        # Batching pads; spans and polarities must not change, confidences only by float noise.
        assert [(a["start"], a["end"], a["polarity"]) for a in single["aspects"]] == \
               [(a["start"], a["end"], a["polarity"]) for a in pred["aspects"]]
        for x, y in zip(single["aspects"], pred["aspects"]):
            assert x["confidence"] == pytest.approx(y["confidence"], abs=1e-4)
        assert single["rationale"] == pred["rationale"]


def test_concurrent_requests_are_micro_batched(model_server):
    posts = real_posts(24)
    before = httpx.get(f"{model_server.url}/v1/stats").json()
    with httpx.Client(base_url=model_server.url, timeout=120) as client, ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda p: client.post("/v1/predict", json=p), posts))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    for post, r in zip(posts, responses):
        assert r.json()["prediction"]["id"] == post["id"]  # every answer went back to its own request
    after = httpx.get(f"{model_server.url}/v1/stats").json()
    assert after["posts"] - before["posts"] == 24
    batches = after["batches"] - before["batches"]
    assert batches < 24, f"24 concurrent posts ran as {batches} model calls: nothing was merged"
    assert max(r.json()["server"]["batch_posts"] for r in responses) > 1


def test_openapi_and_offline_docs(model_server):
    spec = httpx.get(f"{model_server.url}/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/healthz", "/v1/model"} <= set(spec["paths"])
    content = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert {"413", "415", "422", "400"} <= set(spec["paths"]["/v1/predict"]["post"]["responses"])
    docs = httpx.get(f"{model_server.url}/docs").text
    assert "swagger-ui-bundle.js" in docs and "cdn." not in docs
    assert httpx.get(f"{model_server.url}/static-offline-docs/swagger-ui-bundle.js").status_code == 200


def test_page_and_assets_are_local(model_server):
    r = httpx.get(f"{model_server.url}/")
    assert r.status_code == 200 and "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/", "/static/app.js", "/static/app.css"):
        text = httpx.get(f"{model_server.url}{asset}").text
        assert not re.search(r"https?://", text), f"{asset} references an outside URL"


def test_error_table_is_documented():
    doc = (REPO / "docs" / "serving.md").read_text()
    for code, (status, _meaning) in ERROR_CODES.items():
        assert re.search(rf"\|\s*`{code}`\s*\|\s*{status}\s*\|", doc), f"{code} ({status}) missing from docs/serving.md"
