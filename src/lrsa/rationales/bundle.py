"""Rationale bundles: every sentence of a benchmark with its rationales, as gzipped JSONL + a manifest.

Layout: ``<root>/<dataset>/<source>.jsonl.gz`` (one ``{"id", "text", "image", ...}`` object per line,
``text`` = L_t, ``image`` = L_i, optional per-record provenance fields) and ``<root>/<dataset>/manifest.json``
(``{"sources": {source: {provenance, counts, sha256, generated_at, generation_s, command}}}``).
A composed bundle (L_t written here, L_i taken from another bundle of the dataset) stores no L_i: its
provenance names ``image_from`` (that bundle) and ``image_sha256`` (its digest when composed), and
:func:`load_bundle` joins the L_i back by id. This keeps texts derived from the data directory (the
published MiniGPT-4 / GPT-4 descriptions, never committed) out of committed bundles.
The default root is ``artifacts/rationales`` of the repository this package was installed from
(editable install or source checkout), or ``$LRSA_RATIONALES_DIR`` when set.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from lrsa.data.schema import DataError, Rationale
from lrsa.io import atomic_write_bytes, iter_jsonl, sha256_file

ROOT_ENV = "LRSA_RATIONALES_DIR"
MANIFEST = "manifest.json"
_REL = Path("artifacts") / "rationales"


def default_root() -> Path:
    """``$LRSA_RATIONALES_DIR``, else ``artifacts/rationales`` in the checkout that holds this package."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "lrsa").is_dir():
            return parent / _REL
    # Not installed from a checkout (e.g. a wheel): no bundled rationales; say where we looked.
    return Path.cwd() / _REL


def resolve_root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else default_root()


def bundle_path(dataset: str, source: str, root: str | Path | None = None) -> Path:
    return resolve_root(root) / dataset / f"{source}.jsonl.gz"


def _generate_hint(dataset: str, source: str) -> str:
    from lrsa.rationales.backends import BACKENDS
    from lrsa.rationales.sources import SOURCES

    if source in SOURCES:
        return f"lrsa rationales import-published --dataset {dataset} --source {source}"
    if source in BACKENDS:
        return f"lrsa rationales generate --dataset {dataset} --split all --backend {source} --bundle"
    return (f"lrsa rationales generate --dataset {dataset} --split all --backend openai --model MODEL "
            f"--bundle --source {source}` or import it with `lrsa rationales import FILE.jsonl "
            f"--dataset {dataset} --source {source}")


def read_manifest(dataset: str, root: str | Path | None = None) -> dict[str, Any]:
    path = resolve_root(root) / dataset / MANIFEST
    if not path.is_file():
        return {"dataset": dataset, "sources": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(str(path), f"line {err.lineno}", f"bad JSON: {err.msg}") from None


def available_sources(dataset: str, root: str | Path | None = None) -> list[str]:
    """Sources with a bundle file for ``dataset`` (e.g. ``["lexicon", "local"]``), sorted."""
    folder = resolve_root(root) / dataset
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".jsonl.gz")] for p in folder.glob("*.jsonl.gz"))


