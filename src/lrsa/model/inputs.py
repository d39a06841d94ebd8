"""Posts -> tensors. One function serves training, evaluation and ``LRSA.predict`` (``encode_post`` for the
joint hosts, ``encode_aspect`` for the aspect host: one item per given aspect).

An ``Encoded`` holds what the network needs for one post: subword ids, each word's first subword,
casing features, and the index of its side texts (image text, rationales) in a side table of
pre-encoded states. ``collate`` pads a list of them into a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from lrsa.data.schema import POLARITIES
from lrsa.features.text import encode_words, word_features, word_pieces
from lrsa.model.generative import aspects_to_targets
from lrsa.model.span import aspects_to_tags

SIDE_KINDS = ("visual", "rat_text", "rat_image")


@dataclass
class Encoded:
    id: str
    ids: list[int]
    first: list[int]
    feats: list[list[float]]
    tags: list[int] | None = None
    targets: list[int] | None = None
    side_index: dict[str, int] = field(default_factory=dict)  # kind -> row of the side table
    aspect: tuple[int, int] | None = None  # aspect host: the given aspect's word span [start, end)
    label: int | None = None  # aspect host: index of its polarity in POLARITIES (training)


def encode_post(tokenizer: Any, id: str, words: list[str], max_tokens: int,
                aspects: list[tuple[int, int, str]] | None = None,
                side_index: dict[str, int] | None = None, pieces: list[list[int]] | None = None) -> Encoded:
    """``pieces``: the words' ``word_pieces`` when the caller has them already (e.g. ``word_windows``')."""
    ids, first = encode_words(tokenizer, words, max_tokens, pieces)
    return Encoded(id=id, ids=ids, first=first, feats=word_features(words),
                   tags=aspects_to_tags(len(words), aspects) if aspects is not None else None,
                   targets=aspects_to_targets(aspects) if aspects is not None else None,
                   side_index=dict(side_index or {}))


def word_windows(tokenizer: Any, words: list[str], max_tokens: int,
                 pieces: list[list[int]] | None = None) -> list[tuple[int, int]]:
    """Word windows ``[start, end)`` of a post, each fitting ``max_tokens`` with ``[CLS]`` and ``[SEP]``.
    A post that fits is one window; a longer one (a 200-word post) gets windows of as many words as fit,
    each starting halfway through the previous one, so that every word has context on both sides in some
    window (``owner`` picks that window). ``pieces``: as in ``encode_post``."""
    pieces = pieces if pieces is not None else word_pieces(tokenizer, words)
    sizes = [min(len(p), max_tokens - 2) for p in pieces]
    budget = max_tokens - 2
    if sum(sizes) <= budget:
        return [(0, len(words))]
    out: list[tuple[int, int]] = []
    start = 0
    while True:
        end, used = start, 0
        while end < len(words) and used + sizes[end] <= budget:
            used += sizes[end]
            end += 1
        out.append((start, end))
        if end == len(words):
            return out
        start = max(start + 1, start + (end - start) // 2)


def owner(windows: list[tuple[int, int]], word: int) -> int:
    """The window in which ``word`` is farthest from an edge (the first such window on ties)."""
    return max((i for i, (s, e) in enumerate(windows) if s <= word < e),
               key=lambda i: (min(word - windows[i][0], windows[i][1] - 1 - word), -i))


def aspect_window(tokenizer: Any, words: list[str], span: tuple[int, int], mode: str,
                  max_tokens: int, pieces: list[list[int]] | None = None) -> tuple[int, int]:
    """The word window ``[start, end)`` of a post that ``encode_aspect`` reads for the given ``span``: the
    whole post when it fits, else the widest window around the aspect that fits (grown one word at a time
    on each side in turn), so that a given aspect of a long post keeps its context. ``pieces``: as in
    ``encode_post``."""
    sizes = [len(p) for p in (pieces if pieces is not None else word_pieces(tokenizer, words))]
    s, e = span
    if mode == "pair":  # [CLS] post [SEP] aspect [SEP]
        reserve = 3 + sum(sizes[s:e])
    else:  # [CLS] ... < aspect > ... [SEP]
        reserve = 2 + sum(len(tokenizer(m, add_special_tokens=False)["input_ids"]) for m in ASPECT_MARKERS)
    budget = max_tokens - reserve
    used = sum(sizes[s:e])
    grew = True
    while grew:
        grew = False
        if s > 0 and used + sizes[s - 1] <= budget:
            s, used, grew = s - 1, used + sizes[s - 1], True
        if e < len(words) and used + sizes[e] <= budget:
            e, used, grew = e + 1, used + sizes[e], True
    return s, e


ASPECT_MARKERS = ("<", ">")


def encode_aspect(tokenizer: Any, id: str, words: list[str], span: tuple[int, int], mode: str,
                  max_tokens: int, polarity: str | None = None,
                  side_index: dict[str, int] | None = None, pieces: list[list[int]] | None = None) -> Encoded:
    """One (post, given aspect) for the aspect host. The words (and so the states the head reads) are the
    tweet's; only the subword sequence shows the aspect: ``pair`` appends ``aspect [SEP]`` as a second
    segment, ``marked`` puts ``<`` and ``>`` subwords around the aspect's pieces. ``pieces``: as in
    ``encode_post``."""
    s, e = span
    if not 0 <= s < e <= len(words):
        raise ValueError(f"{id}: aspect span {span} is outside the post's {len(words)} words")
    if mode not in ("pair", "marked"):
        raise ValueError(f"unknown aspect_input {mode!r}; known: pair, marked")
    pieces = pieces if pieces is not None else word_pieces(tokenizer, words)
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    left, right = (tokenizer(m, add_special_tokens=False)["input_ids"] for m in ASPECT_MARKERS)
    ids, first = [cls], []
    for i, p in enumerate(pieces):
        if mode == "marked" and i == s:
            ids.extend(left)
        first.append(len(ids))
        ids.extend(p)
        if mode == "marked" and i == e - 1:
            ids.extend(right)
    ids.append(sep)
    if mode == "pair":
        ids.extend(t for p in pieces[s:e] for t in p)
        ids.append(sep)
    if len(ids) > max_tokens:
        raise ValueError(f"{id}: post and aspect are {len(ids)} subword tokens, more than the model's "
                         f"max_tokens={max_tokens}")
    return Encoded(id=id, ids=ids, first=first, feats=word_features(words), side_index=dict(side_index or {}),
                   aspect=(s, e), label=POLARITIES.index(polarity) if polarity is not None else None)


def collate(items: list[Encoded], pad_id: int,
            side_tables: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, Any]:
    """Pad a batch. ``side_tables[kind] = (states [N, L, H], mask [N, L])`` indexed by side_index."""
    B = len(items)
    L = max(len(e.ids) for e in items)
    n = max(len(e.first) for e in items)
    F = len(items[0].feats[0]) if items[0].feats else 0
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    att = torch.zeros((B, L), dtype=torch.long)
    first = torch.zeros((B, n), dtype=torch.long)
    wmask = torch.zeros((B, n), dtype=torch.bool)
    feats = torch.zeros((B, n, F))
    for b, e in enumerate(items):
        ids[b, :len(e.ids)] = torch.tensor(e.ids)
        att[b, :len(e.ids)] = 1
        first[b, :len(e.first)] = torch.tensor(e.first)
        wmask[b, :len(e.first)] = True
        feats[b, :len(e.first)] = torch.tensor(e.feats)
    batch: dict[str, Any] = {"ids": [e.id for e in items], "input_ids": ids, "attention_mask": att,
                             "first": first, "word_mask": wmask, "feats": feats}
    if items[0].tags is not None:
        tags = torch.zeros((B, n), dtype=torch.long)
        for b, e in enumerate(items):
            tags[b, :len(e.tags)] = torch.tensor(e.tags)
        batch["tags"] = tags
        T = max(len(e.targets) for e in items)
        tg = torch.full((B, T), -100, dtype=torch.long)
        for b, e in enumerate(items):
            tg[b, :len(e.targets)] = torch.tensor(e.targets)
        batch["targets"] = tg
    if items[0].aspect is not None:
        batch["aspect"] = torch.tensor([e.aspect for e in items], dtype=torch.long)
        if items[0].label is not None:
            batch["label"] = torch.tensor([e.label for e in items], dtype=torch.long)
    side: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for kind, (states, mask) in (side_tables or {}).items():
        rows = [e.side_index[kind] for e in items]
        m = mask[rows]
        keep = int(m.any(0).nonzero().max()) + 1 if m.any() else 1
        st = states[rows, :keep]
        side[kind] = (st.float() if st.is_floating_point() else st, m[:, :keep])
    batch["side"] = side
    return batch


def token_table(tokenizer: Any, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded token ids for side texts encoded by the trainable backbone (side_encoder=shared); an empty
    text is an empty memory (mask row all False)."""
    enc = tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
    L = max(len(e) for e in enc)
    ids = torch.full((len(enc), L), tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros((len(enc), L), dtype=torch.bool)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = bool(texts[i].strip())
    return ids, mask


IMAGE_SIDE = ("visual", "rat_image")  # the side memories that come from the image


def drop_image_side(batch: dict[str, Any], drop: torch.Tensor | None = None) -> None:
    """Modality dropout: the rows of ``batch`` where ``drop`` ([B] bool) is True lose their image side (V and
    L_i masked empty), as a post without an image has at prediction time; ``drop=None``: every row (then
    ``batch["side"]`` may also be a split's side tables, whose V and L_i tables differ in rows for MASC)."""
    for kind in IMAGE_SIDE:
        if kind in batch.get("side", {}):
            states, mask = batch["side"][kind]
            batch["side"][kind] = (states, torch.zeros_like(mask) if drop is None else mask & ~drop[:, None])


RATIONALE_SIDE = ("rat_text", "rat_image")  # the rationale memories: L_t, L_i


def drop_rationales(batch: dict[str, Any], drop: torch.Tensor) -> None:
    """Rationale dropout: ``drop`` ([B, 2] bool; column 0 = L_t, column 1 = L_i) marks the rows of ``batch`` that
    lose that rationale part (masked empty), as a part whose writer cannot run at prediction time is; the image
    side itself (V) stays. A model that reads no L_t (``rationale_text: false``) has no ``rat_text`` to drop."""
    if drop.dim() != 2 or drop.size(1) != len(RATIONALE_SIDE):
        raise ValueError(f"drop_rationales: drop must be [batch, 2] (L_t, L_i), not {list(drop.shape)}")
    for col, kind in enumerate(RATIONALE_SIDE):
        if kind in batch.get("side", {}):
            states, mask = batch["side"][kind]
            batch["side"][kind] = (states, mask & ~drop[:, col, None])
