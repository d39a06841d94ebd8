"""The service machinery with a deterministic stand-in model, over real HTTP on 127.0.0.1: micro-batching
merges concurrent requests, a failing post fails only its own request, a full queue answers 503, limits are
configurable. (The acceptance tests with the real checkpoint are in test_serving_api.py.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serving_fixtures import InThreadServer, StubPredictor, skimage_data

from lrsa.serving import BatchingConfig, Limits, ServingConfig, create_app


def _burst(url: str, texts: list[str], workers: int = 16) -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda t: client.post("/v1/predict", json={"text": t, "id": t}), texts))


def test_micro_batching_merges_concurrent_requests():
    stub = StubPredictor(delay_s=0.05)
    with InThreadServer(create_app(stub)) as server:
        texts = [f"Post number {i} About Cats" for i in range(32)]
        responses = _burst(server.url, texts)
        stats = httpx.get(f"{server.url}/v1/stats").json()
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["prediction"]["id"] for r in responses] == texts  # each answer to its own request
    assert sum(stub.calls) == 32 and max(stub.calls) > 1 and max(stub.calls) <= 16
    assert stats["posts"] == 32 and stats["batches"] == len(stub.calls) < 32


def test_without_batching_every_request_is_its_own_call():
    stub = StubPredictor(delay_s=0.01)
    config = ServingConfig(batching=BatchingConfig(enabled=False))
    with InThreadServer(create_app(stub, config)) as server:
        responses = _burst(server.url, [f"Post {i} Here" for i in range(12)])
    assert all(r.status_code == 200 for r in responses)
    assert stub.calls == [1] * 12
    assert {r.json()["server"]["batch_posts"] for r in responses} == {1}


def test_a_failing_post_fails_only_its_own_request():
    stub = StubPredictor(delay_s=0.05)
    with InThreadServer(create_app(stub)) as server:
        texts = [f"Fine post {i}" for i in range(10)] + ["boom"] + [f"Fine again {i}" for i in range(10)]
        responses = _burst(server.url, texts)
        by_text = dict(zip(texts, responses))
        assert by_text["boom"].status_code == 500
        assert by_text["boom"].json()["error"]["code"] == "internal_error"
        assert all(r.status_code == 200 for t, r in by_text.items() if t != "boom")
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.post(f"{server.url}/v1/predict", json={"text": "Still Serving"}).status_code == 200


def test_full_queue_answers_503_and_recovers():
    stub = StubPredictor(delay_s=0.3)
    config = ServingConfig(batching=BatchingConfig(max_batch=1, max_wait_ms=0, max_queue=2))
    with InThreadServer(create_app(stub, config)) as server:
        responses = _burst(server.url, [f"Post {i}" for i in range(10)], workers=10)
        codes = [r.status_code for r in responses]
        assert 503 in codes and 200 in codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.json()["error"]["code"] == "overloaded" and busy.headers["retry-after"] == "1"
        assert httpx.post(f"{server.url}/v1/predict", json={"text": "Later"}, timeout=30).status_code == 200


def test_limits_are_configurable_and_validated():
    with pytest.raises(ValueError, match="max_text_chars"):
        Limits(max_text_chars=0)
    with pytest.raises(ValueError, match="max_batch"):
        BatchingConfig(max_batch=0)
    config = ServingConfig(limits=Limits(max_text_chars=10, max_batch=2, max_image_pixels=100 * 100))
    with InThreadServer(create_app(StubPredictor(), config)) as server:
        r = httpx.post(f"{server.url}/v1/predict", json={"text": "x" * 11})
        assert (r.status_code, r.json()["error"]["code"]) == (413, "text_too_long")
        r = httpx.post(f"{server.url}/v1/predict/batch", json={"posts": [{"text": "a"}] * 3})
        assert (r.status_code, r.json()["error"]["code"]) == (413, "batch_too_large")
        r = httpx.post(f"{server.url}/v1/predict", data={"text": "A cat"},
                       files={"image": ("c.png", skimage_data("chelsea.png").read_bytes(), "image/png")})
        assert (r.status_code, r.json()["error"]["code"]) == (413, "image_too_many_pixels")
        assert httpx.get(f"{server.url}/v1/model").json()["serving"]["limits"]["max_text_chars"] == 10


def test_animated_gif_uses_its_first_frame():
    with InThreadServer(create_app(StubPredictor())) as server:
        gif = skimage_data("no_time_for_that_tiny.gif").read_bytes()
        r = httpx.post(f"{server.url}/v1/predict", data={"text": "No time"},
                       files={"image": ("a.gif", gif, "image/gif")})
    assert r.status_code == 200, r.text
    assert r.json()["image"]["format"] == "GIF"
