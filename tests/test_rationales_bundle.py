"""Committed rationale bundles, the loader, and the no-leak guarantee of prompts and lexicon rationales."""

from __future__ import annotations

import re

import pytest

from lrsa.data.registry import DATASETS, get, load_dataset
from lrsa.data.schema import Aspect
from lrsa.data.side import side_inputs
from lrsa.rationales import available_sources, load_bundle, write_bundle
from lrsa.rationales.bundle import bundle_path, default_root
from lrsa.rationales.inputs import RationaleInput, dataset_inputs, from_example
from lrsa.rationales.lexicon import describe_image, explain_text
from lrsa.rationales.prompts import TASKS, _settings, build_messages, cap_words, load_template, versions

BENCHMARKS = ("twitter2015", "twitter2017", "political_twitter")
LABEL_WORDS = re.compile(r"\b(POS|NEU|NEG|positive|negative|neutral|polarity|aspects?|label\w*|sentiment)\b",
                         re.I)


def test_default_root_is_the_checkout():
    root = default_root()
    assert root.parts[-2:] == ("artifacts", "rationales")
    assert (root.parent.parent / "pyproject.toml").is_file()


@pytest.mark.data
@pytest.mark.parametrize("dataset", BENCHMARKS)
def test_lexicon_bundle_covers_every_sentence(dataset):
    rats = load_bundle(dataset)  # default source: lexicon
    assert "lexicon" in available_sources(dataset)
    ids = [ex.id for s in get(dataset).splits for ex in load_dataset(dataset, s)]
    assert sorted(rats) == sorted(ids)
    for rid in ids:
        r = rats[rid]
        assert r.text.startswith("Overall the tweet sounds"), (rid, r.text)
        assert len(r.image) > 20, (rid, r.image)
        assert r.provenance["backend"] == "lexicon" and r.provenance["prompt_hash"]
    sources = {r.provenance.get("image_source") for r in rats.values()}
    assert sources == ({"gpt4_descriptions"} if dataset == "twitter2017" else {"mdca_captions"})


@pytest.mark.data
@pytest.mark.parametrize("dataset", BENCHMARKS)
def test_committed_bundle_is_reproducible(dataset, tmp_path):
    """Regenerating the lexicon bundle gives byte-identical files: the committed one matches the code."""
    from lrsa.rationales import generate, make_backend

    res = generate(dataset_inputs(dataset), make_backend("lexicon"))
    path = write_bundle(dataset, "lexicon", res.records(), make_backend("lexicon").provenance(), root=tmp_path)
    assert path.read_bytes() == bundle_path(dataset, "lexicon").read_bytes()


def test_missing_bundle_names_path_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_bundle("twitter2015", "gemini", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "twitter2015" / "gemini.jsonl.gz") in msg
    assert "lrsa rationales generate --dataset twitter2015" in msg and "--source gemini" in msg
    assert "lrsa rationales import" in msg
    with pytest.raises(FileNotFoundError, match="--backend lexicon --bundle"):
        load_bundle("twitter2015", "lexicon", root=tmp_path)


def test_tampered_bundle_is_refused(tmp_path):
    from lrsa.data.schema import DataError

    write_bundle("twitter2015", "x", [{"id": "test-0", "text": "a", "image": "b"}], {"backend": "t"},
                 root=tmp_path)
    assert load_bundle("twitter2015", "x", tmp_path)["test-0"].image == "b"
    p = bundle_path("twitter2015", "x", tmp_path)
    import gzip

    p.write_bytes(gzip.compress(b'{"id": "test-0", "text": "changed"}\n'))
    with pytest.raises(DataError, match="sha256"):
        load_bundle("twitter2015", "x", tmp_path)


def _scrambled(ex):
    """The same post with different gold aspects: anything derived from the post must not change."""
    n = len(ex.words)
    return ex.model_copy(update={"aspects": [Aspect(start=0, end=n, polarity="NEG")] if n else [],
                                 "metadata": {"label": "POS"}})


