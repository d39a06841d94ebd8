"""Per-aspect attribution: what each decision drew on, by two methods.

Inputs a decision can draw on (``INPUTS``): ``text`` (the tweet words), ``V`` (the image side: caption or
description tokens, or pixel regions), ``L_t`` (text rationale) and ``L_i`` (image rationale). For every
aspect of a decoded batch row, ``explain`` returns:

read-out (``readout``: shares of the four inputs, summing to 1): read from the fusion module as it runs
  (``Fusion.capture``). For the aspect's words, ``text`` is the norm of their states entering fusion and each
  side input's part is the norm of the gated update it adds: ``inject_t`` -> L_t; ``t_from_v`` (dual), split
  between V and L_i by the attention mass over each visual slot times that slot's share of L_i
  (``|update of inject_v| / (|V slot| + |update|)``; without an image side the slots are L_i's tokens);
  ``single``: the update split by the attention mass over the V / L_t / L_i parts of its memory; ``visual``
  (off / concat with an image) -> V; ``concat``: its update split in proportion to the norms of the first
  linear layer's terms from pooled L_t and pooled L_i (the tweet state's own term stays out). Averaged over
  the aspect's words, normalised.
intervention (``intervention``: one ``{"prob", "change", "polarity_flip", "span_flip"}`` per input): one input
  removed at a time, the row re-scored. A side input is removed by masking its memory empty (what the model
  sees for an empty text: ``FrozenTextEncoder.encode`` and ``token_table`` mask a blank text out; a post
  without a photo for pixels); ``text`` by replacing every subword of the words outside the aspect with the
  tokenizer's mask token (their casing features zeroed; special tokens and aspect markers kept; the aspect
  keeps its words). ``prob`` is the aspect's probability of its predicted polarity on its span after the
  removal, ``change`` = before - after (positive: the input supported the decision), ``polarity_flip``: the
  most probable polarity on the span differs, ``span_flip``: decoding the changed row no longer yields this
  span with any polarity (always False for the aspect host, whose spans are given). The probability of a
  polarity on a span (``polarity_probs``): span host, softmax over the three polarities of
  ``log p(B-X at s) + sum log p(I-X at s+1..e-1)`` (what ``SpanHead.classify`` maximises); aspect host, its
  softmax; generative host, the softmax over the polarity tokens after the forced pointers ``s, e-1``.
  Deltas are measured against the unchanged row scored in the same forward pass.
tokens (``tokens``: for ``L_t`` and ``L_i``, the ``top_k`` words by read-out attention mass, each with its
  character span in the rationale text): mass = mean over the aspect's words of the attention on the word's
  subword tokens (L_i in dual with an image side: two hops, aspect -> V slot -> L_i token); the first ``loo``
  of them also get ``effect``: the change when that word's tokens alone are masked out of the memory (the
  other tokens' states, encoded in context, keep what they know of it). ``concat`` reads pooled rationales:
  no per-token mass, no tokens.

An input the model cannot see gets exactly 0 in both methods and no tokens: one its configuration does not
read (V of a text-only model, L_t with ``rationale_text`` off, both rationales with fusion off), one empty for
this row, and L_i of dual fusion with an image side when V is empty (L_i reaches the text only through the
visual slots). ``shares`` is what a user is shown: the read-out shares, or (``method="intervention"``) each
input's positive ``change`` over their sum (all 0 when no removal lowers the probability).

Cost: one capturing forward over the batch, then per row one forward over ``1 + inputs + aspects x (1 +
2 x loo)`` variant rows. Nothing here runs unless asked for; ``Fusion.capture`` is reset after use.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from lrsa.data.schema import POLARITIES
from lrsa.model.inputs import ASPECT_MARKERS

INPUTS = ("text", "V", "L_t", "L_i")
SIDE_KIND = {"V": "visual", "L_t": "rat_text", "L_i": "rat_image"}
METHODS = ("readout", "intervention")


# --------------------------------------------------------------------------- side-text words


@dataclass
class SideText:
    """The words of one side text as its memory holds them: ``token_word[i]`` is the word of memory token ``i``
    (None for special tokens), ``words[w] = (surface, char_start, char_end)`` in ``text``."""

    text: str
    words: list[tuple[str, int, int]]
    token_word: list[int | None]


def side_text(tokenizer: Any, text: str, max_tokens: int) -> SideText:
    """Align a side text with its memory tokens (the same truncation as ``FrozenTextEncoder`` / ``token_table``)."""
    enc = tokenizer(text, truncation=True, max_length=max_tokens, return_offsets_mapping=True)
    wids = enc.word_ids()
    spans: dict[int, list[int]] = {}
    for wid, (a, b) in zip(wids, enc["offset_mapping"]):
        if wid is not None:
            sp = spans.setdefault(wid, [a, b])
            sp[0], sp[1] = min(sp[0], a), max(sp[1], b)
    order = sorted(spans)
    index = {w: i for i, w in enumerate(order)}
    words = [(text[spans[w][0]:spans[w][1]], spans[w][0], spans[w][1]) for w in order]
    return SideText(text, words, [None if w is None else index[w] for w in wids])


# --------------------------------------------------------------------------- scoring


def visible(net: Any, batch: dict[str, Any], row: int) -> dict[str, bool]:
    """Which inputs the model can see for ``row`` of ``batch`` (module doc)."""
    cfg = net.cfg
    side = batch["side"]

    def present(kind: str) -> bool:
        return kind in side and kind in net.side_proj and bool(side[kind][1][row].any())

    v = cfg.uses_image and present("visual")
    rat = cfg.fusion != "off"
    li = rat and present("rat_image") and (v or not (cfg.fusion == "dual" and cfg.uses_image))
    return {"text": True, "V": v, "L_t": rat and cfg.rationale_text and present("rat_text"), "L_i": li}


def polarity_probs(net: Any, batch: dict[str, Any], t: torch.Tensor, v: Any,
                   spans: list[list[tuple[int, int]]]) -> list[list[torch.Tensor]]:
    """``[row][aspect] -> [3]`` probabilities of ``POLARITIES`` on each given span (module doc)."""
    cfg, head = net.cfg, net.head
    out: list[list[torch.Tensor]] = []
    if cfg.host == "span":
        logp = torch.log_softmax(head.proj(t).float(), dim=-1)
        for b, row in enumerate(spans):
            out.append([torch.softmax(torch.stack([logp[b, s, 1 + 2 * k] + logp[b, s + 1:e, 2 + 2 * k].sum()
                                                   for k in range(3)]), dim=0) for s, e in row])
        return out
    if cfg.host == "aspect":
        prob = torch.softmax(head.logits(t, batch["word_mask"], batch["aspect"]).float(), dim=-1)
        return [[prob[b]] * len(row) for b, row in enumerate(spans)]
    from lrsa.model.generative import NSPECIAL

    mem, mmask = net._memory(t, batch["word_mask"], v)
    for b, row in enumerate(spans):
        if not row:
            out.append([])
            continue
        prev = torch.tensor([[-1, NSPECIAL + s, NSPECIAL + e - 1] for s, e in row], device=t.device)
        k = len(row)
        logits = head._logits(prev, t[b:b + 1].expand(k, -1, -1), batch["word_mask"][b:b + 1].expand(k, -1),
                              mem[b:b + 1].expand(k, -1, -1), mmask[b:b + 1].expand(k, -1))
        prob = torch.softmax(logits[:, -1, 1:NSPECIAL].float(), dim=-1)
        out.append([prob[i] for i in range(k)])
    return out


def _forward(net: Any, batch: dict[str, Any], spans: list[list[tuple[int, int]]], capture: bool = False,
             decode: bool = False) -> tuple[list[list[torch.Tensor]], Any, dict | None]:
    """(polarity probabilities on ``spans``, decoded aspects or None, read-out or None) of one batch."""
    batch = net.to_device(batch)
    with torch.no_grad(), net._autocast():
        net.fusion.capture = {} if capture else None
        try:
            t, v = net.fused(batch)
        finally:
            cap, net.fusion.capture = net.fusion.capture, None
        probs = polarity_probs(net, batch, t, v, spans)
        decoded = net.decode_states(batch, t, v) if decode else None
    return probs, decoded, cap


def take(batch: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """A new batch of the given rows (repeats allowed), its tensors copied so that they can be changed; the
    cached lower-layer states (training) are dropped: the live encoder reads the (possibly masked) ids."""
    idx = torch.tensor(rows, dtype=torch.long)
    out: dict[str, Any] = {}
    for k, val in batch.items():
        if k == "side":
            out[k] = {kind: (s[idx.to(s.device)], m[idx.to(m.device)].clone()) for kind, (s, m) in val.items()
                      if kind != "lower"}
        elif k == "ids":
            out[k] = [val[r] for r in rows]
        elif torch.is_tensor(val) and val.dim() > 0 and val.size(0) == len(batch["ids"]):
            out[k] = val[idx.to(val.device)].clone()
        else:
            out[k] = val
    return out


class _TextMasker:
    """Replaces the subwords of the words outside an aspect with the mask token (module doc)."""

    def __init__(self, tokenizer: Any):
        self.mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
        self.special = set(tokenizer.all_special_ids)
        markers = {i for m in ASPECT_MARKERS for i in tokenizer(m, add_special_tokens=False)["input_ids"]}
        self.keep = self.special | markers

    def __call__(self, batch: dict[str, Any], b: int, span: tuple[int, int]) -> None:
        ids, first = batch["input_ids"][b], batch["first"][b].tolist()
        n = int(batch["word_mask"][b].sum())
        s, e = span
        for w in range(n):
            if s <= w < e:
                continue
            lo = first[w]
            if w + 1 < n:
                hi = first[w + 1]
            else:
                hi = lo + 1
                while hi < ids.numel() and int(ids[hi]) not in self.special:
                    hi += 1
            for p in range(lo, hi):
                if int(ids[p]) not in self.keep:
                    ids[p] = self.mask_id
            batch["feats"][b, w] = 0.0


# --------------------------------------------------------------------------- read-out


def _readout(cap: dict, b: int, s: int, e: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Shares of the four inputs for words ``s..e-1`` of row ``b``, and the attention mass over each side
    memory's tokens (module doc)."""
    k = e - s
    zero = torch.zeros(k)
    u = {"V": zero.clone(), "L_t": zero.clone(), "L_i": zero.clone()}
    mass: dict[str, torch.Tensor] = {}
    if "visual" in cap:
        u["V"] += cap["visual"]["update"][b, s:e].cpu()
        mass["V"] = cap["visual"]["attn"][b, s:e].mean(0).cpu()
    if "concat" in cap:
        c = {n: x.cpu() for n, x in cap["concat"].items()}
        rat = c["lt"][b] + c["li"][b]
        if float(rat) > 0:
            u["L_t"] += c["update"][b, s:e] * c["lt"][b] / rat
            u["L_i"] += c["update"][b, s:e] * c["li"][b] / rat
    if "single" in cap:
        att, upd = cap["single"]["attn"][b, s:e].cpu(), cap["single"]["update"][b, s:e].cpu()
        off = 0
        for name, length in cap["segments"]:
            m = att[:, off:off + length]
            u[name] += upd * m.sum(-1)
            mass[name] = m.mean(0)
            off += length
    if "inject_t" in cap:
        u["L_t"] += cap["inject_t"]["update"][b, s:e].cpu()
        mass["L_t"] = cap["inject_t"]["attn"][b, s:e].mean(0).cpu()
    if "t_from_v" in cap:
        att, upd = cap["t_from_v"]["attn"][b, s:e].cpu(), cap["t_from_v"]["update"][b, s:e].cpu()
        if "inject_v" in cap:
            iv = {n: x[b].cpu() for n, x in cap["inject_v"].items()}
            rho = iv["update"] / (iv["query"] + iv["update"]).clamp(min=1e-12)
            u["L_i"] += upd * (att @ rho)
            u["V"] += upd * (att @ (1 - rho))
            mass["V"] = att.mean(0)
            mass["L_i"] = (att @ iv["attn"]).mean(0)
        else:
            u["L_i"] += upd * att.sum(-1)
            mass["L_i"] = att.mean(0)
    score = {"text": float(cap["text_norm"][b, s:e].cpu().mean()), **{n: float(x.mean()) for n, x in u.items()}}
    total = sum(score.values())
    return {n: (score[n] / total if total > 0 else 0.0) for n in INPUTS}, mass


