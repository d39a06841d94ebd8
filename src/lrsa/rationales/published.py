"""Rationales that LLMs wrote for the benchmarks and that were published, turned into bundles.

Sources (read from the data directory; the bundles are derived from pinned files, never committed):

``arkmsa``  MiniGPT-4 (ArkMSA, ICME 2024), one record per (tweet, aspect) with a ``description`` of the
            image and a ``reason`` toward the aspect. Tweet level: L_i = the description of the tweet's
            first aspect record in file order (descriptions were measured not to favour their own aspect);
            L_t = the lexicon bundle's L_t (no tweet-level LLM text rationale is published).
            Political Twitter reuses Twitter-2015/2017 images: its L_i is the first description of the same
            image id (Twitter-2015 files before Twitter-2017, train, dev, test).
``arkmsa-aspect``  aspect level, MASC only: one record per gold aspect, keyed ``<sentence id>@<start>:<end>``,
            L_t = the reason toward that aspect, L_i = that record's description. ``load_bundle`` refuses
            it wherever aspects must be found (JMASA, MATE).
``gpt4``    GPT-4 descriptions of the Twitter-2017 images (DEQA): L_i = the description; L_t = lexicon.

This module builds on ``bundle`` (one way: ``bundle`` never imports it; the source names live in ``sources``).
Gold fields in the ArkMSA records (``gt_label``, ``target``) are never copied: the target and the ``$T$``
text only locate the record's gold span in the sentence. A post without a record gets the explicit
:data:`MISSING` text and ``"missing": [part]`` in its provenance; the manifest counts them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lrsa.data.registry import missing_data
from lrsa.data.schema import DataError, Example
from lrsa.rationales.bundle import load_bundle, read_manifest, write_bundle
from lrsa.rationales.sources import LEVEL, SOURCES

MISSING = "No rationale is available for this post."
_ARKMSA_FIELDS = ("text", "target", "ImageID", "description", "reason")
_ARKMSA_CITE = ("ningpang/ArkMSA data/Twitter1{5,7}/tw1{5,7}_*.json (MiniGPT-4 prompted with the image and "
                "the tweet; descriptions of the image, reasons toward one aspect)")


def aspect_key(sentence_id: str, start: int, end: int) -> str:
    """The id of an aspect-level rationale: ``"train-3@4:6"``."""
    return f"{sentence_id}@{start}:{end}"


_STATED = re.compile(r"^\s*sentiment\s*:\s*(positive|neutral|negative)\b", re.I)


def stated_sentiment(reason: str) -> str | None:
    """The polarity a reason states in its opening "Sentiment: X." (an LLM output), or None."""
    m = _STATED.match(reason)
    return {"positive": "POS", "neutral": "NEU", "negative": "NEG"}[m.group(1).lower()] if m else None


def _norm(s: str) -> str:
    return " ".join(s.split())


def read_arkmsa(path: Path) -> list[dict[str, str]]:
    """One ArkMSA file as records holding only what locates them and what may be an input."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise missing_data(path) from None
    except json.JSONDecodeError as err:
        raise DataError(str(path), f"line {err.lineno}", f"bad JSON: {err.msg}") from None
    if not isinstance(data, list):
        raise DataError(str(path), "top level", "expected a JSON list of records")
    out = []
    for n, rec in enumerate(data):
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in _ARKMSA_FIELDS):
            raise DataError(str(path), f"record {n}", f"needs string fields {', '.join(_ARKMSA_FIELDS)}")
        out.append({k: rec[k] for k in _ARKMSA_FIELDS})
    return out


def match_records(examples: list[Example], records: list[dict[str, str]], where: str
                  ) -> dict[tuple[str, int, int], int]:
    """(sentence id, start, end) of each gold aspect -> index of its ArkMSA record.

    A record matches the aspect whose sentence has the same image id and whose words, with the aspect
    replaced by ``$T$``, equal the record's text (whitespace-normalised). A record that matches nothing is
    an error naming it; duplicate tweets (the same text and image twice) share their record.
    """
    keys: dict[tuple[str, str, str], list[tuple[str, int, int]]] = {}
    for ex in examples:
        img = (ex.image_id or "").rsplit(".", 1)[0]
        for a in ex.aspects:
            k = (img, _norm(" ".join(ex.words[:a.start] + ["$T$"] + ex.words[a.end:])),
                 _norm(" ".join(ex.words[a.start:a.end])))
            keys.setdefault(k, []).append((ex.id, a.start, a.end))
    out: dict[tuple[str, int, int], int] = {}
    for n, rec in enumerate(records):
        k = (rec["ImageID"], _norm(rec["text"]), _norm(rec["target"]))
        if k not in keys:
            raise DataError(where, f"record {n}", f"matches no aspect of the split (image {rec['ImageID']}, "
                                                 f"target {rec['target']!r})")
        for span in keys[k]:
            out.setdefault(span, n)
    return out


def _lexicon_text(dataset: str, root: str | Path | None) -> tuple[dict[str, str], str]:
    lex = load_bundle(dataset, "lexicon", root)
    sha = read_manifest(dataset, root)["sources"]["lexicon"]["sha256"]
    return {k: r.text for k, r in lex.items()}, sha