def load_bundle(dataset: str, source: str = "lexicon", root: str | Path | None = None,
                level: str = "tweet") -> dict[str, Rationale]:
    """Rationales of every sentence of ``dataset`` keyed by example id (``"train-0"``, ``"dev-3"``, ...).

    ``Rationale.text`` is L_t, ``Rationale.image`` is L_i, ``Rationale.provenance`` the backend, model,
    prompt version/hash and settings from the manifest plus any per-record fields.
    ``level``: ``"tweet"`` (inputs where aspects must be found: JMASA, MATE) refuses a bundle written toward
    given aspects (manifest ``provenance.level == "aspect"``, keyed ``<sentence id>@<start>:<end>``);
    ``"aspect"`` (MASC) asks for exactly such a bundle.
    """
    if level not in ("tweet", "aspect"):
        raise ValueError(f"level must be 'tweet' or 'aspect', not {level!r}")
    path = bundle_path(dataset, source, root)
    if not path.is_file():
        have = available_sources(dataset, root)
        raise FileNotFoundError(
            f"no rationale bundle {path} (available for {dataset}: {', '.join(have) or 'none'}); "
            f"generate it with `{_generate_hint(dataset, source)}`")
    manifest = read_manifest(dataset, root)
    entry = manifest.get("sources", {}).get(source)
    if entry is None:
        raise DataError(str(path.parent / MANIFEST), f"source {source!r}",
                        f"{path.name} has no manifest entry; regenerate with `{_generate_hint(dataset, source)}`")
    have_level = entry.get("provenance", {}).get("level", "tweet")
    if have_level != level:
        raise DataError(str(path), f"source {source!r}",
                        f"is an {have_level}-level bundle; this input needs a {level}-level one"
                        + (" (a rationale written toward a given aspect must never be an input where "
                           "aspects are to be found)" if have_level == "aspect" else ""))
    digest = sha256_file(path)
    if entry.get("sha256") and entry["sha256"] != digest:
        raise DataError(str(path), "whole file",
                        f"sha256 {digest[:12]}... does not match the manifest ({entry['sha256'][:12]}...)")
    base = dict(entry.get("provenance", {}))
    linked = _linked_images(dataset, base, root, path) if base.get("image_from") else None
    out: dict[str, Rationale] = {}
    for n, rec in iter_jsonl(path):
        if not isinstance(rec.get("id"), str):
            raise DataError(str(path), f"line {n}", "needs a string field 'id'")
        if rec["id"] in out:
            raise DataError(str(path), f"line {n}", f"duplicate id {rec['id']!r}")
        prov = dict(base)
        prov.update(rec.get("provenance") or {})
        image = rec.get("image") or ""
        if linked is not None:
            if rec["id"] not in linked:
                raise DataError(str(bundle_path(dataset, base["image_from"], root)), rec["id"],
                                f"no record for this sentence (L_i of {path.name})")
            image = linked[rec["id"]].image
        out[rec["id"]] = Rationale(text=rec.get("text") or "", image=image, provenance=prov)
    expected = sum((entry.get("counts") or {}).values())
    if expected and expected != len(out):
        raise DataError(str(path), "whole file", f"{len(out)} records, manifest says {expected}")
    return out


def _linked_images(dataset: str, provenance: dict[str, Any], root: str | Path | None,
                   path: Path) -> dict[str, Rationale]:
    """The records of the bundle a composed bundle takes its L_i from, checked against the recorded digest."""
    src = provenance["image_from"]
    try:
        other = load_bundle(dataset, src, root)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path.name} takes its L_i from the {src!r} bundle: {err}") from None
    want = provenance.get("image_sha256")
    have = read_manifest(dataset, root)["sources"][src].get("sha256")
    if want and have != want:
        raise DataError(str(path), f"source {src!r}", f"was composed with {src} sha256 {want[:12]}..., "
                                                      f"the bundle now has {str(have)[:12]}...")
    return other