def _top_words(mass: torch.Tensor, st: SideText, top_k: int) -> list[tuple[int, float]]:
    """``(word index, mass)`` of the ``top_k`` words of a side text by attention mass (summed over its tokens)."""
    per = [0.0] * len(st.words)
    for i, w in enumerate(st.token_word):
        if w is not None and i < mass.numel():
            per[w] += float(mass[i])
    ranked = sorted(range(len(per)), key=lambda w: -per[w])
    return [(w, per[w]) for w in ranked[:top_k] if per[w] > 0]


# --------------------------------------------------------------------------- explain


def shares_of(attr: dict[str, Any]) -> dict[str, float]:
    """What a user is shown for the attribution's ``method`` (module doc)."""
    if attr["method"] == "readout":
        return dict(attr["readout"])
    pos = {n: max(0.0, attr["intervention"][n]["change"]) for n in INPUTS}
    total = sum(pos.values())
    return {n: (pos[n] / total if total > 0 else 0.0) for n in INPUTS}


def explain(net: Any, batch: dict[str, Any], decoded: list[list[tuple[int, int, str, float]]], tokenizer: Any,
            side_texts: dict[str, list[SideText]] | None = None, method: str = "intervention",
            top_k: int = 5, loo: int = 3) -> list[list[dict[str, Any]]]:
    """Attribution of every decoded aspect: ``[row][aspect] -> dict`` with ``method``, ``prob``, ``readout``,
    ``intervention``, ``shares`` and ``tokens`` (module doc). ``decoded``: ``net.decode(batch)`` for the same
    batch (window coordinates); ``tokenizer``: the tweet tokenizer (its mask token removes words);
    ``side_texts[kind][row]``: the row's L_t / L_i aligned with their memory tokens (``side_text``), for the
    token lists (no tokens without them)."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    masker = _TextMasker(tokenizer)
    batch = {**batch, "side": {k: v for k, v in batch["side"].items() if k != "lower"}}
    spans = [[(s, e) for s, e, _, _ in row] for row in decoded]
    _, _, cap = _forward(net, batch, spans, capture=True)
    out: list[list[dict[str, Any]]] = []
    for b, row in enumerate(decoded):
        if not row:
            out.append([])
            continue
        vis = visible(net, batch, b)
        attrs = []
        # variant rows: 0 = unchanged, then one per visible side input, then per aspect: text, token removals
        plan: list[tuple[int | None, str, Any]] = [(None, "base", None)]
        plan += [(None, n, None) for n in ("V", "L_t", "L_i") if vis[n]]
        tok_plan: dict[int, dict[str, list[tuple[int, float]]]] = {}
        for a, (s, e, pol, _conf) in enumerate(row):
            plan.append((a, "text", None))
            _, mass = _readout(cap, b, s, e)
            tok_plan[a] = {}
            for name in ("L_t", "L_i"):
                st = (side_texts or {}).get(SIDE_KIND[name])
                if not vis[name] or st is None or name not in mass:
                    continue
                top = _top_words(mass[name], st[b], top_k)
                tok_plan[a][name] = top
                plan += [(a, f"token:{name}", w) for w, _ in top[:loo]]
        var = take(batch, [b] * len(plan))
        for r, (a, what, w) in enumerate(plan):
            if what in SIDE_KIND:
                var["side"][SIDE_KIND[what]][1][r] = False
            elif what == "text":
                masker(var, r, row[a][:2])
            elif what.startswith("token:"):
                name = what.split(":", 1)[1]
                kind = SIDE_KIND[name]
                tw = side_texts[kind][b].token_word
                m = var["side"][kind][1]
                for i, wi in enumerate(tw):
                    if wi == w and i < m.size(1):
                        m[r, i] = False
        var_spans = [[(s, e) for s, e, _, _ in row]] * len(plan)
        probs, dec, _ = _forward(net, var, var_spans, decode=True)

        def effect(r: int, a: int) -> dict[str, Any]:
            k = POLARITIES.index(row[a][2])
            before, after = float(probs[0][a][k]), float(probs[r][a][k])
            kept = net.cfg.host == "aspect" or any((s, e) == row[a][:2] for s, e, _, _ in dec[r])
            return {"prob": after, "change": before - after,
                    "polarity_flip": int(probs[r][a].argmax()) != k, "span_flip": not kept}

        for a, (s, e, pol, _conf) in enumerate(row):
            k = POLARITIES.index(pol)
            readout, _ = _readout(cap, b, s, e)
            inter = {}
            for name in INPUTS:
                r = next((i for i, (pa, wh, _) in enumerate(plan) if wh == name and pa in (None, a)), None)
                inter[name] = effect(r, a) if r is not None else {"prob": float(probs[0][a][k]), "change": 0.0,
                                                                  "polarity_flip": False, "span_flip": False}
            tokens: dict[str, list[dict[str, Any]]] = {}
            for name, top in tok_plan[a].items():
                st = side_texts[SIDE_KIND[name]][b]
                lst = []
                for w, m in top:
                    r = next((i for i, (pa, wh, ww) in enumerate(plan) if pa == a and wh == f"token:{name}"
                              and ww == w), None)
                    surface, cs, ce = st.words[w]
                    lst.append({"token": surface, "start": cs, "end": ce, "mass": m,
                                "effect": effect(r, a)["change"] if r is not None else None})
                tokens[name] = lst
            attr = {"method": method, "prob": float(probs[0][a][k]), "readout": readout, "intervention": inter,
                    "tokens": tokens}
            attr["shares"] = shares_of(attr)
            attrs.append(attr)
        out.append(attrs)
    return out


def remove(net: Any, batch: dict[str, Any], row: int, names: str | tuple[str, ...] | list[str], tokenizer: Any,
           span: tuple[int, int] | None = None) -> dict[str, Any]:
    """A one-row batch: ``row`` of ``batch`` with the input(s) ``names`` removed as ``explain``'s intervention
    removes them (``span``: the aspect, for ``text``). For benchmarks and tests that score removals themselves
    (e.g. two inputs at once)."""
    var = take({**batch, "side": {k: v for k, v in batch["side"].items() if k != "lower"}}, [row])
    for name in ([names] if isinstance(names, str) else names):
        if name in SIDE_KIND:
            if SIDE_KIND[name] in var["side"]:
                var["side"][SIDE_KIND[name]][1][0] = False
        elif name == "text":
            _TextMasker(tokenizer)(var, 0, span)
        else:
            raise ValueError(f"unknown input {name!r}; known: {', '.join(INPUTS)}")
    return var


def stack(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch of the rows of several batches cut from the same batch (``take`` / ``remove``: equal widths)."""
    out: dict[str, Any] = {}
    for k, val in batches[0].items():
        if k == "side":
            out[k] = {kind: (torch.cat([b[k][kind][0] for b in batches]), torch.cat([b[k][kind][1] for b in batches]))
                      for kind in val}
        elif k == "ids":
            out[k] = [i for b in batches for i in b[k]]
        elif torch.is_tensor(val) and val.dim() > 0:
            out[k] = torch.cat([b[k] for b in batches])
        else:
            out[k] = val
    return out


