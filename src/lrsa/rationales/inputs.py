"""What a rationale is generated from: the post text and the image side, never aspects or labels."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lrsa.data.schema import Example
from lrsa.io import sha256_file

_JOIN_SIGIL = re.compile(r"(^|\s)([#@])\s+(?=\w)")


def detokenize(words: list[str]) -> str:
    """The post as a reader sees it: benchmark tokenisations like ``# MCM`` or ``@ user`` are re-joined."""
    return _JOIN_SIGIL.sub(r"\1\2", " ".join(words))


def dedupe(texts: list[str]) -> list[str]:
    seen, out = set(), []
    for t in texts:
        t = " ".join(t.split())
        key = t.lower().rstrip(" .")
        if t and key not in seen:
            seen.add(key)
            out.append(t)
    return out


@dataclass(frozen=True)
class RationaleInput:
    """One post as the rationale stage sees it. It has no field for aspects or labels, by design."""

    id: str
    text: str
    image_path: str | None = None
    image_texts: tuple[str, ...] = ()
    image_source: str | None = None  # where image_texts came from: "gpt4_descriptions", "mdca_captions", ...
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def input_hash(self, kind: str, with_image_bytes: bool, with_image_texts: bool = False) -> str:
        """sha256 of what a backend receives for ``kind`` ("text" or "image"); a text prompt that reads the
        image-side texts (``with_image_texts``) hashes them too."""
        payload: dict = {"kind": kind, "text": self.text}
        if kind == "image" or with_image_texts:
            payload["image_texts"] = list(self.image_texts)
            if with_image_bytes and self.image_path:
                payload["image_sha256"] = sha256_file(self.image_path)
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()


# Which side texts stand for the image, in order of preference, per dataset (first one present wins).
IMAGE_TEXT_PREFERENCE: tuple[str, ...] = ("gpt4_descriptions", "mdca_captions", "coolnet_captions")


def from_example(ex: Example, side: dict[str, dict[str, list[str]]] | None = None,
                 prefer: tuple[str, ...] = IMAGE_TEXT_PREFERENCE) -> RationaleInput:
    """Build the input from the words, the image path and the image-side texts only."""
    image_texts: tuple[str, ...] = ()
    source = None
    if side and ex.image_id:
        for kind in prefer:
            texts = side.get(kind, {}).get(ex.image_id)
            if texts:
                image_texts, source = tuple(dedupe(texts)), kind
                break
    path = ex.image_path if ex.image_path and Path(ex.image_path).is_file() else None
    return RationaleInput(id=ex.id, text=detokenize(ex.words), image_path=path,
                          image_texts=image_texts, image_source=source)


def dataset_inputs(dataset: str, splits: list[str] | None = None,
                   data_dir: str | Path | None = None) -> list[RationaleInput]:
    """Inputs for every sentence of the given splits (all splits by default) of a named dataset."""
    from lrsa.data.registry import get, load_dataset
    from lrsa.data.side import side_inputs

    ds = get(dataset)
    side = side_inputs(dataset, data_dir) if ds.side else {}
    out: list[RationaleInput] = []
    for split in splits or list(ds.splits):
        out.extend(from_example(ex, side) for ex in load_dataset(dataset, split, data_dir))
    return out


def read_posts(path: str | Path) -> Iterator[RationaleInput]:
    """Stream user posts from JSONL (``.gz`` accepted): ``{"id": str, "text": str, "image"?: path relative to
    the file, "image_texts"?: [str]}`` per line. A bad line raises DataError naming the file and line."""
    from lrsa.data.schema import DataError
    from lrsa.io import iter_jsonl

    path = Path(path)
    seen: set[str] = set()
    for n, rec in iter_jsonl(path):
        if not isinstance(rec.get("id"), str) or not isinstance(rec.get("text"), str):
            raise DataError(str(path), f"line {n}", "needs string fields 'id' and 'text'")
        if rec["id"] in seen:
            raise DataError(str(path), f"line {n}", f"duplicate id {rec['id']!r}")
        seen.add(rec["id"])
        texts = rec.get("image_texts") or []
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DataError(str(path), f"line {n}", "'image_texts' must be a list of strings")
        image = rec.get("image")
        if image is not None:
            if not isinstance(image, str):
                raise DataError(str(path), f"line {n}", "'image' must be a path string")
            img = Path(image) if Path(image).is_absolute() else path.parent / image
            if not img.is_file():
                raise DataError(str(path), f"line {n}", f"image file {img} not found")
            image = str(img)
        yield RationaleInput(id=rec["id"], text=rec["text"], image_path=image,
                             image_texts=tuple(dedupe(texts)), image_source="user" if texts else None)
