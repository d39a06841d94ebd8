"""The MASC host (``host: aspect``) on real Twitter-2015 data with the real MiniLM weights and MiniGPT-4 reasons.

It trains and is selected on dev MASC accuracy; its predictions cover every gold aspect; save -> load gives
identical predictions; ``LRSA.predict(text, aspects=[...])`` and the HTTP API return one sentiment per given
aspect, with the aspect's own rationale when one is given.
"""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from lrsa.config import RunConfig, apply_overrides, variant_overrides

pytestmark = pytest.mark.data

TINY = {"train.train_limit": 40, "train.dev_limit": 16, "train.test_limit": 16, "train.epochs": 1,
        "train.threads": 1, "model.train_layers": 2, "model.host": "aspect"}


@pytest.fixture(scope="module")
def masc_run(tmp_path_factory, data_dir):
    from lrsa.rationales.bundle import bundle_path
    from lrsa.rationales.published import import_published
    from lrsa.training import loop

    if not bundle_path("twitter2015", "arkmsa-aspect").is_file():  # derived from the data, never committed
        import_published("twitter2015", "arkmsa-aspect", data_dir)
    out = tmp_path_factory.mktemp("masc")
    run = RunConfig.model_validate(apply_overrides({"name": "masc"}, {
        **variant_overrides("lrsa"), **TINY, "train.rationale_source": "arkmsa-aspect"}))
    result = loop.train(run, out / "run", cache_dir=out / "cache", log=lambda m: None)
    return out, result


