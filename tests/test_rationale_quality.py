"""The rationale quality report and bundle composition (local L_t + published L_i) on the real bundles."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.data

ROOT = REPO / "artifacts" / "rationales"


@pytest.fixture(scope="module")
def root(tmp_path_factory, data_dir):
    from lrsa.rationales.published import import_published

    out = tmp_path_factory.mktemp("bundles")
    (out / "twitter2015").mkdir()
    for name in ("manifest.json", "lexicon.jsonl.gz"):
        shutil.copy(ROOT / "twitter2015" / name, out / "twitter2015" / name)
    for source in ("arkmsa", "arkmsa-aspect"):
        import_published("twitter2015", source, data_dir, out)
    return out


def test_quality_report_measures_what_each_source_does(root, data_dir, tmp_path):
    from lrsa.rationales.quality import markdown, quality

    reason = quality("twitter2015", "arkmsa-aspect", data_dir, root)
    assert reason["level"] == "aspect" and reason["split"] == "dev"
    lt = reason["parts"]["text"]
    assert lt["rationales"] == 1122  # one per dev aspect
    assert lt["stated_sentiment"]["stated"] == 100.0  # every reason opens with "Sentiment: X."
    assert 50 <= lt["stated_sentiment"]["agrees_with_gold"] <= 62  # the data README: 50-61 %, not the label
    assert lt["names_gold_aspect"] > 80  # a reason is written toward its aspect
    lex = quality("twitter2015", "lexicon", data_dir, root)
    ark = quality("twitter2015", "arkmsa", data_dir, root)
    assert lex["parts"]["text"] == ark["parts"]["text"]  # arkmsa's L_t is the lexicon's
    # the lexicon's L_i restates shared words only; MiniGPT-4 names things the inputs do not
    assert lex["parts"]["image"]["unsupported_entities"]["per_rationale"] == 0
    assert ark["parts"]["image"]["unsupported_entities"]["share_with_any"] > 10
    assert ark["parts"]["image"]["words"]["median"] > 60 > lex["parts"]["image"]["words"]["median"]
    assert ark["cost"]["note"].startswith("published")
    md = markdown([lex, ark, reason])
    assert md.count("\n| twitter2015 |") == 6


def test_report_command_writes_json_and_markdown(root, data_dir, tmp_path):
    from typer.testing import CliRunner

    from lrsa.cli import app

    res = CliRunner().invoke(app, ["rationales", "report", "--dataset", "twitter2015", "--source", "lexicon",
                                   "--source", "arkmsa", "--bundle-root", str(root), "--data-dir", str(data_dir),
                                   "--out-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "twitter2015.json").read_text())
    assert [s["source"] for s in data["sources"]] == ["lexicon", "arkmsa"]
    assert "| twitter2015 | arkmsa | L_i |" in (tmp_path / "twitter2015.md").read_text()


def test_compose_takes_l_i_from_the_image_bundle(root):
    from lrsa.data.schema import DataError
    from lrsa.rationales.bundle import compose_image, load_bundle, write_bundle

    ark = load_bundle("twitter2015", "arkmsa", root)
    missing = next(k for k, r in ark.items() if "image" in r.provenance.get("missing", []))
    records = [{"id": "dev-0", "text": "The post praises the team."}, {"id": missing, "text": "A text rationale."}]
    prov = {"backend": "local", "model": "m.gguf@sha256:abc", "prompt_version": "v2"}
    out, composed = compose_image("twitter2015", records, prov, "arkmsa", root)
    assert out[0]["image"] == ark["dev-0"].image and out[0]["text"] == "The post praises the team."
    assert out[1]["provenance"]["missing"] == ["image"]  # the explicit "missing" L_i carries over
    assert out[0]["provenance"]["image_source"].startswith("arkmsa:dev:")  # names the record L_i came from
    assert composed["level"] == "tweet" and composed["image_model"] == "MiniGPT-4"
    assert "arkmsa" in composed["image"] and composed["text_source"] == "local:m.gguf@sha256:abc"
    write_bundle("twitter2015", "composed-test", out, composed, root=root)
    back = load_bundle("twitter2015", "composed-test", root)
    assert back["dev-0"].provenance["model"] == "m.gguf@sha256:abc"
    # the composed bundle stores only its own L_t; L_i is joined back from the arkmsa bundle on load
    raw = (root / "twitter2015" / "composed-test.jsonl.gz").read_bytes()
    stored = [json.loads(line) for line in gzip.decompress(raw).splitlines()]
    assert [sorted(r) for r in stored] == [["id", "provenance", "text"]] * 2
    assert back["dev-0"].image == ark["dev-0"].image and back["dev-0"].text == "The post praises the team."
    assert back[missing].image == ark[missing].image
    assert composed["image_from"] == "arkmsa" and composed["image_sha256"] == \
        json.loads((root / "twitter2015" / "manifest.json").read_text())["sources"]["arkmsa"]["sha256"]
    with pytest.raises(DataError, match="no record"):
        compose_image("twitter2015", [{"id": "dev-99999", "text": "x"}], prov, "arkmsa", root)


def test_a_composed_bundle_names_a_missing_or_changed_image_bundle(root, tmp_path):
    from lrsa.data.schema import DataError
    from lrsa.rationales.bundle import compose_image, load_bundle, write_bundle

    copy = tmp_path / "bundles"
    shutil.copytree(root, copy)
    prov = {"backend": "local", "model": "m.gguf@sha256:abc", "prompt_version": "v2"}
    out, composed = compose_image("twitter2015", [{"id": "dev-0", "text": "A text."}], prov, "arkmsa", copy)
    write_bundle("twitter2015", "composed-test", out, composed, root=copy)
    manifest_path = copy / "twitter2015" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sources"]["composed-test"]["provenance"]["image_sha256"] = "0" * 64  # composed with another L_i
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="was composed with arkmsa sha256 000000000000"):
        load_bundle("twitter2015", "composed-test", copy)
    (copy / "twitter2015" / "arkmsa.jsonl.gz").unlink()
    with pytest.raises(FileNotFoundError, match="composed-test.jsonl.gz takes its L_i from the 'arkmsa' bundle"):
        load_bundle("twitter2015", "composed-test", copy)


def test_table_runs_build_the_image_bundle_a_composed_bundle_links(root, data_dir, tmp_path, monkeypatch):
    from lrsa.rationales.bundle import ROOT_ENV, compose_image, load_bundle, write_bundle
    from lrsa.training.reproduce import RunSpec, ensure_published_bundles

    copy = tmp_path / "bundles"
    shutil.copytree(root, copy)
    prov = {"backend": "local", "model": "m.gguf@sha256:abc", "prompt_version": "v2"}
    out, composed = compose_image("twitter2015", [{"id": "dev-0", "text": "A text."}], prov, "arkmsa", copy)
    write_bundle("twitter2015", "composed-test", out, composed, root=copy)
    (copy / "twitter2015" / "arkmsa.jsonl.gz").unlink()  # a fresh clone: derived bundles are not committed
    monkeypatch.setenv(ROOT_ENV, str(copy))
    logs = []
    ensure_published_bundles([RunSpec("twitter2015", "span", "lrsa", 0, "composed-test")], data_dir, logs.append)
    assert len(logs) == 1 and "arkmsa.jsonl.gz" in logs[0]
    assert load_bundle("twitter2015", "composed-test")["dev-0"].image == load_bundle("twitter2015", "arkmsa")["dev-0"].image
