"""Each checkpoint knows who wrote its rationales (L_t and L_i separately) and predicts with the same writers:
where a writer cannot run here (a published bundle such as MiniGPT-4's), that part is left empty and masked, the
prediction says so, and no other writer fills it unless the user names one. On the real tiny checkpoint the
serving tests train (lexicon rationales, MDCA captions), and on copies of it whose record says they were trained
on the published ``arkmsa`` bundle, as the main job's ``lrsa`` model is (records written before writers were
stored name only the bundle and its provenance: the writers are derived from them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from serving_fixtures import checkpoint_dir, model_server, real_posts  # noqa: F401

ARKMSA_NOTE = ("L_i: written by MiniGPT-4 (published arkmsa bundle) at training time; no such writer here, "
               "left empty")


def _as_arkmsa(src: Path, dest: Path, keep_writers: bool) -> Path:
    """A copy of ``src`` whose training record says: rationale source arkmsa (L_t lexicon, L_i MiniGPT-4)."""
    from lrsa.rationales.bundle import read_manifest
    from lrsa.rationales.writers import training_writers

    shutil.copytree(src, dest)
    meta = json.loads((dest / "config.json").read_text())
    prov = dict(read_manifest("twitter2015")["sources"]["arkmsa"]["provenance"])
    prov.update({"text_source": "lexicon", "image_source": "arkmsa:train:0"})  # a record's own fields
    meta["run"]["train"]["rationale_source"] = "arkmsa"
    meta["training"]["rationale_source"] = "arkmsa"
    meta["training"]["rationale_provenance"] = prov
    meta["training"].pop("rationale_writers", None)  # as a checkpoint written before writers were recorded
    if keep_writers:
        meta["training"]["rationale_writers"] = training_writers("arkmsa", prov, "twitter2015")
    (dest / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return dest


def _side_texts(model) -> list[dict]:
    """Record the side texts every batch hands to the side encoder (what the model reads)."""
    seen: list[dict] = []
    real = model._posts.side_tables

    def spy(texts):
        seen.append({k: list(v) for k, v in texts.items()})
        return real(texts)

    model._posts.side_tables = spy
    return seen


def test_the_trained_writers_are_recorded_and_used_by_default(checkpoint_dir):
    from lrsa.api import LRSA

    torch.set_num_threads(1)
    meta = json.loads((checkpoint_dir / "config.json").read_text())
    writers = meta["training"]["rationale_writers"]
    assert writers["text"]["backend"] == writers["image"]["backend"] == "lexicon"
    assert writers["image"]["prompt_version"] == "lexicon_v2" and writers["text"]["model"].startswith("vaderSentiment")
    model = LRSA.from_pretrained(checkpoint_dir)
    post = real_posts(1)[0]
    seen = _side_texts(model)
    pred = model.predict(post["text"], image_text=post["image_text"])
    parts = pred.rationale_writers
    assert set(parts) == {"text", "image"}
    for part in parts.values():
        assert part.writer == part.trained_writer and part.writer.startswith("lexicon v2")
        assert not part.substitute and part.note is None
    assert pred.rationale.provenance["backend"] == "lexicon" and pred.rationale.image
    assert seen[0]["rat_image"] == [pred.rationale.image] and pred.notes == []
    info = model.info()["rationale_writers"]
    assert info["image"]["trained_writer"].startswith("lexicon v2") and info["image"]["writer"] == \
        info["image"]["trained_writer"]


@pytest.mark.parametrize("keep_writers", [False, True], ids=["old-record", "recorded"])
def test_an_unavailable_writer_leaves_its_part_empty_and_says_so(checkpoint_dir, tmp_path, keep_writers):
    from lrsa.api import LRSA

    torch.set_num_threads(1)
    ckpt = _as_arkmsa(checkpoint_dir, tmp_path / "arkmsa", keep_writers)
    model = LRSA.from_pretrained(ckpt)
    assert model.meta["training"]["rationale_writers"]["image"] == {
        "kind": "published", "source": "arkmsa", "model": "MiniGPT-4",
        "name": "MiniGPT-4 (published arkmsa bundle)"}
    post = real_posts(1)[0]
    seen = _side_texts(model)
    pred = model.predict(post["text"], image_text=post["image_text"])
    image, text = pred.rationale_writers["image"], pred.rationale_writers["text"]
    assert image.writer is None and image.trained_writer == "MiniGPT-4 (published arkmsa bundle)"
    assert image.note == ARKMSA_NOTE and ARKMSA_NOTE in pred.notes and not image.substitute
    assert pred.rationale.image == "" and seen[0]["rat_image"] == [""]  # empty, hence masked: never the lexicon's
    assert pred.rationale.provenance["missing"] == ["image"]
    assert text.writer == text.trained_writer and text.writer.startswith("lexicon v2") and pred.rationale.text
    assert seen[0]["visual"] == [post["image_text"]]  # the image text itself is still read (V)

    # a substitute only when named, and then said to be one
    sub = LRSA.from_pretrained(ckpt, rationale_backend="lexicon").predict(post["text"], image_text=post["image_text"])
    image = sub.rationale_writers["image"]
    assert image.substitute and image.writer.startswith("lexicon v2") and sub.rationale.image
    assert image.note == (f"L_i: written by {image.writer}, named by the user in place of MiniGPT-4 (published "
                          "arkmsa bundle), the writer this model was trained with") and image.note in sub.notes
    assert not sub.rationale_writers["text"].substitute  # the trained L_t writer was lexicon too


def test_predict_json_and_the_http_api_name_each_writer(checkpoint_dir, model_server, tmp_path):
    import httpx
    from typer.testing import CliRunner

    from lrsa.cli import app

    ckpt = _as_arkmsa(checkpoint_dir, tmp_path / "arkmsa", keep_writers=False)
    post = real_posts(1)[0]
    runner = CliRunner()
    r = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--text", post["text"], "--image-text",
                            post["image_text"], "--json"])
    assert r.exit_code == 0, r.output
    pred = json.loads(r.stdout)
    assert pred["rationale_writers"]["image"] == {"writer": None, "trained_writer": "MiniGPT-4 (published arkmsa "
                                                  "bundle)", "substitute": False, "note": ARKMSA_NOTE}
    assert pred["rationale"]["image"] == "" and ARKMSA_NOTE in pred["notes"]
    r = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--text", post["text"], "--image-text",
                            post["image_text"]])
    assert r.exit_code == 0 and "image rationale (L_i) [no writer here]: (empty)" in r.output and f"note: {ARKMSA_NOTE}" in r.output
    r = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--text", post["text"], "--image-text",
                            post["image_text"], "--rationales", "lexicon", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["rationale_writers"]["image"]["substitute"] is True
    # the service on the lexicon checkpoint: each part's writer in the JSON answer and in the model card
    got = httpx.post(f"{model_server.url}/v1/predict", json=post, timeout=60).json()["prediction"]
    assert got["rationale_writers"]["image"]["writer"].startswith("lexicon v2")
    assert got["rationale_writers"]["text"]["note"] is None
    card = httpx.get(f"{model_server.url}/v1/model", timeout=30).json()["model"]
    assert card["rationale_writers"]["image"]["trained_writer"].startswith("lexicon v2")
    page = httpx.get(f"{model_server.url}/static/app.js", timeout=30).text
    assert "rationale_writers" in page  # the page shows who wrote each part, and why one is empty


def test_rationale_dropout_masks_each_part_independently():
    from lrsa.config import TrainConfig
    from lrsa.model.inputs import drop_rationales

    assert TrainConfig().rationale_dropout == 0.0 and TrainConfig(rationale_dropout=0.3).rationale_dropout == 0.3
    with pytest.raises(ValueError):
        TrainConfig(rationale_dropout=1.5)
    assert TrainConfig().rationale_dropout_parts == ["text", "image"]
    with pytest.raises(ValueError):  # a part that does not exist, or none at all
        TrainConfig(rationale_dropout_parts=["caption"])
    with pytest.raises(ValueError):
        TrainConfig(rationale_dropout_parts=[])
    ones = torch.ones(3, 4, dtype=torch.bool)
    batch = {"side": {"visual": (torch.zeros(3, 4, 2), ones.clone()), "rat_text": (torch.zeros(3, 4, 2), ones.clone()),
                      "rat_image": (torch.zeros(3, 4, 2), ones.clone())}}
    drop_rationales(batch, torch.tensor([[True, False], [False, True], [False, False]]))
    assert batch["side"]["rat_text"][1].any(1).tolist() == [False, True, True]
    assert batch["side"]["rat_image"][1].any(1).tolist() == [True, False, True]
    assert batch["side"]["visual"][1].all()  # the image itself stays (modality dropout is the other switch)
    only_li = {"side": {"rat_image": (torch.zeros(2, 4, 2), torch.ones(2, 4, dtype=torch.bool))}}  # lrsa_li
    drop_rationales(only_li, torch.tensor([[True, False], [True, True]]))
    assert only_li["side"]["rat_image"][1].any(1).tolist() == [True, False]
