"""Named datasets: where their files come from (pinned by commit and sha256), how to read them,
what counts they must have, and how to fetch them into a data directory."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import lrsa.data.readers as readers
from lrsa.io import atomic_write_bytes, sha256_file
from lrsa.data.schema import SPLITS, Example

DATA_DIR_ENV = "LRSA_DATA_DIR"


@dataclass(frozen=True)
class Dataset:
    """A named benchmark: one file per split, read by one reader, plus side files keyed by image id."""

    name: str
    reader: str
    splits: dict[str, str]  # split -> path relative to the data dir
    side: dict[str, str] = field(default_factory=dict)  # side input name -> relative path
    extra_files: tuple[str, ...] = ()  # licences etc. fetched alongside
    # published LLM rationales per split (ArkMSA's MiniGPT-4 records), read by lrsa.rationales.published
    rationale_files: dict[str, str] = field(default_factory=dict)
    expected: dict[str, dict[str, int]] = field(default_factory=dict)
    has_images: bool = True
    images: str | None = None  # folder of the (resized) photos, file name = image id; None: none ship

    def files(self) -> list[str]:
        return [*self.splits.values(), *self.side.values(), *self.rationale_files.values(), *self.extra_files]


def _twitter(name: str, folder: str, expected: dict[str, dict[str, int]]) -> Dataset:
    side = {
        "mdca_captions": f"{folder}/captions/mdca_captions.json",
        "coolnet_captions": f"{folder}/captions/coolnet_captions.json",
    }
    if folder == "twitter2017":
        side["gpt4_descriptions"] = f"{folder}/descriptions/gpt4_descriptions.jsonl"
    return Dataset(
        name=name,
        reader="jmasa",
        splits={s: f"{folder}/jmasa/{s}.json" for s in SPLITS},
        side=side,
        extra_files=(f"{folder}/captions/LICENSE.MDCA.txt",),
        rationale_files={s: f"{folder}/rationales/arkmsa_{s}.json" for s in SPLITS},
        expected=expected,
        # the real photos ship for Twitter-2015 only (resized: twitter2015/images_manifest.json)
        images=f"{folder}/images" if folder == "twitter2015" else None,
    )


def _counts(sentences: int, aspects: int, pos: int, neu: int, neg: int) -> dict[str, int]:
    return {"sentences": sentences, "aspects": aspects, "POS": pos, "NEU": neu, "NEG": neg}


def _semeval(name: str, folder: str, train: str, test: str,
             expected: dict[str, dict[str, int]]) -> Dataset:
    return Dataset(
        name=name,
        reader="semeval",
        splits={"train": f"semeval/{folder}/{train}", "test": f"semeval/{folder}/{test}"},
        extra_files=("semeval/LICENSE.ABSADatasets.txt",),
        expected=expected,
        has_images=False,
    )


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        _twitter("twitter2015", "twitter2015", {
            "train": _counts(2101, 3179, 928, 1883, 368),
            "dev": _counts(727, 1122, 303, 670, 149),
            "test": _counts(674, 1037, 317, 607, 113),
        }),
        _twitter("twitter2017", "twitter2017", {
            "train": _counts(1746, 3562, 1508, 1638, 416),
            "dev": _counts(577, 1176, 515, 517, 144),
            "test": _counts(587, 1234, 493, 573, 168),
        }),
        Dataset(
            name="political_twitter",
            reader="conll",
            splits={"train": "political_twitter/conll/train.txt",
                    "dev": "political_twitter/conll/valid.txt",
                    "test": "political_twitter/conll/test.txt"},
            # Political Twitter re-splits the Twitter-2015/2017 images: their captions serve it too.
            side={"mdca_captions": "twitter2015/captions/mdca_captions.json",
                  "mdca_captions_2017": "twitter2017/captions/mdca_captions.json",
                  "coolnet_captions": "twitter2015/captions/coolnet_captions.json",
                  "coolnet_captions_2017": "twitter2017/captions/coolnet_captions.json"},
            expected={
                "train": _counts(5105, 8902, 3318, 4697, 887),
                "dev": _counts(900, 1559, 570, 823, 166),
                "test": _counts(407, 849, 176, 368, 305),
            },
        ),
        _semeval("semeval14_laptop", "113.laptop14", "Laptops_Train.xml.seg", "Laptops_Test_Gold.xml.seg",
                 {"train": _counts(1501, 2328, 994, 464, 870), "test": _counts(421, 638, 341, 169, 128)}),
        _semeval("semeval14_restaurant", "114.restaurant14", "Restaurants_Train.xml.seg",
                 "Restaurants_Test_Gold.xml.seg",
                 {"train": _counts(2018, 3608, 2164, 637, 807), "test": _counts(615, 1120, 728, 196, 196)}),
        _semeval("semeval15_restaurant", "115.restaurant15", "restaurant_train.raw", "restaurant_test.raw",
                 {"train": _counts(839, 1194, 904, 36, 254), "test": _counts(403, 540, 326, 34, 180)}),
        _semeval("semeval16_restaurant", "116.restaurant16", "restaurant_train.raw", "restaurant_test.raw",
                 {"train": _counts(1243, 1739, 1235, 69, 435), "test": _counts(423, 612, 468, 30, 114)}),
    ]
}


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def upstream() -> dict[str, dict]:
    """Pins for every file: repo, commit, path, bytes, sha256 (from the shared MANIFEST)."""
    return json.loads(resources.files("lrsa.data").joinpath("upstream.json").read_text())


def default_data_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lrsa")) / "data"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """``--data-dir`` if given, else ``$LRSA_DATA_DIR``, else the user cache directory."""
    if data_dir:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return default_data_dir()


def missing_data(path: Path, name: str | None = None, data_dir: str | Path | None = None) -> FileNotFoundError:
    """The one error for a benchmark file missing from the data directory: it says which directory was
    used and why (``--data-dir``, ``$LRSA_DATA_DIR`` or the default), names both settings first (offline
    they are the fix), then the fetch."""
    root = resolve_data_dir(data_dir)
    why = "--data-dir" if data_dir else (f"${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV) else
                                         f"the default; neither --data-dir nor ${DATA_DIR_ENV} is set")
    fetch = f"lrsa data fetch {name}" if name else "lrsa data fetch NAME"
    return FileNotFoundError(
        f"{path} not found in the data directory {root} ({why}). Point --data-dir or ${DATA_DIR_ENV} at the "
        f"directory that holds the benchmark files (twitter2015/, twitter2017/, ...), or download them into "
        f"it with `{fetch}` where the upstream hosts are reachable.")


def dataset_path(name: str, split: str, data_dir: str | Path | None = None) -> Path:
    ds = get(name)
    if split not in ds.splits:
        raise KeyError(f"dataset {name!r} has no split {split!r}; it has {', '.join(ds.splits)}")
    path = resolve_data_dir(data_dir) / ds.splits[split]
    if not path.exists():
        raise missing_data(path, name, data_dir)
    return path


def image_path(name: str, image_id: str, data_dir: str | Path | None = None) -> Path:
    """The photo of ``image_id`` in the data directory; a clear error when the dataset ships no photos or
    the file is missing."""
    ds = get(name)
    if not ds.images:
        raise ValueError(f"{name}: no photos ship with this dataset (image_side=pixels needs them); read the "
                         "image as text (image_side=captions) or train text-only (image_side=none)")
    path = resolve_data_dir(data_dir) / ds.images / image_id
    if not path.is_file():
        raise missing_data(path, name, data_dir)
    return path


def load_dataset(name: str, split: str, data_dir: str | Path | None = None,
                 lenient: bool = False, report: readers.ReadReport | None = None) -> list[Example]:
    """Read one split of a named dataset into ``Example`` records with ids ``<split>-<n>``."""
    ds = get(name)
    path = dataset_path(name, split, data_dir)
    return readers.READERS[ds.reader](path, split, lenient=lenient, report=report)


def data_checksums(name: str, data_dir: str | Path | None = None) -> dict[str, str]:
    """sha256 of every split and side file of a dataset, for results files."""
    root = resolve_data_dir(data_dir)
    return {rel: sha256_file(root / rel) for rel in get(name).files() if (root / rel).exists()}


class FetchError(RuntimeError):
    pass


DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
BASE_URL_ENV = "LRSA_FETCH_BASE_URL"


def fetch(name: str, data_dir: str | Path | None = None, mirror: str | Path | None = None,
          timeout: float = 30.0, base_url: str | None = None) -> list[tuple[str, str]]:
    """Put every file of ``name`` into the data directory, verified against its pinned sha256.

    ``mirror`` copies from a local directory laid out like the data directory; otherwise each file is
    downloaded from its pinned upstream commit at ``<base_url>/<repo>/<commit>/<path>`` (default
    raw.githubusercontent.com, or ``$LRSA_FETCH_BASE_URL`` for a mirror server). Files already present
    with the right checksum are kept. Returns ``[(relative path, "present" | "copied" | "downloaded")]``.
    """
    import httpx

    root = resolve_data_dir(data_dir)
    base_url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    pins = upstream()
    done: list[tuple[str, str]] = []
    for rel in get(name).files():
        pin = pins[rel]
        dest = root / rel
        if dest.exists() and sha256_file(dest) == pin["sha256"]:
            done.append((rel, "present"))
            continue
        if mirror is not None:
            data, how = _mirror_bytes(mirror, rel), "copied"
        else:
            url = f"{base_url.rstrip('/')}/{pin['repo']}/{pin['commit']}/{pin['path']}"
            data, how = _download(httpx, url, rel, timeout), "downloaded"
        digest = hashlib.sha256(data).hexdigest()
        if digest != pin["sha256"]:
            raise FetchError(f"{rel}: sha256 {digest} does not match the pinned {pin['sha256']}")
        atomic_write_bytes(dest, data)
        done.append((rel, how))
    if get(name).images:
        done += fetch_images(name, root, mirror, timeout, base_url)
    return done


def _mirror_bytes(mirror: str | Path, rel: str) -> bytes:
    src = Path(mirror) / rel
    if not src.exists():
        raise FetchError(f"{src} not found in mirror {mirror}")
    return src.read_bytes()


def _download(client, url: str, rel: str, timeout: float) -> bytes:
    """GET ``url`` with ``client`` (an ``httpx.Client`` or the ``httpx`` module); one clear error naming ``rel``."""
    import httpx

    try:
        resp = client.get(url, timeout=timeout, follow_redirects=True)
        resp.raise_for_status()
    except httpx.HTTPError as err:
        raise FetchError(f"could not download {rel} from {url}: {err.__class__.__name__}: {err}") from None
    return resp.content


def image_pins(name: str) -> dict:
    """The photos of ``name``: upstream repo and commit, how they were resized, and per file
    ``[file, upstream path, upstream sha256, resized sha256]`` (derived from the data's images_manifest.json)."""
    import gzip

    raw = resources.files("lrsa.data").joinpath(f"images_{name}.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw))


def resize_photo(data: bytes) -> bytes:
    """The manifest's derivation: decode, composite alpha on white, RGB, shrink the longer side to at most
    384 px (LANCZOS), JPEG quality 85."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, img)
    img = img.convert("RGB")
    if max(img.size) > 384:
        scale = 384 / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def fetch_images(name: str, root: Path, mirror: str | Path | None = None, timeout: float = 30.0,
                 base_url: str = DEFAULT_BASE_URL, pins: dict | None = None) -> list[tuple[str, str]]:
    """Put the resized photos of ``name`` into ``<root>/<images>/``. From a mirror: copy the resized files and
    verify their sha256. Otherwise: download each upstream original, verify its pinned sha256, resize it as
    the manifest describes (the JPEG bytes may differ from the pinned resized ones across Pillow versions,
    so a resized file that matches is "downloaded", one that does not is "resized")."""
    import httpx

    pins = pins or image_pins(name)
    folder = get(name).images
    assert folder
    done: list[tuple[str, str]] = []
    with httpx.Client() as client:
        for file, upstream_path, upstream_sha, sha in pins["images"]:
            rel = f"{folder}/{file}"
            dest = root / rel
            if dest.exists() and sha256_file(dest) == sha:
                done.append((rel, "present"))
                continue
            if mirror is not None:
                data = _mirror_bytes(mirror, rel)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise FetchError(f"{Path(mirror) / rel}: sha256 does not match the pinned resized photo {sha}")
                atomic_write_bytes(dest, data)
                done.append((rel, "copied"))
                continue
            url = f"{base_url.rstrip('/')}/{pins['repo']}/{pins['commit']}/{upstream_path}"
            original = _download(client, url, rel, timeout)
            digest = hashlib.sha256(original).hexdigest()
            if digest != upstream_sha:
                raise FetchError(f"{rel}: the upstream original's sha256 {digest} does not match the pinned "
                                 f"{upstream_sha}")
            data = resize_photo(original)
            atomic_write_bytes(dest, data)
            done.append((rel, "downloaded" if hashlib.sha256(data).hexdigest() == sha else "resized"))
    return done

