"""Readers: each benchmark format -> a list of ``Example``.

Every reader either returns well-formed examples or raises ``DataError`` naming the file, the
record (line number or sentence index) and the reason. With ``lenient=True`` a malformed record is
skipped and counted in the ``ReadReport`` instead; nothing is ever dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from lrsa.data.schema import POLARITIES, Aspect, DataError, Example, validate_aspects

TARGET = "$T$"
TSV_LABELS = {"0": "NEG", "1": "NEU", "2": "POS"}
SEMEVAL_LABELS = {"positive": "POS", "neutral": "NEU", "negative": "NEG"}


@dataclass
class ReadReport:
    """What a reader did: records read, and every skipped record with its reason (lenient mode)."""

    source: str
    examples: int = 0
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "examples": self.examples, "skipped": len(self.skipped),
                "reasons": self.skipped}


class _Collector:
    """Collects examples; raises or records a skip depending on ``lenient``."""

    def __init__(self, source: str, lenient: bool, report: ReadReport | None):
        self.source = source
        self.lenient = lenient
        self.report = report if report is not None else ReadReport(source)
        self.examples: list[Example] = []

    def add(self, build: Callable[[], Example]) -> None:
        try:
            self.examples.append(build())
        except DataError as err:
            if not self.lenient:
                raise
            self.report.skipped.append(str(err))

    def fail(self, where: str, reason: str) -> None:
        err = DataError(self.source, where, reason)
        if not self.lenient:
            raise err
        self.report.skipped.append(str(err))

    def done(self, split: str) -> list[Example]:
        # ids follow file order of the sentences that were kept
        out = [ex.model_copy(update={"id": f"{split}-{i}"}) for i, ex in enumerate(self.examples)]
        self.report.examples = len(out)
        return out


def _aspect(start: int, end: int, polarity: Any, source: str, where: str) -> Aspect:
    if polarity not in POLARITIES:
        raise DataError(source, where, f"unknown polarity {polarity!r} (expected one of POS/NEU/NEG)")
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool):
        raise DataError(source, where, f"span bounds must be integers, got {start!r}, {end!r}")
    if end <= start:
        raise DataError(source, where, f"empty span [{start}, {end})")
    if start < 0:
        raise DataError(source, where, f"negative span start {start}")
    return Aspect(start=start, end=end, polarity=polarity)


def _example(words: list[str], aspects: list[Aspect], source: str, where: str, **kw: Any) -> Example:
    if not words or not any(w.strip() for w in words):
        raise DataError(source, where, "empty text")
    validate_aspects(words, aspects, source, where)
    return Example(id="", words=words, aspects=sorted(aspects, key=lambda a: a.start), **kw)


def _check_words(words: Any, source: str, where: str) -> list[str]:
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise DataError(source, where, "'words' must be a list of strings")
    return words


def _read_lines(path: Path) -> list[str]:
    """The file's lines; invalid UTF-8 is a DataError naming the byte offset."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(str(path), f"byte {err.start}", "invalid UTF-8") from None


# --------------------------------------------------------------------------- JMASA JSON


