"""Committed rationale bundles, the loader, and the no-leak guarantee of prompts and lexicon rationales."""

from __future__ import annotations

import re

import pytest

from lrsa.data.registry import DATASETS, get, load_dataset
from lrsa.data.schema import Aspect
from lrsa.data.side import side_inputs
from lrsa.rationales import available_sources, load_bundle, write_bundle
from lrsa.rationales.bundle import bundle_path, default_root
from lrsa.rationales.inputs import dataset_inputs, from_example
from lrsa.rationales.lexicon import describe_image, explain_text
from lrsa.rationales.prompts import TASKS, build_messages, load_template

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
    assert "lrsa rationales generate --dataset twitter2015" in msg and "--backend gemini" in msg


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
    for split in ds.splits:
        for ex in load_dataset(dataset, split):
            inp, inp2 = from_example(ex, side), from_example(_scrambled(ex), side)
            assert inp == inp2
            for task in TASKS:
                msgs = build_messages(task, inp)
                assert msgs == build_messages(task, inp2)
                user = msgs[1]["content"]
                assert user.count(f'"{inp.text}"') == 1  # the tweet verbatim, unmarked
                rest = user.replace(inp.text, " ").replace("\n".join(f"- {t}" for t in inp.image_texts), " ")
                assert not LABEL_WORDS.search(rest + msgs[0]["content"]), (dataset, ex.id, task)
            if dataset in BENCHMARKS and split == "test":
                assert explain_text(inp) == explain_text(inp2)
                assert describe_image(inp) == describe_image(inp2)


def test_templates_are_versioned_files_with_hashes():
    for task in TASKS:
        t = load_template(task)
        assert re.fullmatch(r"[0-9a-f]{12}", t.hash) and "$text" in t.user
    with pytest.raises(FileNotFoundError, match="text_v999"):
        load_template("text", "v999")