@pytest.mark.data
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_prompts_and_lexicon_never_see_gold(dataset):
    """No prompt for any split of any named dataset marks or lists gold aspects or contains a label,
    and prompts / lexicon rationales do not change when the gold annotations change."""
    ds = get(dataset)
    side = side_inputs(dataset) if ds.side else {}
    # every distinct template of every prompt version (image tasks have only v1)
    templates = list({t.name: t for t in (load_template(task, v) for v in versions() for task in TASKS)}.values())
    assert {t.name for t in templates} >= {"text_v1", "text_v2", "text_v3", "image_v1", "image_from_texts_v1"}
    for split in ds.splits:
        for ex in load_dataset(dataset, split):
            inp, inp2 = from_example(ex, side), from_example(_scrambled(ex), side)
            assert inp == inp2
            for tpl in templates:
                msgs = build_messages(tpl.task, inp, tpl.version)
                assert msgs == build_messages(tpl.task, inp2, tpl.version)
                # the system message is the template's constant text; v2+ name the three sentiment classes there
                assert msgs[0]["content"] == tpl.system
                if tpl.version == "v1":
                    assert not LABEL_WORDS.search(tpl.system), tpl.name
                user = msgs[1]["content"]
                assert user.count(f'"{inp.text}"') == 1  # the tweet verbatim, unmarked
                summary = cap_words("; ".join(inp.image_texts[:3]), tpl.image_words)
                rest = user.replace(inp.text, " ").replace("\n".join(f"- {t}" for t in inp.image_texts), " ")
                rest = rest.replace(summary, " ")
                assert not LABEL_WORDS.search(rest), (dataset, ex.id, tpl.name)
            if dataset in BENCHMARKS and split == "test":
                assert explain_text(inp) == explain_text(inp2)
                assert describe_image(inp) == describe_image(inp2)


def test_templates_are_versioned_files_with_hashes():
    for task in TASKS:
        t = load_template(task)
        assert re.fullmatch(r"[0-9a-f]{12}", t.hash) and "$text" in t.user
    with pytest.raises(FileNotFoundError, match="text_v999"):
        load_template("text", "v999")


def test_v3_caps_the_image_context_and_its_hash_covers_the_cap():
    v2, v3 = load_template("text", "v2"), load_template("text", "v3")
    assert (v2.system, v2.user) == (v3.system, v3.user) and v2.hash != v3.hash
    assert v2.image_words is None and v3.image_words == 40
    long_desc = " ".join(f"w{i}" for i in range(30)) + " end. " + " ".join(f"x{i}" for i in range(40))
    inp = RationaleInput(id="p", text="Looking forward to the Fotheringhay Festival !", image_texts=(long_desc,))
    image_line = build_messages("text", inp, "v3")[1]["content"].split("Image: ", 1)[1]
    assert image_line == " ".join(f"w{i}" for i in range(30)) + " end."  # cut at the sentence end (word 31)
    assert build_messages("text", inp, "v2")[1]["content"].endswith("x39")  # v2: uncapped


def test_cap_words_cuts_at_a_late_sentence_end_or_the_cap():
    words = [f"w{i}" for i in range(60)]
    assert cap_words(" ".join(words), 40) == " ".join(words[:40]) + " …"  # no sentence end: hard cut
    early = " ".join(["a."] + words)  # the only sentence end is in the cap's first half
    assert cap_words(early, 40) == " ".join(["a."] + words[:39]) + " …"
    assert cap_words("short text. fits", 40) == "short text. fits" and cap_words("x " * 50, None) == "x " * 50
    with pytest.raises(ValueError, match="bad settings line"):
        _settings("text_v9.txt", ["max_words: 10"])
    with pytest.raises(ValueError, match="image_words must be int"):
        _settings("text_v9.txt", ["image_words: forty"])


def _run_cli(*args: str, catch: bool = False):
    from typer.testing import CliRunner

    from lrsa.cli import app

    return CliRunner().invoke(app, ["rationales", *args], catch_exceptions=catch)


