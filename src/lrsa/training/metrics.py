"""JMASA / MATE / MASC scores, exactly as docs/metrics.md defines them.

Everything is span-based (word start, exclusive end), never string-based. All numbers are percentages.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterable

from lrsa.data.schema import POLARITIES, Aspect, DataError, Example
from lrsa.io import atomic_write_text


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": 100 * p, "r": 100 * r, "f1": 100 * f1}


def _span_polarity(aspects: Iterable[Aspect]) -> dict[tuple[int, int], str | None]:
    """span -> its predicted polarity; None when the span was predicted with conflicting polarities."""
    out: dict[tuple[int, int], str | None] = {}
    for a in aspects:
        if a.span in out and out[a.span] != a.polarity:
            out[a.span] = None
        else:
            out.setdefault(a.span, a.polarity)
    return out


def _masc(pairs: list[tuple[str, str | None]]) -> dict[str, float]:
    """Accuracy and macro-F1 (mean of per-class F1 over the classes in gold or prediction)."""
    n = len(pairs)
    correct = sum(g == p for g, p in pairs)
    classes = [c for c in POLARITIES if any(g == c or p == c for g, p in pairs)]
    f1s = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in pairs)
        n_pred = sum(p == c for _, p in pairs)
        n_gold = sum(g == c for g, _ in pairs)
        f1s.append(_prf(tp, n_pred, n_gold)["f1"])
    return {"acc": 100 * correct / n if n else 0.0,
            "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
            "n": n}


def masc_pairs(pairs: list[tuple[str, str | None]]) -> dict[str, float]:
    """MASC accuracy and macro-F1 of (gold, predicted) polarity pairs; a predicted ``None`` is wrong."""
    return _masc(pairs)


def item_counts(task: str, gold: list[Example], pred: dict[str, list[Aspect]]) -> list[tuple[int, ...]]:
    """Per-item counts that ``score`` sums, for paired bootstraps over items.

    ``jmasa``: one ``(tp, predicted, gold)`` triple count per sentence (micro F1 = sums of these);
    ``masc``: one ``(correct,)`` per gold aspect (accuracy = their mean).
    """
    out: list[tuple[int, ...]] = []
    for ex in gold:
        p_aspects = pred.get(ex.id, [])
        if task == "jmasa":
            triples = {(a.start, a.end, a.polarity) for a in p_aspects}
            g = {(a.start, a.end, a.polarity) for a in ex.aspects}
            out.append((len(triples & g), len(triples), len(ex.aspects)))
        elif task == "masc":
            span_pol = _span_polarity(p_aspects)
            out.extend((int(span_pol.get(a.span) == a.polarity),) for a in ex.aspects)
        else:
            raise ValueError(f"unknown task {task!r}; known: jmasa, masc")
    return out


def score(gold: list[Example], pred: dict[str, list[Aspect]]) -> dict[str, Any]:
    """Score predicted aspects against gold examples.

    - ``jmasa``: micro P/R/F1 over (start, end, polarity) triples; a duplicate predicted triple counts once.
    - ``mate``: the same over (start, end) spans.
    - ``masc``: accuracy and macro-F1 of the predicted polarity of every gold span, only when the
      prediction gives a polarity for every gold span (MASC on gold aspects); otherwise ``None``.
    - ``masc_joint``: sentiment accuracy over the correctly extracted spans (a different number).
    - ``missing``: gold sentences absent from ``pred`` (scored as empty predictions).
    A span predicted with two different polarities counts as a wrong polarity in MASC figures.
    """
    gold_ids = {ex.id for ex in gold}
    unknown = sorted(set(pred) - gold_ids)
    if unknown:
        raise DataError("predictions", f"id {unknown[0]!r}",
                        f"not in the gold data ({len(unknown)} unknown id(s))")
    tp_j = n_pred_j = n_gold = tp_m = n_pred_m = 0
    masc_pairs: list[tuple[str, str | None]] = []
    joint_pairs: list[tuple[str, str | None]] = []
    covers_all = True
    for ex in gold:
        p_aspects = pred.get(ex.id, [])
        triples = {(a.start, a.end, a.polarity) for a in p_aspects}
        spans = {(a.start, a.end) for a in p_aspects}
        g_triples = {(a.start, a.end, a.polarity) for a in ex.aspects}
        g_spans = {a.span: a.polarity for a in ex.aspects}
        tp_j += len(triples & g_triples)
        n_pred_j += len(triples)
        tp_m += len(spans & set(g_spans))
        n_pred_m += len(spans)
        n_gold += len(ex.aspects)
        span_pol = _span_polarity(p_aspects)
        for span, g_pol in g_spans.items():
            if span in span_pol:
                masc_pairs.append((g_pol, span_pol[span]))
                joint_pairs.append((g_pol, span_pol[span]))
            else:
                covers_all = False
    masc = _masc(masc_pairs) if covers_all and n_gold else None
    joint = _masc(joint_pairs)
    return {
        "jmasa": _prf(tp_j, n_pred_j, n_gold),
        "mate": _prf(tp_m, n_pred_m, n_gold),
        "masc": {"acc": masc["acc"], "macro_f1": masc["macro_f1"]} if masc else None,
        "masc_joint": {"acc": joint["acc"], "n": joint["n"]},
        "missing": len(gold_ids - set(pred)),
        "sentences": len(gold),
        "gold_aspects": n_gold,
    }


def read_predictions(path: Path, gold: list[Example]) -> dict[str, list[Aspect]]:
    """Read a predictions JSONL file (docs/metrics.md), checking every line against the gold sentences.

    One line per sentence: ``{"id": "test-0", "aspects": [{"start": 4, "end": 6, "polarity": "POS"}]}``.
    A path ending in ``.gz`` is read through gzip (a table record's archived predictions).
    """
    src = str(path)
    by_id = {ex.id: ex for ex in gold}
    out: dict[str, list[Aspect]] = {}
    try:
        raw = Path(path).read_bytes()
        if src.endswith(".gz"):
            raw = gzip.decompress(raw)
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(src, f"byte {err.start}", "invalid UTF-8") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(src, "gzip", f"not a whole gzip file ({err})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(src, where, f"bad JSON: {err.msg}") from None
        if not isinstance(rec, dict) or "id" not in rec or "aspects" not in rec:
            raise DataError(src, where, "each line needs 'id' and 'aspects'")
        rid = rec["id"]
        if rid not in by_id:
            raise DataError(src, where, f"unknown id {rid!r}: not a sentence of the gold split")
        if rid in out:
            raise DataError(src, where, f"duplicate id {rid!r}")
        if not isinstance(rec["aspects"], list):
            raise DataError(src, where, "'aspects' must be a list")
        n_words = len(by_id[rid].words)
        aspects = []
        for a in rec["aspects"]:
            if not isinstance(a, dict) or not {"start", "end", "polarity"} <= a.keys():
                raise DataError(src, where, "aspect needs 'start', 'end' and 'polarity'")
            s, e, pol = a["start"], a["end"], a["polarity"]
            if pol not in POLARITIES:
                raise DataError(src, where, f"unknown polarity {pol!r} (expected POS/NEU/NEG)")
            if not (isinstance(s, int) and isinstance(e, int)) or not 0 <= s < e <= n_words:
                raise DataError(src, where, f"span [{s}, {e}) outside the sentence {rid!r} "
                                            f"of {n_words} words")
            aspects.append(Aspect(start=s, end=e, polarity=pol))
        out[rid] = aspects
    return out


def write_predictions(pred: dict[str, list[Aspect]], path: Path) -> None:
    """Write predictions as JSONL in id order of insertion."""
    atomic_write_text(path, "".join(
        json.dumps({"id": rid, "aspects": [a.model_dump() for a in aspects]}) + "\n"
        for rid, aspects in pred.items()))


def gold_as_predictions(gold: list[Example]) -> dict[str, list[Aspect]]:
    return {ex.id: list(ex.aspects) for ex in gold}