def test_masc_run_is_selected_on_dev_accuracy_and_covers_every_gold_aspect(masc_run, data_dir):
    from lrsa.data import load_dataset

    out, result = masc_run
    assert result["history"][0]["dev_selection"] == result["history"][0]["dev_masc_acc"]
    assert result["test"]["masc"] is not None and 0 <= result["test"]["masc"]["acc"] <= 100
    assert result["commit"] and result["seed"] == 0
    gold = {ex.id: ex for ex in load_dataset("twitter2015", "test", data_dir)[:16]}
    for line in (out / "run" / "predictions_test.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert sorted((a["start"], a["end"]) for a in rec["aspects"]) == \
            sorted(a.span for a in gold[rec["id"]].aspects)


def test_masc_save_load_and_given_aspects(masc_run, tmp_path):
    from lrsa.api import LRSA

    out, _ = masc_run
    model = LRSA.from_pretrained(out / "run", cache_dir=out / "cache")
    assert model.info()["host"] == "aspect"
    model.save_pretrained(tmp_path / "copy")
    copy = LRSA.from_pretrained(tmp_path / "copy")
    for a, b in zip(model.net.state_dict().values(), copy.net.state_dict().values()):
        assert torch.equal(a, b)
    text, cap = "Chuck Bass is everything #MCM but Blair Waldorf is awful", "a man in a blue suit"
    p1 = model.predict(text, image_text=cap, aspects=["Chuck Bass", "blair waldorf"])
    p2 = copy.predict(text, image_text=cap, aspects=[{"start": 0, "end": 2}, {"start": 6, "end": 8}])
    assert [(a.text, a.start, a.end) for a in p1.aspects] == [("Chuck Bass", 0, 2), ("Blair Waldorf", 6, 8)]
    assert [(a.polarity, round(a.confidence, 5)) for a in p1.aspects] == \
        [(a.polarity, round(a.confidence, 5)) for a in p2.aspects]
    # an aspect's own rationale (e.g. an LLM's reason toward it) is used for that aspect only
    own = model.predict(text, image_text=cap, aspects=["Chuck Bass", "Blair Waldorf"],
                        aspect_rationales=[{"text": "Sentiment: Positive. Fans adore him.", "image": "a man"}, None])
    assert own.aspects[0].rationale.text.startswith("Sentiment: Positive") and own.aspects[1].rationale is None
    with pytest.raises(ValueError, match="give aspects"):
        model.predict(text, image_text=cap)
    with pytest.raises(ValueError, match="does not occur"):
        model.predict(text, image_text=cap, aspects=["Serena"])
    # evaluating the checkpoint reproduces the predictions the run wrote
    ev = copy.evaluate_split("twitter2015", "test", limit=16)
    lines = [json.loads(x) for x in (out / "run" / "predictions_test.jsonl").read_text().splitlines()]
    assert {r["id"]: [(a["start"], a["end"], a["polarity"]) for a in r["aspects"]] for r in lines} == \
           {k: [(s, e, p) for s, e, p, _ in v] for k, v in ev["predictions"].items()}


def test_http_api_returns_one_sentiment_per_given_aspect(masc_run):
    from lrsa.serving.app import create_app
    from lrsa.serving.model import ModelPredictor
    from tests.serving_fixtures import InThreadServer

    out, _ = masc_run
    with InThreadServer(create_app(ModelPredictor.from_checkpoint(out / "run" / "best"))) as server:
        post = {"text": "Chuck Bass is everything #MCM but Blair is awful", "image_text": "a man in a suit",
                "aspects": ["Chuck Bass", "Blair"]}
        r = httpx.post(f"{server.url}/v1/predict", json=post, timeout=60)
        assert r.status_code == 200, r.text
        got = r.json()["prediction"]
        assert [(a["text"], a["polarity"] in ("POS", "NEU", "NEG")) for a in got["aspects"]] == \
            [("Chuck Bass", True), ("Blair", True)]
        form = httpx.post(f"{server.url}/v1/predict", timeout=60, files={  # multipart: one aspect per line
            "text": (None, post["text"]), "image_text": (None, post["image_text"]), "aspects": (None, "Chuck Bass\nBlair")})
        assert form.status_code == 200, form.text
        assert [a["text"] for a in form.json()["prediction"]["aspects"]] == ["Chuck Bass", "Blair"]
        batch = httpx.post(f"{server.url}/v1/predict/batch", json={"posts": [post, {**post, "aspects": ["Blair"]}]},
                           timeout=60)
        assert batch.status_code == 200, batch.text
        assert [len(p["aspects"]) for p in batch.json()["predictions"]] == [2, 1]
        # a MASC model without aspects, or with an aspect absent from the text: a clear 4xx naming the field
        bad = httpx.post(f"{server.url}/v1/predict", json={k: v for k, v in post.items() if k != "aspects"})
        assert bad.status_code in (400, 422) and "aspects" in bad.text
        bad = httpx.post(f"{server.url}/v1/predict", json={**post, "aspects": ["Serena"]})
        assert bad.status_code in (400, 422) and "does not occur" in bad.text


def test_a_given_aspect_of_a_long_post_is_read_in_a_window_around_it(masc_run):
    """A post over the model's max_tokens: each given aspect is classified from the widest window around it
    that fits (the same answer as the window alone), not refused."""
    from lrsa.api import LRSA, tokenize
    from lrsa.data import load_dataset
    from lrsa.model.inputs import aspect_window

    out, _ = masc_run
    model = LRSA.from_pretrained(out / "run", cache_dir=out / "cache")
    text = " ".join(ex.text for ex in load_dataset("twitter2015", "test")[:25])
    words = tokenize(text)[0]
    last = {"start": len(words) - 3, "end": len(words) - 1}
    ws, we = aspect_window(model.tokenizer, words, (last["start"], last["end"]), model.run.model.aspect_input,
                           model.run.model.max_tokens)
    assert ws > 0 and we == len(words)  # the case: the post does not fit, the window ends at the post's end
    # without rationales: the post's own rationale is written from its whole text, the window's from less
    got = model.predict(text, image_text="a photo", aspects=[{"start": 0, "end": 2}, last], use_rationales=False)
    window = model.predict(" ".join(words[ws:we]), image_text="a photo", use_rationales=False,
                           aspects=[{"start": last["start"] - ws, "end": last["end"] - ws}])
    assert [(a.start, a.end) for a in got.aspects] == [(0, 2), (last["start"], last["end"])]
    assert (got.aspects[1].polarity, round(got.aspects[1].confidence, 4)) == \
        (window.aspects[0].polarity, round(window.aspects[0].confidence, 4))
