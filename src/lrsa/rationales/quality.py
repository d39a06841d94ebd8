"""Rationale quality report of one bundle, on the dev split only (a diagnostic; nothing here feeds a model).

``quality(dataset, source)`` returns, for each part (``text`` = L_t, ``image`` = L_i):

- ``words``: length distribution in words (min, median, p95, max) and the share of the explicit
  "missing" rationale;
- ``names_gold_aspect``: share of gold aspects (dev) whose words appear in the rationale, beside
  ``names_other_capitalised``: the same for capitalised tweet words outside every aspect span (a
  rationale that names every capitalised word scores high on both: the gap is what matters);
- ``unsupported_entities``: capitalised words of the rationale (not sentence-initial, not stopwords)
  found in neither the tweet nor the image-side texts, per rationale, and the share of rationales with at
  least one (a hallucination proxy: a correct fact the input does not state counts too);
- ``stated_sentiment``: where the rationale states a polarity toward a gold aspect (aspect level: its
  opening "Sentiment: X."; tweet level: a positive/neutral/negative word in the rationale sentence that
  names the aspect), how often it is stated and how often it agrees with gold.

Plus ``cost``: generation wall seconds (on the machine that wrote the bundle), tokens and their rate per
1,000 posts from the bundle manifest (unknown for published sources). ``markdown(reports)`` sets several sources side by side.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")
_CAP = re.compile(r"(?<![\w@#])([A-Z][a-zA-Z'\-]{1,})")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")
_POLARITY = {"positive": "POS", "neutral": "NEU", "negative": "NEG"}
_POL_WORD = re.compile(r"\b(positive|neutral|negative)\b", re.I)
_STOP = {"The", "This", "That", "These", "Those", "It", "Its", "He", "She", "They", "We", "I", "You", "A", "An",
         "In", "On", "At", "For", "And", "But", "Or", "If", "As", "There", "Their", "His", "Her", "Our",
         "My", "Your", "Overall", "Sentiment", "Positive", "Negative", "Neutral", "Tweet", "Image", "Author",
         "RT", "To", "Of", "With", "By", "From", "Not", "No", "Yes", "However", "Also", "So", "Some", "What",
         "Who", "Which", "When", "Where", "Why", "How", "All", "One", "Two", "Both", "Each", "Here", "Then",
         "Mr", "Mrs", "Ms", "Dr", "OK", "Is", "Are", "Was", "Were", "Be", "Has", "Have", "Had", "Do", "Does",
         "Did", "Can", "Could", "Would", "Should", "Will", "May", "Might", "Based", "Given", "Although"}


def _lower_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _contains(hay: str, phrase: list[str]) -> bool:
    """Whether the words of ``phrase`` (sigils stripped) occur in order in ``hay`` (case-insensitive)."""
    words = [w.lstrip("#@").lower() for w in phrase if w.lstrip("#@")]
    if not words:
        return False
    pat = r"(?<!\w)" + r"\W+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.search(pat, hay.lower()) is not None


def _capitalised_entities(text: str) -> list[str]:
    out = []
    for sent in _SENT_SPLIT.split(text):
        for m in _CAP.finditer(sent):
            w = m.group(1)
            if m.start() == len(sent) - len(sent.lstrip()) or w in _STOP:
                continue  # sentence-initial or a function word
            out.append(w)
    return out


def _dist(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    return {"min": v[0], "median": statistics.median(v), "p95": v[min(len(v) - 1, int(0.95 * len(v)))],
            "max": v[-1], "mean": round(statistics.fmean(v), 1)}


def _stated(rationale: str, words: list[str], level: str) -> str | None:
    if level == "aspect":
        from lrsa.rationales.published import stated_sentiment

        return stated_sentiment(rationale)
    for sent in _SENT_SPLIT.split(rationale):
        if _contains(sent, words):
            m = _POL_WORD.search(sent)
            if m:
                return _POLARITY[m.group(1).lower()]
    return None


def quality(dataset: str, source: str, data_dir: str | Path | None = None, root: str | Path | None = None,
            split: str = "dev") -> dict[str, Any]:
    from lrsa.data.registry import get, load_dataset
    from lrsa.data.side import side_inputs
    from lrsa.rationales.bundle import load_bundle, read_manifest
    from lrsa.rationales.inputs import from_example
    from lrsa.rationales.published import MISSING, aspect_key

    entry = read_manifest(dataset, root)["sources"].get(source, {})
    level = entry.get("provenance", {}).get("level", "tweet")
    bundle = load_bundle(dataset, source, root, level=level)
    examples = load_dataset(dataset, split, data_dir)
    side = side_inputs(dataset, data_dir) if get(dataset).side else {}
    parts: dict[str, dict[str, Any]] = {}
    for part in ("text", "image"):
        lengths, missing, n_gold, named_gold, n_other, named_other = [], 0, 0, 0, 0, 0
        unsupported, with_unsupported, n_rat, stated, agree, n_asp = [], 0, 0, 0, 0, 0
        seen: set[str] = set()
        for ex in examples:
            inp = from_example(ex, side)
            context = _lower_words(inp.text + " " + " ".join(inp.image_texts))
            in_aspect = {i for a in ex.aspects for i in range(a.start, a.end)}
            others = [w for i, w in enumerate(ex.words) if i not in in_aspect and i > 0 and w[:1].isupper()
                      and w.isalpha() and w not in _STOP]
            keys = [aspect_key(ex.id, a.start, a.end) for a in ex.aspects] if level == "aspect" else [ex.id]
            for key in keys:
                r = bundle.get(key)
                if r is None:
                    continue
                text = getattr(r, part)
                if key in seen:
                    continue
                seen.add(key)
                n_rat += 1
                if not text or text == MISSING:
                    missing += 1
                    continue
                lengths.append(len(text.split()))
                ents = [e for e in _capitalised_entities(text) if e.lower() not in context]
                unsupported.append(len(ents))
                with_unsupported += bool(ents)
                aspects = ex.aspects if level == "tweet" else [a for a in ex.aspects
                                                               if aspect_key(ex.id, a.start, a.end) == key]
                for a in aspects:
                    words = ex.words[a.start:a.end]
                    n_gold += 1
                    named_gold += _contains(text, words)
                    n_asp += 1
                    pol = _stated(text, words, level)
                    if pol is not None:
                        stated += 1
                        agree += pol == a.polarity
                if level == "tweet":
                    n_other += len(others)
                    named_other += sum(_contains(text, [w]) for w in others)
        present = max(1, n_rat - missing)
        parts[part] = {
            "rationales": n_rat, "missing": missing, "words": _dist(lengths),
            "names_gold_aspect": round(100 * named_gold / n_gold, 1) if n_gold else None,
            "names_other_capitalised": round(100 * named_other / n_other, 1) if n_other else None,
            "unsupported_entities": {"per_rationale": round(sum(unsupported) / present, 2),
                                     "share_with_any": round(100 * with_unsupported / present, 1)},
            "stated_sentiment": {"stated": round(100 * stated / n_asp, 1) if n_asp else None,
                                 "agrees_with_gold": round(100 * agree / stated, 1) if stated else None},
        }
    prov = entry.get("provenance", {})
    records = entry.get("records") or len(bundle)
    rep = entry.get("report") or {}
    gen_s = entry.get("generation_s")
    cost: dict[str, Any] = {"generation_s": gen_s}
    if gen_s and records:
        cost["seconds_per_1000_posts"] = round(1000 * gen_s / records, 1)
    if rep.get("completion_tokens"):
        cost["tokens_per_1000_posts"] = round(1000 * (rep.get("prompt_tokens", 0) + rep["completion_tokens"])
                                              / records)
    if prov.get("backend") == "import":
        cost["note"] = "published outputs: generation cost unknown"
    return {"dataset": dataset, "source": source, "split": split, "level": level,
            "model": prov.get("model"), "text_from": prov.get("text", prov.get("model")),
            "image_from": prov.get("image", prov.get("model")), "parts": parts, "cost": cost,
            "sha256": entry.get("sha256")}


def markdown(reports: list[dict[str, Any]]) -> str:
    """Sources side by side: one row per (source, part)."""
    lines = ["| dataset | source | part | from | words median (p95) | missing | names gold aspect % | "
             "names other capitalised % | unsupported entities / rationale | with any % | sentiment stated % | "
             "agrees with gold % | s / 1k posts |",
             "|" + "---|" * 13]
    for r in reports:
        for k, (part, p) in enumerate(r["parts"].items()):
            cost = r["cost"].get("seconds_per_1000_posts") if k == 0 else None  # once per bundle
            w = p["words"]
            frm = r["text_from"] if part == "text" else r["image_from"]
            lines.append(
                f"| {r['dataset']} | {r['source']} | {'L_t' if part == 'text' else 'L_i'} | {str(frm)[:60]} | "
                f"{w.get('median', '–')} ({w.get('p95', '–')}) | {p['missing']} | {_f(p['names_gold_aspect'])} | "
                f"{_f(p['names_other_capitalised'])} | {p['unsupported_entities']['per_rationale']} | "
                f"{p['unsupported_entities']['share_with_any']} | {_f(p['stated_sentiment']['stated'])} | "
                f"{_f(p['stated_sentiment']['agrees_with_gold'])} | "
                f"{_f(cost)} |")
    return "\n".join(lines) + "\n"


def _f(v: Any) -> str:
    return "–" if v is None else str(v)
