"""Host 1: aspect span tagging with sentiment.

Each word gets one of ``O, B-POS, I-POS, B-NEU, I-NEU, B-NEG, I-NEG`` from its (fused) first-subword
state. Decoding is a constrained Viterbi over the per-word log-probabilities: ``I-X`` only after
``B-X`` or ``I-X``, so every decoded span is well formed and carries exactly one polarity. The
confidence of a span is the geometric mean of its tags' probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from lrsa.data.schema import POLARITIES

TAGS = ("O", "B-POS", "I-POS", "B-NEU", "I-NEU", "B-NEG", "I-NEG")
NT = len(TAGS)


def aspects_to_tags(n_words: int, aspects: list[tuple[int, int, str]]) -> list[int]:
    tags = [0] * n_words
    for s, e, pol in aspects:
        k = POLARITIES.index(pol)
        tags[s] = 1 + 2 * k
        for i in range(s + 1, e):
            tags[i] = 2 + 2 * k
    return tags


def _allowed() -> torch.Tensor:
    """allowed[prev, cur]: may tag ``cur`` follow tag ``prev``?"""
    a = torch.ones(NT, NT, dtype=torch.bool)
    for k in range(3):
        inside = 2 + 2 * k
        a[:, inside] = False
        a[1 + 2 * k, inside] = True
        a[inside, inside] = True
    return a


ALLOWED = _allowed()
START_ALLOWED = torch.tensor([not t.startswith("I-") for t in TAGS])


class SpanHead(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, NT))

    def loss(self, words: torch.Tensor, word_mask: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        logits = self.proj(words)
        return nn.functional.cross_entropy(logits[word_mask], tags[word_mask])

    @torch.no_grad()
    def decode(self, words: torch.Tensor, word_mask: torch.Tensor) -> list[list[tuple[int, int, str, float]]]:
        logp = torch.log_softmax(self.proj(words).float(), dim=-1)
        paths = viterbi(logp, word_mask)
        out = []
        for b, path in enumerate(paths):
            out.append(tags_to_aspects(path, logp[b]))
        return out


    @torch.no_grad()
    def classify(self, words: torch.Tensor, spans: list[list[tuple[int, int]]]) -> list[list[str]]:
        """MASC on given spans: the polarity whose B-X, I-X... tags score the span best."""
        logp = torch.log_softmax(self.proj(words).float(), dim=-1)
        out = []
        for b, row in enumerate(spans):
            pols = []
            for s, e in row:
                sc = [logp[b, s, 1 + 2 * k] + logp[b, s + 1:e, 2 + 2 * k].sum() for k in range(3)]
                pols.append(POLARITIES[int(torch.stack(sc).argmax())])
            out.append(pols)
        return out


def viterbi(logp: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Best tag path per row under the BIO constraints; ``logp`` is [B, n, T]."""
    B, n, _ = logp.shape
    neg = torch.tensor(-1e9)
    trans = torch.where(ALLOWED, torch.tensor(0.0), neg)  # [prev, cur]
    score = torch.where(START_ALLOWED, logp[:, 0], neg)
    back = []
    for i in range(1, n):
        cand = score.unsqueeze(2) + trans.unsqueeze(0)  # [B, prev, cur]
        best, arg = cand.max(dim=1)
        new = best + logp[:, i]
        keep = mask[:, i].unsqueeze(1)
        score = torch.where(keep, new, score)
        back.append(torch.where(keep, arg, torch.arange(NT).expand(B, NT)))
    lengths = mask.sum(1).tolist()
    paths = []
    last = score.argmax(dim=1).tolist()
    for b in range(B):
        L = int(lengths[b])
        tag = last[b]
        path = [tag]
        for i in range(L - 1, 0, -1):
            tag = int(back[i - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


def tags_to_aspects(path: list[int], logp: torch.Tensor) -> list[tuple[int, int, str, float]]:
    out = []
    i = 0
    while i < len(path):
        t = path[i]
        if t % 2 == 1:  # B-X
            k = (t - 1) // 2
            j = i + 1
            while j < len(path) and path[j] == 2 + 2 * k:
                j += 1
            conf = float(torch.exp(torch.stack([logp[w, path[w]] for w in range(i, j)]).mean()))
            out.append((i, j, POLARITIES[k], conf))
            i = j
        else:
            i += 1
    return out
