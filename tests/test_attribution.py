"""Per-aspect attribution (lrsa.model.attribution) on real small checkpoints trained on real Twitter-2015 posts.

The read-out capture costs nothing when off and changes nothing when on; an input the model cannot see gets
exactly zero (and the model really does not see it: changing it changes no probability); the intervention
method reproduces the probabilities of predicting the post with that input removed (its text emptied and
encoded again by the side encoder); explaining leaves the predictions as they are.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
import torch
from serving_fixtures import checkpoint_dir, real_posts  # noqa: F401 - fixtures

from lrsa.model.fusion import Fusion

N_POSTS = 6


# --------------------------------------------------------------------------- the capture itself


def _side(B=2, dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda n: (torch.randn(B, n, dim, generator=g), torch.ones(B, n, dtype=torch.bool))  # noqa: E731
    side = {"visual": mk(5), "rat_text": mk(7), "rat_image": mk(6)}
    side["visual"][1][1, 3:] = False  # a shorter visual memory in the second row
    return side


@pytest.mark.parametrize("gate", ["content", "zero"])
@pytest.mark.parametrize("mode,image,rat_text", [("off", True, True), ("concat", True, True), ("single", True, True),
                                                  ("dual", True, True), ("dual", False, True),
                                                  ("single", True, False), ("dual", True, False)])
def test_capture_changes_no_output_and_records_every_block(mode, image, rat_text, gate):
    torch.manual_seed(0)
    f = Fusion(mode, image, 24, 4, 0.0, visual_out=True, gate=gate, rationale_text=rat_text).eval()
    if gate == "zero":  # open the gates, as training does
        for n, p in f.named_parameters():
            if "alpha" in n:
                p.data.normal_()
    t = torch.randn(2, 9, 24)
    tm = torch.ones(2, 9, dtype=torch.bool)
    off_t, off_v = f(t, tm, _side())
    assert f.capture is None
    f.capture = {}
    on_t, on_v = f(t, tm, _side())
    cap, f.capture = f.capture, None
    assert torch.equal(on_t, off_t)
    assert (off_v is None) == (on_v is None) and (off_v is None or torch.equal(on_v[0], off_v[0]))
    expect = {"off": ["visual"], "concat": ["visual", "concat"], "single": ["single"],
              "dual": (["inject_t"] if rat_text else []) + (["inject_v"] if image else []) + ["t_from_v", "v_from_t"]}
    assert sorted(k for k in cap if k not in ("text_norm", "segments")) == sorted(expect[mode])
    assert torch.allclose(cap["text_norm"], t.norm(dim=-1))
    for name in expect[mode]:
        if name == "concat":
            assert cap[name]["update"].shape == (2, 9) and float(cap[name]["lt"].min()) > 0
            continue
        w = cap[name]["attn"]
        assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-5)  # every query row has keys
        assert float(cap[name]["update"].min()) > 0
    if mode == "dual" and image:  # the padded visual slots of row 1 get no attention
        assert float(cap["t_from_v"]["attn"][1, :, 3:].abs().max()) == 0.0
    if mode == "single":
        assert [n for n, _ in cap["segments"]] == (["V"] if image else []) + (["L_t"] if rat_text else []) + ["L_i"]


# --------------------------------------------------------------------------- real checkpoints


def _train_tiny(out: Path, variant: str, data_dir: str) -> Path:
    """A real checkpoint of ``variant`` from the project's training loop: top 2 MiniLM layers, 2 epochs on 160
    real Twitter-2015 training posts (lexicon rationales, MDCA captions as the image's text)."""
    from lrsa.config import ModelConfig, RunConfig, TrainConfig, variant_overrides

    from lrsa.training.loop import train

    v = {k.split(".", 1)[1]: x for k, x in variant_overrides(variant).items()}
    run = RunConfig(name=f"attr-{variant}", model=ModelConfig(train_layers=2, **v),
                    train=TrainConfig(dataset="twitter2015", epochs=2, patience=2, train_limit=160, dev_limit=32,
                                      batch_size=16, head_lr=3e-3, eval_test=False, seed=0, threads=1))
    train(run, out, data_dir=data_dir, log=lambda _msg: None)
    return out / "best"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = os.environ.get("LRSA_DATA_DIR")
    if not data:
        pytest.fail("LRSA_DATA_DIR is not set: the attribution tests train tiny real checkpoints on twitter2015")
    made: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in made:
            t0 = time.perf_counter()
            made[variant] = _train_tiny(tmp_path_factory.mktemp(f"attr-{variant}") / "run", variant, data)
            print(f"\n[attribution] tiny {variant} checkpoint trained in {time.perf_counter() - t0:.1f} s")
        return made[variant]

    return get


class Model:
    """A checkpoint as the benchmark scripts read it (``load_checkpoint``; its frozen side encoder from the
    checkpoint's record), in the precision it was trained in."""

    def __init__(self, path: Path):
        from lrsa.config import RunConfig
        from lrsa.model.lrsa import load_checkpoint, load_side_encoder

        self.net, self.tokenizer, meta = load_checkpoint(path)
        self.run = RunConfig.model_validate(meta["run"])
        self.net.set_precision(self.run.train.precision)
        se = meta["side_encoder"]  # None: a model without side texts
        self.side_encoder = load_side_encoder(se, precision=self.run.train.precision)


class Posts:
    """Real Twitter-2015 test posts as the model reads them (``load_split``: committed rationales, captions),
    with their side texts, so that a side text can be emptied and encoded again."""

    def __init__(self, model: Model, n: int = N_POSTS):
        from lrsa.data.side import side_inputs
        from lrsa.training.data import load_rationales, load_split, side_texts

        self.model, run = model, model.run
        rats = load_rationales(run)
        self.split = load_split(run, "test", model.tokenizer, model.side_encoder, None, rats, n)
        side = side_inputs(run.train.dataset) if run.model.image_side == "captions" else None
        self.texts = side_texts(self.split.examples, run, side, rats, run.train.dataset)

    def batch(self, texts: dict[str, list[str]] | None = None):
        from lrsa.model.inputs import collate

        tables = self.split.side if texts is None else {k: self.model.side_encoder.encode(v) for k, v in texts.items()}
        return collate(self.split.items, self.model.tokenizer.pad_token_id or 0, tables)

    def side_texts(self):
        from lrsa.model.attribution import side_text

        if self.model.side_encoder is None:
            return {}
        tok, n = self.model.side_encoder.tokenizer, self.model.run.model.side_max_tokens
        return {k: [side_text(tok, t, n) for t in v] for k, v in self.texts.items()}


def _explained(model, posts: Posts):
    from lrsa.model.attribution import explain

    batch = posts.batch()
    decoded = model.net.decode(batch)
    assert sum(map(len, decoded)) >= 2, decoded  # the test exercises real aspects
    return batch, decoded, explain(model.net, batch, decoded, model.tokenizer, posts.side_texts())


def test_an_input_the_model_cannot_see_gets_exactly_zero(tiny):
    from lrsa.model.attribution import INPUTS, score
    from lrsa.model.inputs import collate

    # lrsa_li: dual fusion without L_t
    model = Model(tiny("lrsa_li"))
    posts = Posts(model)
    batch, decoded, attrs = _explained(model, posts)
    li_seen = []
    for row in attrs:
        for a in row:
            assert a["readout"]["L_t"] == 0.0 and a["intervention"]["L_t"]["change"] == 0.0
            assert a["shares"]["L_t"] == 0.0 and "L_t" not in a["tokens"]
            li_seen.append(a["readout"]["L_i"])
            assert abs(sum(a["readout"].values()) - 1.0) < 1e-6
    assert max(li_seen) > 0.0  # the image rationale, which it does read, is not zero
    # and the zero is true: handed an L_t anyway (the posts' real image rationales as text), the model moves
    # no probability
    spans = [[(s, e) for s, e, _, _ in row] for row in decoded]
    base, _ = score(model.net, batch, spans)
    assert "rat_text" not in posts.texts  # its side tables do not even hold L_t
    items = [dataclasses.replace(it, side_index={**it.side_index, "rat_text": it.side_index["rat_image"]})
             for it in posts.split.items]
    tables = {**posts.split.side, "rat_text": model.side_encoder.encode(posts.texts["rat_image"])}
    handed = collate(items, model.tokenizer.pad_token_id or 0, tables)
    assert bool(handed["side"]["rat_text"][1].any())
    other, _ = score(model.net, handed, spans)
    assert all(torch.equal(x, y) for rb, ro in zip(base, other) for x, y in zip(rb, ro))

    # text: no V, no rationales
    text_model = Model(tiny("text"))
    _, _, attrs = _explained(text_model, Posts(text_model))
    for row in attrs:
        for a in row:
            assert a["readout"] == {"text": 1.0, "V": 0.0, "L_t": 0.0, "L_i": 0.0}
            for name in INPUTS[1:]:
                assert a["intervention"][name] == {"prob": a["prob"], "change": 0.0, "polarity_flip": False,
                                                   "span_flip": False}
            assert a["tokens"] == {}
            assert a["intervention"]["text"]["change"] != 0.0  # the words it reads do matter


def test_intervention_reproduces_predicting_with_the_input_removed(checkpoint_dir):  # noqa: F811
    from lrsa.model.attribution import SIDE_KIND, score

    model = Model(checkpoint_dir)  # full LRSA: dual fusion, captions, lexicon rationales
    posts = Posts(model)
    batch, decoded, attrs = _explained(model, posts)
    spans = [[(s, e) for s, e, _, _ in row] for row in decoded]
    moved = 0
    for name, kind in SIDE_KIND.items():
        emptied = {**posts.texts, kind: [""] * len(posts.texts[kind])}
        probs, _ = score(model.net, posts.batch(emptied), spans)
        for b, row in enumerate(decoded):
            for a, (s, e, pol, _) in enumerate(row):
                k = ("POS", "NEU", "NEG").index(pol)
                got = attrs[b][a]["intervention"][name]
                assert got["prob"] == pytest.approx(float(probs[b][a][k]), abs=2e-5), (name, b, a)
                assert got["polarity_flip"] == (int(probs[b][a].argmax()) != k)
                moved += abs(got["change"]) > 1e-4
    assert moved > 0  # removals that change something were compared, not only no-ops


def test_explaining_changes_no_prediction(checkpoint_dir):  # noqa: F811
    model = Model(checkpoint_dir)
    posts = Posts(model)
    batch = posts.batch()
    before = model.net.decode(batch)
    _, decoded, attrs = _explained(model, posts)
    assert model.net.fusion.capture is None
    assert decoded == before == model.net.decode(posts.batch())
    assert [len(r) for r in attrs] == [len(r) for r in decoded]
    for row in attrs:
        for a in row:
            assert 0.0 <= a["prob"] <= 1.0 and abs(sum(a["shares"].values()) - 1.0) < 1e-6 or \
                sum(a["shares"].values()) == 0.0


# --------------------------------------------------------------------------- the public API


def test_predict_explain_reproduces_predicting_without_each_input(checkpoint_dir):  # noqa: F811
    """``LRSA.predict(..., explain=True)``: the same aspects as without it, each with an attribution whose
    removals are what predicting the post without that input gives (same rationale, one part emptied; no
    image description for V)."""
    from lrsa.api import LRSA
    from lrsa.data.schema import Rationale

    model = LRSA.from_pretrained(checkpoint_dir)
    posts = [p for p in real_posts(12) if p["image_text"]]
    checked = 0
    for post in posts:
        plain = model.predict(post["text"], image_text=post["image_text"])
        pred = model.predict(post["text"], image_text=post["image_text"], explain=True)
        assert [a.model_dump(exclude={"attribution"}) for a in pred.aspects] == \
            [a.model_dump(exclude={"attribution"}) for a in plain.aspects]
        assert all(a.attribution is None for a in plain.aspects) and "explain" not in plain.timings_ms
        if not pred.aspects or not (pred.rationale.text and pred.rationale.image):
            continue
        assert all(a.attribution is not None for a in pred.aspects)
        rat = pred.rationale
        fixed = {"L_t": (Rationale(text="", image=rat.image), post["image_text"]),
                 "L_i": (Rationale(text=rat.text, image=""), post["image_text"]),
                 "V": (rat, None)}
        for name, (r, itext) in fixed.items():
            model._posts.rationale = lambda *_a, r=r: r  # this post's rationale, one part removed
            try:
                without = model.predict(post["text"], image_text=itext, explain=True)
            finally:
                del model._posts.rationale
            polarity = {(b.start, b.end): b.polarity for b in pred.aspects}
            got = {(a.start, a.end): a.attribution.prob for a in without.aspects
                   if polarity.get((a.start, a.end)) == a.polarity}
            for a in pred.aspects:
                if (a.start, a.end) in got:  # the span is still found with the same polarity: compare
                    assert a.attribution.intervention[name].prob == pytest.approx(got[(a.start, a.end)], abs=2e-5)
                    assert a.attribution.intervention[name].span_flip is False
                    checked += 1
                else:
                    assert a.attribution.intervention[name].span_flip or a.attribution.intervention[name].polarity_flip
        for a in pred.aspects:
            for name in ("L_t", "L_i"):
                for t in a.attribution.tokens.get(name, []):
                    source = rat.text if name == "L_t" else rat.image
                    assert source[t.start:t.end] == t.token
    assert checked >= 3


def test_predict_command_explains_each_aspect(checkpoint_dir, tmp_path):  # noqa: F811
    import json

    from typer.testing import CliRunner

    from lrsa.cli import app

    post = real_posts(2)[1]  # "Crazy hair day ! Lydia is a contender . : )" and its image description
    args = ["predict", "--checkpoint", str(checkpoint_dir), "--text", post["text"], "--image-text",
            post["image_text"], "--rationale-backend", "lexicon"]
    runner = CliRunner()
    r = runner.invoke(app, [*args, "--explain", "--json"])
    assert r.exit_code == 0, r.output
    pred = json.loads(r.stdout)
    assert pred["aspects"]
    for a in pred["aspects"]:
        att = a["attribution"]
        assert set(att["shares"]) == set(att["readout"]) == set(att["intervention"]) == {"text", "V", "L_t", "L_i"}
        assert att["method"] == "intervention" and 0.0 < att["prob"] <= 1.0
    r = runner.invoke(app, [*args, "--explain"])
    assert r.exit_code == 0, r.output
    assert r.output.count("leaned on (") == len(pred["aspects"]) and "without text " in r.output
    plain = runner.invoke(app, [*args, "--json"])
    assert [a["attribution"] for a in json.loads(plain.stdout)["aspects"]] == [None] * len(pred["aspects"])
    # a JSONL file of posts: every aspect of --out carries the attribution the one-post command gives
    src, dest = tmp_path / "posts.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"id": "p1", "text": post["text"], "image_text": post["image_text"]}) + "\n")
    r = runner.invoke(app, ["predict", "--checkpoint", str(checkpoint_dir), "--input", str(src), "--out", str(dest),
                            "--rationale-backend", "lexicon", "--explain", "--json"])
    assert r.exit_code == 0, r.output
    (row,) = [json.loads(line) for line in dest.read_text().splitlines()]
    assert [(a["start"], a["end"], a["polarity"]) for a in row["aspects"]] == \
        [(a["start"], a["end"], a["polarity"]) for a in pred["aspects"]]
    for a, b in zip(row["aspects"], pred["aspects"]):
        assert a["attribution"]["shares"] == pytest.approx(b["attribution"]["shares"], abs=1e-4)