def _record(rid: str, text: str | None, image: str | None, text_src: str, image_src: str) -> dict[str, Any]:
    missing = [part for part, v in (("text", text), ("image", image)) if not v]
    prov: dict[str, Any] = {"text_source": text_src if text else "missing",
                            "image_source": image_src if image else "missing"}
    if missing:
        prov["missing"] = missing
    return {"id": rid, "text": text or MISSING, "image": image or MISSING, "provenance": prov}


def build(dataset: str, source: str, data_dir: str | Path | None = None,
          root: str | Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Bundle records and provenance of one published source for one dataset."""
    from lrsa.data.registry import get, load_dataset, resolve_data_dir

    if source not in SOURCES:
        raise KeyError(f"unknown published rationale source {source!r}; known: {', '.join(SOURCES)}")
    ds = get(dataset)
    data = resolve_data_dir(data_dir)
    splits = {s: load_dataset(dataset, s, data_dir) for s in ds.splits}
    records: list[dict[str, Any]] = []
    if source == "gpt4":
        from lrsa.data.side import side_inputs

        desc = side_inputs(dataset, data_dir).get("gpt4_descriptions")
        if not desc:
            raise DataError(dataset, "gpt4", "this dataset has no GPT-4 image descriptions "
                                             "(only twitter2017 and, by image id, political_twitter)")
        lt, lex_sha = _lexicon_text(dataset, root)
        for exs in splits.values():
            for ex in exs:
                d = desc.get(ex.image_id or "")
                records.append(_record(ex.id, lt.get(ex.id), d[0] if d else None, "lexicon",
                                       "gpt4_descriptions"))
        prov = {"backend": "import", "model": "gpt-4", "level": "tweet",
                "text": f"lexicon bundle sha256 {lex_sha}", "image": "GPT-4 image descriptions (ZhixinHan/DEQA)",
                "prompt": "unpublished (image only)"}
        return records, prov
    # ArkMSA: Political Twitter looks descriptions up by image id across both Twitter datasets
    files = ds.rationale_files or {f"{name}:{s}": p for name in ("twitter2015", "twitter2017")
                                   for s, p in get(name).rationale_files.items()}
    if not files:
        raise DataError(dataset, "arkmsa", "no ArkMSA records are published for this dataset")
    read = {key: read_arkmsa(data / rel) for key, rel in files.items()}
    prov = {"backend": "import", "model": "MiniGPT-4", "published_by": _ARKMSA_CITE,
            "prompt": "unpublished (image + tweet; the reason also names one aspect)",
            "level": LEVEL[source]}
    if source == "arkmsa-aspect" and not ds.rationale_files:
        raise DataError(dataset, source, "aspect-level ArkMSA records exist only for twitter2015/2017")
    match = {s: match_records(splits[s], read[s], str(data / files[s])) for s in splits} \
        if ds.rationale_files else {}
    if source == "arkmsa-aspect":
        for s, exs in splits.items():
            for ex in exs:
                for a in ex.aspects:
                    n = match[s].get((ex.id, a.start, a.end))
                    rec = read[s][n] if n is not None else {}
                    records.append(_record(aspect_key(ex.id, a.start, a.end), rec.get("reason"),
                                           rec.get("description"), f"arkmsa:{s}:{n}", f"arkmsa:{s}:{n}"))
        prov["text"] = "MiniGPT-4 reason toward the aspect (begins 'Sentiment: X.'; an LLM output, not a label)"
        prov["image"] = "MiniGPT-4 description of the image (that aspect's record)"
        return records, prov
    lt, lex_sha = _lexicon_text(dataset, root)
    prov["text"] = f"lexicon bundle sha256 {lex_sha}"
    if ds.rationale_files:
        for s, exs in splits.items():
            first: dict[str, int] = {}
            for (sid, _, _), n in match[s].items():
                first[sid] = min(n, first.get(sid, n))
            for ex in exs:
                n = first.get(ex.id)
                records.append(_record(ex.id, lt.get(ex.id), read[s][n]["description"] if n is not None else None,
                                       "lexicon", f"arkmsa:{s}:{n}"))
        prov["image"] = "MiniGPT-4 description of the tweet's first aspect record in file order"
    else:
        by_image: dict[str, tuple[str, str]] = {}
        for key, recs in read.items():
            for n, rec in enumerate(recs):
                by_image.setdefault(rec["ImageID"], (rec["description"], f"arkmsa:{key}:{n}"))
        for exs in splits.values():
            for ex in exs:
                d, src = by_image.get((ex.image_id or "").rsplit(".", 1)[0], (None, ""))
                records.append(_record(ex.id, lt.get(ex.id), d, "lexicon", src))
        prov["image"] = "MiniGPT-4 description of the same image id (Twitter-2015 before Twitter-2017)"
    return records, prov


def import_published(dataset: str, source: str, data_dir: str | Path | None = None,
                     root: str | Path | None = None, command: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Build and write the bundle; return its path and its coverage report (records, missing per part)."""
    records, prov = build(dataset, source, data_dir, root)
    missing = {"text": 0, "image": 0}
    for r in records:
        for part in r["provenance"].get("missing", []):
            missing[part] += 1
    coverage = {"records": len(records), "missing": missing}
    path = write_bundle(dataset, source, records, prov, root=root, command=command,
                        extra={"coverage": coverage})
    return path, coverage
