"""Bundles from published LLM rationales (ArkMSA's MiniGPT-4 records, GPT-4 descriptions) on the real files.

They are rebuilt from the data directory exactly as the committed manifests record them (same sha256);
every record matches its gold aspect; missing records are explicit and counted; and no aspect-level reason
ever reaches an input where aspects must be found.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.data

ROOT = REPO / "artifacts" / "rationales"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A bundle root holding the committed lexicon bundles and manifests (the published ones are rebuilt)."""
    out = tmp_path_factory.mktemp("bundles")
    for d in ("twitter2015", "twitter2017"):
        (out / d).mkdir()
        shutil.copy(ROOT / d / "manifest.json", out / d / "manifest.json")
        shutil.copy(ROOT / d / "lexicon.jsonl.gz", out / d / "lexicon.jsonl.gz")
    return out


@pytest.mark.parametrize("dataset,source,records,missing_image", [
    ("twitter2015", "arkmsa", 3502, 2), ("twitter2015", "arkmsa-aspect", 5338, 3),
    ("twitter2017", "arkmsa", 2910, 1), ("twitter2017", "arkmsa-aspect", 5972, 3),
    ("twitter2017", "gpt4", 2910, 0)])
def test_rebuilt_bundles_equal_the_committed_manifests(root, data_dir, dataset, source, records, missing_image):
    from lrsa.rationales.bundle import load_bundle, read_manifest
    from lrsa.rationales.published import LEVEL, MISSING, import_published

    committed = json.loads((ROOT / dataset / "manifest.json").read_text())["sources"][source]
    path, cov = import_published(dataset, source, data_dir, root)
    assert cov["records"] == records and cov["missing"]["image"] == missing_image
    after = read_manifest(dataset, root)["sources"][source]
    assert after["sha256"] == committed["sha256"]  # byte-identical to what the tables were trained on
    assert after == committed  # a rebuild leaves the manifest entry as it was
    rats = load_bundle(dataset, source, root, level=LEVEL[source])
    missing = [k for k, r in rats.items() if "image" in r.provenance.get("missing", [])]
    assert len(missing) == missing_image
    assert all(rats[k].image == MISSING for k in missing)  # explicit, never a silent empty string
    assert all(r.text and r.image for r in rats.values())


def test_aspect_level_records_belong_to_their_aspect_and_never_feed_jmasa(root, data_dir):
    from lrsa.config import RunConfig
    from lrsa.data import load_dataset
    from lrsa.data.schema import DataError
    from lrsa.rationales.bundle import load_bundle
    from lrsa.rationales.published import MISSING, aspect_key, import_published, read_arkmsa

    import_published("twitter2015", "arkmsa", data_dir, root)
    import_published("twitter2015", "arkmsa-aspect", data_dir, root)
    reasons = load_bundle("twitter2015", "arkmsa-aspect", root, level="aspect")
    raw = read_arkmsa(data_dir / "twitter2015" / "rationales" / "arkmsa_dev.json")
    dev = load_dataset("twitter2015", "dev", data_dir)
    # the n-th dev record is the n-th dev aspect in file order: its reason is keyed by that aspect's span
    keys = [aspect_key(ex.id, a.start, a.end) for ex in dev for a in ex.aspects]
    assert [reasons[k].text for k in keys] == [r["reason"] for r in raw]
    # the tweet-level bundle holds no reason anywhere
    tweet = load_bundle("twitter2015", "arkmsa", root)
    all_reasons = {r.text for r in reasons.values()} - {MISSING}
    assert len(all_reasons) > 5000
    assert not any(r.text in all_reasons or r.image in all_reasons for r in tweet.values())
    # an aspect-level bundle is refused where aspects must be found, by the loader and by training
    with pytest.raises(DataError, match="aspect-level"):
        load_bundle("twitter2015", "arkmsa-aspect", root)
    from lrsa.rationales.bundle import bundle_path
    from lrsa.training.data import load_rationales

    if not bundle_path("twitter2015", "arkmsa-aspect").is_file():  # derived from the data, never committed
        import_published("twitter2015", "arkmsa-aspect", data_dir)
    jmasa = RunConfig.model_validate({"train": {"rationale_source": "arkmsa-aspect"}, "model": {"host": "span"}})
    with pytest.raises(DataError, match="aspect-level"):
        load_rationales(jmasa)


def test_masc_items_read_only_their_own_aspects_rationale(data_dir):
    from lrsa.config import RunConfig, apply_overrides, variant_overrides
    from lrsa.data import load_dataset, side_inputs
    from lrsa.rationales.published import build
    from lrsa.data.schema import Rationale
    from lrsa.training.data import aspect_id, side_texts

    records, _ = build("twitter2015", "arkmsa-aspect", data_dir, ROOT)
    rats = {r["id"]: Rationale(text=r["text"], image=r["image"]) for r in records}
    run = RunConfig.model_validate(apply_overrides({}, {**variant_overrides("lrsa"), "model.host": "aspect",
                                                        "train.rationale_source": "arkmsa-aspect"}))
    dev = load_dataset("twitter2015", "dev", data_dir)
    multi = [ex for ex in dev if len(ex.aspects) > 1][:20]
    texts = side_texts(multi, run, side_inputs("twitter2015", data_dir), rats, "twitter2015")
    ids = [aspect_id(ex, a) for ex in multi for a in ex.aspects]
    assert texts["rat_text"] == [rats[i].text for i in ids]
    assert len(texts["visual"]) == len(multi)  # the image text stays per sentence
    # sibling aspects of one tweet get different reasons (each written toward its own aspect)
    first = multi[0]
    sib = [rats[aspect_id(first, a)].text for a in first.aspects]
    assert len(set(sib)) == len(sib)
