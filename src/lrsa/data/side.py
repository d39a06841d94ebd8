"""Side inputs keyed by image id: captions (MDCA: 8 per image, CoolNet: 1 per image) and image
descriptions (GPT-4 descriptions of the Twitter-2017 images). They stand in for pixels, which the
benchmarks here do not have."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from lrsa.data.registry import get, missing_data, resolve_data_dir
from lrsa.data.schema import DataError


def read_side_file(path: Path) -> dict[str, list[str]]:
    """Read one side file into ``{image_id: [texts]}``.

    Formats: ``{id: [captions]}`` or ``{id: caption}`` JSON, or JSONL ``{"image_name", "description"}``.
    """
    src = str(path)
    out: dict[str, list[str]] = {}
    if path.suffix == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(src, f"line {n}", f"bad JSON: {err.msg}") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("image_name"), str) \
                    or not isinstance(rec.get("description"), str):
                raise DataError(src, f"line {n}", "needs string fields 'image_name' and 'description'")
            out.setdefault(rec["image_name"], []).append(rec["description"])
        return out
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(src, f"line {err.lineno} column {err.colno}", f"bad JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise DataError(src, "top level", "expected a JSON object keyed by image id")
    for key, val in data.items():
        texts = [val] if isinstance(val, str) else val
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DataError(src, f"key {key!r}", "value must be a string or a list of strings")
        out[key] = texts
    return out


@lru_cache(maxsize=32)
def _load(path: str) -> dict[str, list[str]]:
    return read_side_file(Path(path))


def side_inputs(dataset: str, data_dir: str | Path | None = None) -> dict[str, dict[str, list[str]]]:
    """Every side input of a named dataset, merged by kind: ``{"mdca_captions": {image_id: [...]}, ...}``.

    Political Twitter draws on both the 2015 and 2017 caption files; they are merged under one name.
    """
    ds = get(dataset)
    root = resolve_data_dir(data_dir)
    merged: dict[str, dict[str, list[str]]] = {}
    for name, rel in ds.side.items():
        kind = name.removesuffix("_2017")
        path = root / rel
        if not path.exists():
            raise missing_data(path, dataset, data_dir)
        merged.setdefault(kind, {}).update(_load(str(path)))
    return merged
