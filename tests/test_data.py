"""The data layer on the real benchmark files: counts, readers agreeing, traps found, fetch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lrsa.data import DATASETS, load_dataset, side_inputs
from lrsa.data.checks import check, stats
from lrsa.data.readers import read_jsonl, read_tsv, write_jsonl
from lrsa.data.registry import FetchError, fetch, get, upstream

pytestmark = pytest.mark.data

README_COUNTS = {  # ../shared/data/README.md, "Split counts"
    "twitter2015": {"train": (2101, 3179, 928, 1883, 368), "dev": (727, 1122, 303, 670, 149),
                    "test": (674, 1037, 317, 607, 113)},
    "twitter2017": {"train": (1746, 3562, 1508, 1638, 416), "dev": (577, 1176, 515, 517, 144),
                    "test": (587, 1234, 493, 573, 168)},
    "political_twitter": {"train": (5105, 8902, 3318, 4697, 887), "dev": (900, 1559, 570, 823, 166),
                          "test": (407, 849, 176, 368, 305)},
}


def lrsa(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrsa", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_stats_cli_matches_data_readme(name: str, data_dir: Path) -> None:
    out = lrsa("data", "stats", name, "--json", data_dir=data_dir)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert set(got) == {"train", "dev", "test"}
    for split, (sent, asp, pos, neu, neg) in README_COUNTS[name].items():
        row = got[split]
        assert (row["sentences"], row["aspects"], row["POS"], row["NEU"], row["NEG"]) == \
            (sent, asp, pos, neu, neg)
        assert 0 < row["multi_aspect_sentences"] < sent
        for kind, cov in row["side_coverage"].items():
            assert cov["covered"] == cov["of"] == sent, (split, kind)


def test_every_named_dataset_has_its_expected_counts(data_dir: Path) -> None:
    for name, ds in DATASETS.items():
        got = stats(name, data_dir)
        assert set(got) == set(ds.expected), name
        for split, exp in ds.expected.items():
            assert {k: got[split][k] for k in exp} == exp, (name, split)


def test_ids_follow_file_order(data_dir: Path) -> None:
    test = load_dataset("twitter2015", "test", data_dir)
    raw = json.loads((data_dir / "twitter2015/jmasa/test.json").read_text())
    assert [ex.id for ex in test[:3]] == ["test-0", "test-1", "test-2"]
    assert all(ex.words == r["words"] for ex, r in zip(test, raw))
    dev = load_dataset("political_twitter", "dev", data_dir)  # 'valid' is read as 'dev'
    assert dev[0].id == "dev-0" and dev[0].image_id.endswith(".jpg")


@pytest.mark.parametrize("name", ["twitter2015", "twitter2017"])
@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_tsv_reader_agrees_with_jmasa_on_every_sentence(name: str, split: str, data_dir: Path) -> None:
    jmasa = load_dataset(name, split, data_dir)
    tsv = read_tsv(data_dir / name / "tsv" / f"{split}.tsv", split)
    assert len(tsv) == len(jmasa)
    for a, b in zip(jmasa, tsv):
        assert (a.id, a.words, a.image_id, a.aspects) == (b.id, b.words, b.image_id, b.aspects)


def test_repeated_aspect_strings_are_kept_as_separate_spans(data_dir: Path) -> None:
    repeated = [ex for name in ("twitter2015", "twitter2017") for ex in load_dataset(name, "train", data_dir)
                if len({ex.surface(a) for a in ex.aspects}) < len(ex.aspects)]
    assert repeated, "the benchmark has sentences with the same aspect string twice"
    ex = repeated[0]
    assert len({a.span for a in ex.aspects}) == len(ex.aspects)


def test_side_inputs_cover_the_images(data_dir: Path) -> None:
    side = side_inputs("twitter2017", data_dir)
    ex = load_dataset("twitter2017", "test", data_dir)[0]
    assert len(side["mdca_captions"][ex.image_id]) == 8
    assert len(side["coolnet_captions"][ex.image_id]) == 1
    assert len(side["gpt4_descriptions"][ex.image_id][0].split()) > 20
    assert "gpt4_descriptions" not in side_inputs("twitter2015", data_dir)


def test_check_finds_twitter2017_traps(data_dir: Path) -> None:
    r = check("twitter2017", data_dir)
    dups = r["duplicates_within_split"]
    assert [(d["split"], d["image_id"]) for d in dups] == [("train", "17_06_2136.jpg")]
    shared = r["overlap_between_splits"]
    assert [(d["splits"], d["image_id"]) for d in shared] == [(["test", "train"], "16_05_02_82.jpg")]
    out = lrsa("data", "check", "twitter2017", data_dir=data_dir)
    assert out.returncode == 0
    assert "duplicate in train: train-1190, train-1312 (image 17_06_2136.jpg)" in out.stdout
    assert "shared between test/train" in out.stdout and "16_05_02_82.jpg" in out.stdout


def test_check_finds_political_twitter_overlap_with_standard_splits(data_dir: Path) -> None:
    r = check("political_twitter", data_dir)
    leaks = {(d["other"], d["other_split"]): d["count"] for d in r["overlap_with_other_datasets"]
             if d["split"] == "test"}
    assert leaks[("twitter2015", "train")] > 0 and leaks[("twitter2017", "train")] > 0
    test_in_standard_train_dev = sum(v for (o, s), v in leaks.items() if s in ("train", "dev"))
    assert test_in_standard_train_dev > 300  # most of Political test occurs in 2015/2017 train/dev
    assert any("must not be evaluated on political_twitter test" in w for w in r["warnings"])
    out = lrsa("data", "check", "political_twitter", "--json", data_dir=data_dir)
    assert json.loads(out.stdout)["summary"]["overlap_with_other_datasets"] > 0


def test_checking_several_datasets_reads_each_file_once(data_dir: Path, monkeypatch) -> None:
    from lrsa.data import checks

    reads: list[str] = []
    real = checks.load_splits
    monkeypatch.setattr(checks, "load_splits", lambda n, *a, **k: reads.append(n) or real(n, *a, **k))
    loaded: dict = {}
    first = checks.check("political_twitter", data_dir, others=["twitter2015"], loaded=loaded)
    second = checks.check("twitter2015", data_dir, others=["political_twitter"], loaded=loaded)
    assert reads == ["political_twitter", "twitter2015"]
    assert second == checks.check("twitter2015", data_dir, others=["political_twitter"])  # same as fresh reads
    assert first["summary"]["overlap_with_other_datasets"] > 0 and second["summary"]["overlap_with_other_datasets"] > 0


def test_user_jsonl_round_trip(tmp_path: Path, data_dir: Path) -> None:
    exs = load_dataset("twitter2015", "dev", data_dir)[:20]
    path = tmp_path / "posts.jsonl"
    write_jsonl(exs, path)
    back = read_jsonl(path)
    assert [(e.id, e.words, e.aspects, e.image_id) for e in back] == \
        [(e.id, e.words, e.aspects, e.image_id) for e in exs]


# ------------------------------------------------------------------ fetch


def _serve(root: Path):
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _upstream_layout(data_dir: Path, dest: Path, name: str) -> None:
    """Lay the files out as <repo>/<commit>/<path>, as the upstream raw-file host does."""
    pins = upstream()
    for rel in get(name).files():
        pin = pins[rel]
        target = dest / pin["repo"] / pin["commit"] / pin["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / rel, target)


def test_fetch_downloads_and_verifies_from_a_real_http_server(tmp_path: Path, data_dir: Path) -> None:
    _upstream_layout(data_dir, tmp_path / "www", "political_twitter")
    server = _serve(tmp_path / "www")
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        out = tmp_path / "data"
        done = fetch("political_twitter", out, base_url=base)
        assert {how for _, how in done} == {"downloaded"}
        assert stats("political_twitter", out)["test"]["aspects"] == 849
        assert {how for _, how in fetch("political_twitter", out, base_url=base)} == {"present"}
        # a corrupted upstream file is refused and never lands in the data directory
        (out / "political_twitter/conll/test.txt").unlink()
        pin = upstream()["political_twitter/conll/test.txt"]
        bad = tmp_path / "www" / pin["repo"] / pin["commit"] / pin["path"]
        bad.write_text(bad.read_text() + "x\tO\tO\n")
        with pytest.raises(FetchError, match="sha256 .* does not match the pinned"):
            fetch("political_twitter", out, base_url=base)
        assert not (out / "political_twitter/conll/test.txt").exists()
    finally:
        server.shutdown()


def test_fetch_from_mirror_and_offline_failure(tmp_path: Path, data_dir: Path) -> None:
    out = lrsa("data", "fetch", "semeval14_laptop", "--from", str(data_dir), data_dir=tmp_path / "d")
    assert out.returncode == 0, out.stderr
    assert "copied" in out.stdout and "3 files verified" in out.stdout
    # nothing listening on the port: one clear line naming the file, non-zero exit
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env_out = subprocess.run(
        [sys.executable, "-m", "lrsa", "data", "fetch", "twitter2015", "--data-dir", str(tmp_path / "e")],
        capture_output=True, text=True, env={**__import__("os").environ,
                                             "LRSA_FETCH_BASE_URL": f"http://127.0.0.1:{port}"})
    assert env_out.returncode == 1
    lines = env_out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download twitter2015/jmasa/train.json")


def test_photos_are_fetched_verified_and_resized_as_the_manifest_says(tmp_path: Path, data_dir: Path) -> None:
    from lrsa.data.registry import fetch_images, image_pins, resize_photo
    from PIL import Image

    real = image_pins("twitter2015")
    assert real["repo"] == "123sghn/MulCoTRD" and len(real["images"]) == 3502
    # from a mirror (the resized set): copied and checked against the resized sha256
    few = {**real, "images": real["images"][:4]}
    done = fetch_images("twitter2015", tmp_path / "m", mirror=data_dir, pins=few)
    assert [how for _, how in done] == ["copied"] * 4
    assert [how for _, how in fetch_images("twitter2015", tmp_path / "m", mirror=data_dir, pins=few)] == ["present"] * 4
    (tmp_path / "bad").mkdir()
    shutil.copytree(data_dir / "twitter2015" / "images", tmp_path / "bad" / "twitter2015" / "images",
                    ignore=lambda d, names: [n for n in names if n not in {r[0] for r in few["images"]}])
    (tmp_path / "bad" / "twitter2015" / "images" / few["images"][0][0]).write_bytes(b"tampered")
    with pytest.raises(FetchError, match="does not match the pinned resized photo"):
        fetch_images("twitter2015", tmp_path / "m2", mirror=tmp_path / "bad", pins=few)
    # from upstream: originals (here two real photos, one an RGBA PNG) verified by sha256, then resized
    import hashlib
    import io

    import skimage

    www = tmp_path / "www" / "o" / "c0ffee"
    www.mkdir(parents=True)
    originals = {"a.jpg": (Path(skimage.data.__file__).parent / "chelsea.png").read_bytes()}
    rgba = Image.new("RGBA", (900, 300), (255, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    originals["b.jpg"] = buf.getvalue()
    for f, data in originals.items():
        (www / f"up_{f}").write_bytes(data)
    pins = {"repo": "o", "commit": "c0ffee", "images": [
        [f, f"up_{f}", hashlib.sha256(d).hexdigest(), hashlib.sha256(resize_photo(d)).hexdigest()]
        for f, d in originals.items()]}
    server = _serve(tmp_path / "www")
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        done = fetch_images("twitter2015", tmp_path / "u", base_url=base, pins=pins)
        assert [how for _, how in done] == ["downloaded", "downloaded"]
        a = Image.open(tmp_path / "u" / "twitter2015" / "images" / "a.jpg")
        b = Image.open(tmp_path / "u" / "twitter2015" / "images" / "b.jpg")
        assert a.format == "JPEG" and a.size == (384, 255) and b.size == (384, 128)
        assert b.convert("RGB").getpixel((10, 10)) >= (250, 250, 250)  # transparent -> white
        (www / "up_a.jpg").write_bytes(originals["a.jpg"] + b"x")
        (tmp_path / "u" / "twitter2015" / "images" / "a.jpg").unlink()
        with pytest.raises(FetchError, match="upstream original's sha256"):
            fetch_images("twitter2015", tmp_path / "u", base_url=base, pins=pins)
        assert not (tmp_path / "u" / "twitter2015" / "images" / "a.jpg").exists()
    finally:
        server.shutdown()