def score(net: Any, batch: dict[str, Any], spans: list[list[tuple[int, int]]]
          ) -> tuple[list[list[torch.Tensor]], list[list[tuple[int, int, str, float]]]]:
    """Polarity probabilities on ``spans`` and the decoded aspects of a batch (no read-out)."""
    probs, dec, _ = _forward(net, batch, spans, decode=True)
    return probs, dec


def rank(values: dict[str, float], among: list[str]) -> list[str]:
    """Inputs of ``among`` from the largest value to the smallest (ties: ``INPUTS`` order)."""
    return sorted(among, key=lambda n: (-values[n], INPUTS.index(n)))


def random_input(among: list[str], rng: random.Random) -> str:
    return among[rng.randrange(len(among))]


NAMES = {"text": "tweet words", "V": "image", "L_t": "text rationale (L_t)", "L_i": "image rationale (L_i)"}


def describe(attr: dict[str, Any]) -> list[str]:
    """An attribution in a few lines of plain text (``lrsa predict --explain``)."""
    shares = ", ".join(f"{NAMES[n]} {100 * attr['shares'][n]:.0f}%" for n in INPUTS if attr["shares"][n] > 0)
    how = "removing each input" if attr["method"] == "intervention" else "read from the fusion gates"
    lines = [f"leaned on ({how}): {shares or 'no single input moved it'}"]
    parts = []
    for n in INPUTS:
        e = attr["intervention"][n]
        flips = [w for w, f in (("polarity flips", e["polarity_flip"]), ("span lost", e["span_flip"])) if f]
        parts.append(f"{n} {e['prob']:.2f}" + (f" ({', '.join(flips)})" if flips else ""))
    lines.append(f"probability of this polarity {attr['prob']:.2f}; without " + ", ".join(parts))
    lines.append("read-out shares: " + ", ".join(f"{n} {attr['readout'][n]:.2f}" for n in INPUTS))
    for n in ("L_t", "L_i"):
        toks = attr.get("tokens", {}).get(n) or []
        if toks:
            lines.append(f"{n} words that mattered: " + ", ".join(
                f"{t['token']!r} (attention {100 * t['mass']:.0f}%"
                + (f", removing it {-t['effect']:+.3f}" if t.get("effect") is not None else "") + ")" for t in toks))
    return lines