def write_bundle(dataset: str, source: str, records: Iterable[dict[str, Any]], provenance: dict[str, Any],
                 root: str | Path | None = None, generation_s: float | None = None,
                 command: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<source>.jsonl.gz`` (byte-reproducible: gzip mtime 0) and update the manifest entry."""
    records = list(records)
    if provenance.get("image_from"):  # a composed bundle: L_i stays in its own bundle (load_bundle joins it)
        records = [{k: v for k, v in r.items() if k != "image"} for r in records]
    counts: dict[str, int] = {}
    for r in records:
        split = r["id"].rsplit("-", 1)[0]
        counts[split] = counts.get(split, 0) + 1
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        for r in records:
            gz.write((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
    path = bundle_path(dataset, source, root)
    manifest = read_manifest(dataset, root)
    old = manifest.get("sources", {}).get(source)
    if old and old.get("sha256") == hashlib.sha256(buf.getvalue()).hexdigest() and old.get("provenance") == provenance:
        # a byte-identical rebuild (e.g. a derived bundle on a fresh clone): the manifest stays as it is
        if not path.is_file() or sha256_file(path) != old["sha256"]:
            atomic_write_bytes(path, buf.getvalue())
        return path
    atomic_write_bytes(path, buf.getvalue())
    manifest["dataset"] = dataset
    entry = {
        "provenance": provenance,
        "counts": counts,
        "records": len(records),
        "bytes": len(buf.getvalue()),
        "sha256": sha256_file(path),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "generation_s": None if generation_s is None else round(generation_s, 3),
        "command": command,
    }
    if extra:
        entry.update(extra)
    manifest.setdefault("sources", {})[source] = entry
    manifest["sources"] = dict(sorted(manifest["sources"].items()))
    atomic_write_bytes(path.parent / MANIFEST,
                        (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return path


def compose_image(dataset: str, records: list[dict[str, Any]], provenance: dict[str, Any], image_from: str,
                  root: str | Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records whose L_t is ``records``' text and whose L_i is taken from the existing tweet-level bundle
    ``image_from`` (with its per-record image provenance: source, missing). Every record needs a partner.
    The provenance links the two (``image_from``, ``image_sha256``): :func:`write_bundle` stores no L_i."""
    other = load_bundle(dataset, image_from, root)
    entry = read_manifest(dataset, root)["sources"][image_from]
    out = []
    for r in records:
        o = other.get(r["id"])
        if o is None:
            raise DataError(str(bundle_path(dataset, image_from, root)), r["id"], "no record for this sentence")
        prov = {k: v for k, v in (r.get("provenance") or {}).items() if k != "flags" or isinstance(v, dict)}
        flags = {k: v for k, v in prov.pop("flags", {}).items() if k == "text"}
        if flags:
            prov["flags"] = flags
        prov.pop("image_source", None)  # what the L_t prompt read as context, not where L_i comes from
        prov["image_source"] = o.provenance.get("image_source") or image_from
        if "image" in o.provenance.get("missing", []):
            prov["missing"] = ["image"]
        rec = {"id": r["id"], "text": r["text"], "image": o.image}
        if prov:
            rec["provenance"] = prov
        out.append(rec)
    image_prov = entry.get("provenance", {})
    composed = {**provenance, "level": "tweet", "text": f"{provenance.get('backend')} {provenance.get('model')}",
                "text_source": f"{provenance.get('backend')}:{provenance.get('model_name', provenance.get('model'))}",
                "image": f"bundle {image_from} (sha256 {entry.get('sha256')}): {image_prov.get('image', '')}".strip(),
                "image_model": image_prov.get("model"), "image_from": image_from,
                "image_sha256": entry.get("sha256")}
    return out, composed


def grow(records: list[dict[str, Any]], report: dict[str, Any], generation_s: float,
         old_records: dict[str, Rationale], old_entry: dict[str, Any], order: list[str]
         ) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """A bundle grown by this run: the old bundle's records of ids this run did not write are kept (per-record
    provenance reduced to what differs from the manifest's), sorted in dataset ``order``; the generation
    report and seconds add up (seconds only when this run generated anything)."""
    mine = {r["id"] for r in records}
    base = old_entry["provenance"]
    kept = []
    for k, r in old_records.items():
        if k in mine:
            continue
        rec = {"id": k, "text": r.text, "image": r.image}
        own = {p: v for p, v in r.provenance.items() if p not in base or base[p] != v}
        if own:
            rec["provenance"] = own
        kept.append(rec)
    rank = {ex_id: i for i, ex_id in enumerate(order)}
    merged = sorted(records + kept, key=lambda r: rank.get(r["id"], len(rank)))
    old = old_entry.get("report") or {}
    summed = {"generated": old.get("generated", 0) + report["generated"],
              "prompt_tokens": old.get("prompt_tokens", 0) + report["prompt_tokens"],
              "completion_tokens": old.get("completion_tokens", 0) + report["completion_tokens"],
              "failed": report["failed"], "requested": len(merged),
              "flagged": {f: (old.get("flagged") or {}).get(f, 0) + n for f, n in report["flagged"].items()}}
    seconds = (old_entry.get("generation_s") or 0.0) + (generation_s if report["generated"] else 0.0)
    return merged, summed, seconds