def read_jmasa(path: Path, split: str, lenient: bool = False,
               report: ReadReport | None = None) -> list[Example]:
    """AoM / VLP-MABSA sentence-level JSON: a list of {words, image_id, aspects[{from,to,polarity}]}."""
    src = str(path)
    col = _Collector(src, lenient, report)
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(src, f"line {err.lineno} column {err.colno}", f"bad JSON: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise DataError(src, f"byte {err.start}", "invalid UTF-8") from None
    if not isinstance(records, list):
        raise DataError(src, "top level", "expected a JSON list of sentence records")
    for i, rec in enumerate(records):
        where = f"record {i}"

        def build(rec: Any = rec, where: str = where) -> Example:
            if not isinstance(rec, dict):
                raise DataError(src, where, "record is not a JSON object")
            for key in ("words", "aspects"):
                if key not in rec:
                    raise DataError(src, where, f"missing field {key!r}")
            words = _check_words(rec["words"], src, where)
            aspects = []
            for a in rec["aspects"]:
                if not isinstance(a, dict) or not {"from", "to", "polarity"} <= a.keys():
                    raise DataError(src, where, "aspect needs 'from', 'to' and 'polarity'")
                aspects.append(_aspect(a["from"], a["to"], a["polarity"], src, where))
                term = a.get("term")
                if term is not None and term != words[a["from"]:a["to"]]:
                    raise DataError(src, where, f"aspect term {term!r} does not match words"
                                                f"[{a['from']}:{a['to']}]")
            return _example(words, aspects, src, where, image_id=rec.get("image_id"))

        col.add(build)
    return col.done(split)


# --------------------------------------------------------------------------- $T$ target rows


def _group_target_rows(rows: Iterable[tuple[str, str, str | None, str, str]], col: _Collector
                       ) -> None:
    """Group consecutive per-aspect rows (where, label, image, text with $T$, aspect) into sentences.

    Rows belong to the same sentence when the image id and the text with the aspect filled in are
    the same as the previous row's.
    """
    current: tuple[str | None, tuple[str, ...]] | None = None
    aspects: list[Aspect] = []
    first_where = ""
    src = col.source

    def flush() -> None:
        if current is None:
            return
        image_id, words = current
        ws, asp, fw = list(words), list(aspects), first_where
        col.add(lambda: _example(ws, _dedupe(asp), src, fw, image_id=image_id))

    for where, polarity, image_id, text, term in rows:
        toks = text.split()
        if toks.count(TARGET) != 1:
            col.fail(where, f"'$T$' must occur exactly once in the text, found {toks.count(TARGET)}")
            continue
        term_toks = term.split()
        if not term_toks:
            col.fail(where, "empty aspect term")
            continue
        k = toks.index(TARGET)
        words = tuple(toks[:k] + term_toks + toks[k + 1:])
        try:
            asp = _aspect(k, k + len(term_toks), polarity, src, where)
        except DataError as err:
            if not col.lenient:
                raise
            col.report.skipped.append(str(err))
            continue
        key = (image_id, words)
        if key != current:
            flush()
            current, aspects, first_where = key, [], where
        aspects.append(asp)
    flush()


def _dedupe(aspects: list[Aspect]) -> list[Aspect]:
    seen: dict[tuple[int, int], Aspect] = {}
    for a in aspects:
        seen.setdefault(a.span, a)
    return list(seen.values())


def read_tsv(path: Path, split: str, lenient: bool = False,
             report: ReadReport | None = None) -> list[Example]:
    """TomBERT TSV: index, label (0=NEG 1=NEU 2=POS), image id, text with $T$, aspect.

    The header is skipped whatever it says (``test.tsv`` names four columns but has five).
    """
    src = str(path)
    col = _Collector(src, lenient, report)
    lines = _read_lines(path)
    if not lines or not lines[0].startswith("index"):
        raise DataError(src, "line 1", "missing header line starting with 'index'")

    def rows() -> Iterable[tuple[str, str, str | None, str, str]]:
        for n, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            cols = line.split("\t")
            where = f"line {n}"
            if len(cols) != 5:
                col.fail(where, f"expected 5 tab-separated columns, found {len(cols)}")
                continue
            _, label, image_id, text, term = cols
            if label not in TSV_LABELS:
                col.fail(where, f"unknown label {label!r} (expected 0, 1 or 2)")
                continue
            yield where, TSV_LABELS[label], image_id, text, term

    _group_target_rows(rows(), col)
    return col.done(split)


def read_semeval(path: Path, split: str, lenient: bool = False,
                 report: ReadReport | None = None) -> list[Example]:
    """SemEval 3-line records: sentence with $T$, aspect, Positive/Neutral/Negative. Text only."""
    src = str(path)
    col = _Collector(src, lenient, report)
    lines = _read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) % 3:
        raise DataError(src, f"line {len(lines)}",
                        f"{len(lines)} lines is not a whole number of 3-line records")

    def rows() -> Iterable[tuple[str, str, str | None, str, str]]:
        for i in range(0, len(lines), 3):
            text, term, label = lines[i], lines[i + 1].strip(), lines[i + 2].strip()
            where = f"line {i + 1}"
            pol = SEMEVAL_LABELS.get(label.lower())
            if pol is None:
                col.fail(f"line {i + 3}", f"unknown label {label!r} (expected Positive/Neutral/Negative)")
                continue
            yield where, pol, None, text, term

    _group_target_rows(rows(), col)
    return col.done(split)


# --------------------------------------------------------------------------- CoNLL BIO


