"""The lexicon backend's rationales: deterministic, instant, offline.

L_t is written from VADER sentiment cues (overall compound score, the positive and negative words, negations,
emphasis), emoji names, hashtags (camel case split) and mentions. L_i is the image-side text (an image
description, or captions deduplicated and joined) preceded by the words the image and the tweet share.
Only the post text and the image-side texts are read: a ``RationaleInput`` has no aspects or labels.
The phrasing lives in ``prompts/lexicon_<version>.json``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from string import Template

from lrsa.rationales.inputs import RationaleInput
from lrsa.rationales.prompts import DEFAULT_VERSION, lexicon_phrases

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_HASHTAG = re.compile(r"#(\w+)")
_MENTION = re.compile(r"@(\w+)")
_RETWEET = re.compile(r"^\s*RT\s+@(\w+)")
_URL = re.compile(r"https?://\S+|\bwww\.\S+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
NEGATIONS = frozenset({"not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "cannot",
                       "can't", "won't", "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't",
                       "weren't", "shouldn't", "wouldn't", "couldn't", "ain't", "without"})
STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been being
this that these those it its it's he she they them his her their we our you your i me my mine us
there here what which who whom whose when where why how all any both each few more most other some such
only own same so than too very can will just should now do does did doing have has had having not no
into over under up down out off again further then once about against between through during before after
above below rt via amp new one two get got like also would could may might must shall image photo picture
shows showing shown seen appears appear looks look man woman person people men women group some front""".split())


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def _fmt(template: str, **values: str) -> str:
    return Template(template).substitute(values)


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _split_hashtag(tag: str) -> str:
    parts = _CAMEL.findall(tag)
    return " ".join(parts) if len(parts) > 1 else ""


def _emoji_names(text: str) -> list[str]:
    import emoji

    names = []
    for item in emoji.emoji_list(text):
        name = emoji.demojize(item["emoji"], delimiters=("", "")).replace("_", " ").strip()
        if name and name not in names:
            names.append(name)
    return names


def explain_text(inp: RationaleInput, version: str = DEFAULT_VERSION) -> str:
    """L_t from lexicon cues."""
    P, _ = lexicon_phrases(version)
    text = inp.text
    sia = _analyzer()
    compound = sia.polarity_scores(text)["compound"]
    tone = ("strong_positive" if compound >= 0.5 else "positive" if compound >= 0.05 else
            "strong_negative" if compound <= -0.5 else "negative" if compound <= -0.05 else "neutral")
    out = [_fmt(P["tone"][tone], compound=f"{compound:+.2f}")]

    body = _URL.sub(" ", text)
    words = [w for w in _WORD.findall(_MENTION.sub(" ", body))]
    pos, neg, negs, seen = [], [], [], set()
    for w in words:
        lw = w.lower()
        if lw in seen:
            continue
        seen.add(lw)
        if lw in NEGATIONS:
            negs.append(lw)
        val = sia.lexicon.get(lw)
        if val is None:
            continue
        if val >= 1.0:
            pos.append(lw)
        elif val <= -1.0:
            neg.append(lw)
    if pos:
        out.append(_fmt(P["positive_words"], words=_join(pos[:8])))
    if neg:
        out.append(_fmt(P["negative_words"], words=_join(neg[:8])))
    if not pos and not neg:
        out.append(P["no_cue_words"])
    if negs:
        out.append(_fmt(P["negation"], words=_join(negs[:4])))
    emphasis = []
    if "!" in text:
        emphasis.append("exclamation marks")
    if any(len(w) >= 3 and w.isupper() and w.isalpha() and w not in {"RT"} for w in words):
        emphasis.append("capital letters")
    if emphasis:
        out.append(_fmt(P["emphasis"], what=_join(emphasis)))

    rt = _RETWEET.match(text)
    if rt:
        out.append(_fmt(P["retweet"], user="@" + rt.group(1)))
    mentions = []
    for m in _MENTION.findall(text):
        if (not rt or m != rt.group(1)) and "@" + m not in mentions:
            mentions.append("@" + m)
    if mentions:
        out.append(_fmt(P["mentions"], users=_join(mentions[:6])))
    tags = []
    for t in _HASHTAG.findall(text):
        spelled = _split_hashtag(t)
        entry = f"#{t} ({spelled})" if spelled else f"#{t}"
        if entry not in tags:
            tags.append(entry)
    if tags:
        out.append(_fmt(P["hashtags"], tags=_join(tags[:6])))
    names = _emoji_names(text)
    if names:
        out.append(_fmt(P["emoji"], names=_join(names[:6])))
    if _URL.search(text):
        out.append(P["link"])
    return " ".join(s for s in out if s)


def _content_words(text: str) -> dict[str, str]:
    """lower-cased stem -> first surface form, for content words of 3+ letters."""
    out: dict[str, str] = {}
    for w in _WORD.findall(text):
        lw = w.lower().strip("'-")
        if len(lw) < 3 or lw in STOPWORDS:
            continue
        stem = lw[:-1] if lw.endswith("s") and not lw.endswith("ss") and len(lw) > 3 else lw
        out.setdefault(stem, lw)
    return out


def describe_image(inp: RationaleInput, version: str = DEFAULT_VERSION) -> str:
    """L_i from the image-side texts: shared words first, then the description or the joined captions."""
    P, _ = lexicon_phrases(version)
    if not inp.image_texts:
        return P["no_image"]
    joined = " ".join(inp.image_texts)
    tweet_words = _content_words(_MENTION.sub(" ", _URL.sub(" ", inp.text)))
    image_words = _content_words(joined)
    shared = [tweet_words[s] for s in tweet_words if s in image_words]
    out = [_fmt(P["image_relation"], words=_join(shared[:8])) if shared else P["image_no_relation"]]
    if not P.get("restate_image_texts", True):  # v2: V holds the image texts; L_i adds only the relation
        return out[0]
    if inp.image_source and "description" in inp.image_source:
        out.append(_fmt(P["image_description"], description=joined.strip()))
    else:
        caps = [c.strip().rstrip(".") for c in inp.image_texts]
        out.append(_fmt(P["image_shows"], captions="; ".join(caps)))
    return " ".join(s for s in out if s)
