"""Output checks for LLM rationales: strip chat artefacts, cap the length, flag empty/refusal/garbage."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_ARTEFACTS = [
    re.compile(r"<\|[^|>]*\|>"),  # <|im_end|>, <|eot_id|>, <|endoftext|>
    re.compile(r"</?s>|\[/?INST\]|<\/?(?:assistant|user|system)>", re.I),
    re.compile(r"^\s*(?:assistant|model)\s*\n", re.I),  # a role name left on its own line
    re.compile(r"^\s*(?:assistant|answer|explanation|description|rationale)\s*:\s*", re.I),
    re.compile(r"^\s*(?:sure|certainly|of course)[,!.]?\s+(?:here(?:'s| is)[^:\n]*:\s*)?", re.I),
]
_REFUSAL = re.compile(
    r"\b(?:I(?:'m| am) (?:sorry|unable|not able)|I can(?:no|')t (?:help|assist|provide|comply|do that)"
    r"|as an AI(?: language model)?|I (?:cannot|can't) (?:see|view|access) (?:the |any )?image)", re.I)

FLAGS = ("empty", "refusal", "garbage")


def count_tokens(text: str) -> int:
    """Regex word/punctuation tokens: a tokenizer-free length measure (~1.3 subword tokens each)."""
    return len(_TOKEN.findall(text))


def strip_artefacts(text: str) -> str:
    text = text.replace("\r\n", "\n")
    for pat in _ARTEFACTS:
        text = pat.sub("", text)
    text = re.sub(r"^\s*```\w*\s*|\s*```\s*$", "", text)
    text = re.sub(r"[*#]{1,3}\s*", lambda m: "" if m.group(0).strip() in {"**", "*", "##", "#", "###"} else m.group(0), text)
    return " ".join(text.split())


def cap_tokens(text: str, max_tokens: int) -> str:
    """Keep at most ``max_tokens`` regex tokens, cutting at the last full sentence when one fits."""
    if max_tokens <= 0:
        return text
    matches = list(_TOKEN.finditer(text))
    if len(matches) <= max_tokens:
        return text
    cut = text[: matches[max_tokens - 1].end()]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if end >= len(cut) // 2:
        return cut[: end + 1]
    return cut


def is_garbage(text: str) -> bool:
    toks = _TOKEN.findall(text)
    if not toks:
        return True
    words = [t.lower() for t in toks if t.isalpha()]
    if len(words) < 3 or sum(len(w) for w in words) < 0.4 * len(text.replace(" ", "")):
        return True  # mostly symbols / numbers / too short to say anything
    if len(words) >= 12 and len(set(words)) / len(words) < 0.25:
        return True  # degenerate repetition
    return False


def check(text: str | None, max_tokens: int = 160) -> tuple[str, str | None]:
    """Clean one output; return ``(cleaned, flag)`` with flag in FLAGS or None when it is usable."""
    cleaned = strip_artefacts(text or "")
    if not cleaned:
        return "", "empty"
    if _REFUSAL.search(cleaned[:300]):
        return cap_tokens(cleaned, max_tokens), "refusal"
    cleaned = cap_tokens(cleaned, max_tokens)
    if is_garbage(cleaned):
        return cleaned, "garbage"
    return cleaned, None