def read_conll(path: Path, split: str, lenient: bool = False,
               report: ReadReport | None = None) -> list[Example]:
    """Political Twitter CoNLL: ``IMGID:<id>`` line, then ``token<TAB>B-POS|I-NEG|O...`` lines."""
    src = str(path)
    col = _Collector(src, lenient, report)
    lines = _read_lines(path)
    blocks: list[tuple[int, list[str]]] = []
    cur: list[str] = []
    start = 1
    for n, line in enumerate(lines, start=1):
        if line.strip():
            if not cur:
                start = n
            cur.append(line)
        elif cur:
            blocks.append((start, cur))
            cur = []
    if cur:
        blocks.append((start, cur))

    for start, block in blocks:
        def build(start: int = start, block: list[str] = block) -> Example:
            head = block[0]
            if not head.startswith("IMGID:"):
                raise DataError(src, f"line {start}", "sentence block must start with 'IMGID:<id>'")
            image_id = head[len("IMGID:"):].strip()
            if not image_id:
                raise DataError(src, f"line {start}", "empty image id after 'IMGID:'")
            words: list[str] = []
            aspects: list[Aspect] = []
            open_start, open_pol = None, None
            for k, line in enumerate(block[1:], start=start + 1):
                cols = line.split("\t")
                if len(cols) < 2:
                    raise DataError(src, f"line {k}", f"expected token<TAB>tag, found {len(cols)} column(s)")
                tok, tag = cols[0], cols[1]
                i = len(words)
                words.append(tok)
                if tag == "O" or tag.startswith("B-"):
                    if open_start is not None:
                        aspects.append(_aspect(open_start, i, open_pol, src, f"line {k}"))
                        open_start = None
                    if tag.startswith("B-"):
                        if tag[2:] not in POLARITIES:
                            raise DataError(src, f"line {k}", f"unknown tag {tag!r}")
                        open_start, open_pol = i, tag[2:]
                elif tag.startswith("I-"):
                    if open_start is None or tag[2:] != open_pol:
                        raise DataError(src, f"line {k}", f"tag {tag!r} does not continue an open "
                                                          f"{open_pol or 'aspect'} span")
                else:
                    raise DataError(src, f"line {k}", f"unknown tag {tag!r}")
            if open_start is not None:
                aspects.append(_aspect(open_start, len(words), open_pol, src, f"line {start}"))
            return _example(words, aspects, src, f"line {start}", image_id=f"{image_id}.jpg")

        col.add(build)
    return col.done(split)


# --------------------------------------------------------------------------- user JSONL


def read_jsonl(path: Path, split: str = "user", lenient: bool = False,
               report: ReadReport | None = None) -> list[Example]:
    """Users' own posts, one JSON object a line (docs/data.md):

    ``{"id"?: str, "text"?: str, "words"?: [str], "image"?: path, "image_id"?: str,
    "aspects"?: [{"start": int, "end": int, "polarity": "POS"|"NEU"|"NEG"}]}``

    ``text`` is split on white space when ``words`` is absent. An image path is resolved relative
    to the JSONL file. Ids default to ``<split>-<n>``; given ids must be unique.
    """
    src = str(path)
    col = _Collector(src, lenient, report)
    base = Path(path).parent
    seen_ids: dict[str, int] = {}
    lines = _read_lines(path)
    given_ids: list[str | None] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {n}"

        def build(line: str = line, where: str = where) -> Example:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(src, where, f"bad JSON: {err.msg}") from None
            if not isinstance(rec, dict):
                raise DataError(src, where, "record is not a JSON object")
            if "words" in rec:
                words = _check_words(rec["words"], src, where)
            elif isinstance(rec.get("text"), str):
                words = rec["text"].split()
            else:
                raise DataError(src, where, "needs 'text' (string) or 'words' (list of strings)")
            aspects = []
            for a in rec.get("aspects") or []:
                if not isinstance(a, dict) or not {"start", "end", "polarity"} <= a.keys():
                    raise DataError(src, where, "aspect needs 'start', 'end' and 'polarity'")
                aspects.append(_aspect(a["start"], a["end"], a["polarity"], src, where))
            rid = rec.get("id")
            if rid is not None:
                if not isinstance(rid, str) or not rid:
                    raise DataError(src, where, "'id' must be a non-empty string")
                if rid in seen_ids:
                    raise DataError(src, where, f"duplicate id {rid!r} (first at line {seen_ids[rid]})")
                seen_ids[rid] = int(where.split()[1])
            image_path = None
            if rec.get("image") is not None:
                if not isinstance(rec["image"], str):
                    raise DataError(src, where, "'image' must be a path string")
                p = Path(rec["image"])
                image_path = str(p if p.is_absolute() else base / p)
            ex = _example(words, aspects, src, where, image_id=rec.get("image_id"),
                          image_path=image_path, metadata=rec.get("metadata") or {})
            given_ids.append(rid)
            return ex

        col.add(build)
    out = col.done(split)
    return [ex.model_copy(update={"id": rid}) if rid else ex for ex, rid in zip(out, given_ids)]


def write_jsonl(examples: Iterable[Example], path: Path) -> None:
    """Write examples in the user JSONL format (round-trips through ``read_jsonl``)."""
    with open(path, "w", encoding="utf-8") as fh:
        for ex in examples:
            rec: dict[str, Any] = {"id": ex.id, "words": ex.words}
            if ex.image_id:
                rec["image_id"] = ex.image_id
            if ex.image_path:
                rec["image"] = ex.image_path
            rec["aspects"] = [a.model_dump() for a in ex.aspects]
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


READERS: dict[str, Callable[..., list[Example]]] = {
    "jmasa": read_jmasa,
    "tsv": read_tsv,
    "conll": read_conll,
    "semeval": read_semeval,
    "jsonl": read_jsonl,
}