@pytest.mark.data
def test_cli_show_export_import_roundtrip(tmp_path):
    out = _run_cli("show", "--dataset", "twitter2017", "test-3")
    assert out.exit_code == 0 and "L_t (lexicon):   Overall the tweet" in out.output and "tweet: " in out.output
    jsonl = tmp_path / "t17.jsonl"
    assert _run_cli("export", "--dataset", "twitter2017", "--out", str(jsonl)).exit_code == 0
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 2910 and '"provenance"' in lines[0]
    res = _run_cli("import", str(jsonl), "--dataset", "twitter2017", "--source", "mine", "--model", "x",
                   "--bundle-root", str(tmp_path))
    assert res.exit_code == 0, res.output
    mine, orig = load_bundle("twitter2017", "mine", tmp_path), load_bundle("twitter2017")
    assert {k: (r.text, r.image) for k, r in mine.items()} == {k: (r.text, r.image) for k, r in orig.items()}
    assert mine["dev-0"].provenance["imported_from"] == "t17.jsonl"
    jsonl.write_text("\n".join(lines[:5]) + "\n")
    bad = _run_cli("import", str(jsonl), "--dataset", "twitter2017", "--source", "m2", "--bundle-root", str(tmp_path))
    assert bad.exit_code == 2 and "have no record" in bad.output
    assert not (tmp_path / "twitter2017" / "m2.jsonl.gz").exists()


@pytest.mark.data
def test_cli_generate_import_backend_writes_report_and_bundle(tmp_path):
    rep = tmp_path / "r.json"
    res = _run_cli("generate", "--dataset", "twitter2015", "--split", "dev", "--backend", "import", "--limit", "7",
                   "--report", str(rep), "--bundle", "--bundle-root", str(tmp_path), "--no-progress")
    assert res.exit_code == 0, res.output
    import json

    r = json.loads(rep.read_text())
    assert r["requested"] == 7 and r["generated"] == 7 and r["skipped"] == 7  # L_i from captions; no L_t
    b = load_bundle("twitter2015", "import", tmp_path)
    assert sorted(b) == [f"dev-{i}" for i in range(7)]
    assert all(x.text == "" and x.image.count(".") >= 3 for x in b.values())


@pytest.mark.data
def test_cli_generate_checks_the_image_from_bundle_before_generating(tmp_path):
    """--image-from names a bundle that is not there: the command stops at once, naming it and how to make it,
    before any rationale is generated (a 9-minute local-LLM run once failed only at the end)."""
    cache = tmp_path / "c.sqlite"
    res = _run_cli("generate", "--dataset", "twitter2017", "--split", "dev", "--backend", "lexicon", "--kinds", "text",
                   "--image-from", "arkmsa", "--bundle", "--bundle-root", str(tmp_path), "--cache", str(cache),
                   "--no-progress", catch=True)
    assert res.exit_code != 0 and isinstance(res.exception, FileNotFoundError)
    assert "arkmsa.jsonl.gz" in str(res.exception) and "import-published --dataset twitter2017 --source arkmsa" \
        in str(res.exception)
    assert "rationales_per_s" not in res.output and not (tmp_path / "twitter2017").exists()
    # an aspect-level bundle cannot give a tweet-level L_i: refused before generating too
    assert _run_cli("import-published", "--dataset", "twitter2017", "--source", "arkmsa-aspect",
                    "--bundle-root", str(tmp_path)).exit_code == 0
    aspect = _run_cli("generate", "--dataset", "twitter2017", "--split", "dev", "--backend", "lexicon",
                      "--image-from", "arkmsa-aspect", "--bundle", "--bundle-root", str(tmp_path), "--cache",
                      str(cache), "--no-progress", catch=True)
    assert aspect.exit_code != 0 and "aspect" in str(aspect.exception), aspect.exception
    assert "rationales_per_s" not in aspect.output and not (tmp_path / "twitter2017" / "lexicon.jsonl.gz").exists()


def test_rationalize_one_post_with_lexicon():
    from lrsa.rationales import make_backend, rationalize

    r = rationalize("I love the new phone #iPhone15Pro but @Apple support was awful 😡", make_backend("lexicon"),
                    image_texts=["a phone on a wooden table", "a phone on a table"])
    assert "Positive words: love" in r.text and "awful" in r.text and "@Apple" in r.text
    assert "#iPhone15Pro (i Phone 15 Pro)" in r.text and "enraged face" in r.text
    assert r.image == "The image and the tweet share the words: phone."  # v2: the captions are not restated
    v1 = rationalize("I love the new phone", make_backend("lexicon", prompt_version="v1"),
                     image_texts=["a phone on a wooden table", "a phone on a table"])
    assert v1.image == ("The image and the tweet share the words: phone. "
                        "The image shows a phone on a wooden table; a phone on a table.")
    assert r.provenance["backend"] == "lexicon"
