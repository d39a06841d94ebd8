"""Host 2: index-pointer generation (BARTABSA / VLP-MABSA style) with constrained decoding.

The decoder emits ``s_1 e_1 p_1 s_2 e_2 p_2 ... EOS``: start and end (inclusive) word pointers, then
a polarity token. With an encoder-only backbone (MiniLM, MPNet) it is a small transformer decoder
trained from scratch over the fused tweet states. Output classes: 0 = EOS, 1..3 = POS/NEU/NEG,
4 + i = word i. Pointer logits are dot products with the word states, so pointers can only ever
name tweet words (never rationale or caption tokens).

Constrained decoding guarantees well-formed output: a start pointer or EOS at triple position 0
(EOS only there), an end pointer ``e >= s`` with no word of ``[s, e]`` inside an emitted span at
position 1 (so no duplicate or overlapping spans), a polarity at position 2, at most
``max_aspects`` triples. Greedy (beam=1) or beam search.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lrsa.data.schema import POLARITIES

EOS, NSPECIAL = 0, 4
MAX_SPAN = 12


def aspects_to_targets(aspects: list[tuple[int, int, str]]) -> list[int]:
    seq = []
    for s, e, pol in sorted(aspects):
        seq += [NSPECIAL + s, NSPECIAL + e - 1, 1 + POLARITIES.index(pol)]
    return seq + [EOS]


class PointerDecoder(nn.Module):
    def __init__(self, dim: int, heads: int, layers: int, ffn: int, dropout: float, max_aspects: int):
        super().__init__()
        self.max_aspects = max_aspects
        self.bos = nn.Parameter(torch.randn(dim) * 0.02)
        self.pol_emb = nn.Embedding(3, dim)
        self.pos_emb = nn.Embedding(3 * max_aspects + 2, dim)
        self.role_emb = nn.Embedding(3, dim)  # start / end / polarity slot of the next token
        layer = nn.TransformerDecoderLayer(dim, heads, ffn, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.special = nn.Linear(dim, NSPECIAL)
        self.ptr_q = nn.Linear(dim, dim)
        self.ptr_k = nn.Linear(dim, dim)

    def _embed(self, prev: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """prev [B, T] of output classes (-1 = BOS) -> decoder input embeddings [B, T, H]."""
        B, T = prev.shape
        emb = self.bos.expand(B, T, -1).clone()
        is_pol = (prev >= 1) & (prev < NSPECIAL)
        is_ptr = prev >= NSPECIAL
        if is_pol.any():
            emb[is_pol] = self.pol_emb(prev[is_pol] - 1)
        if is_ptr.any():
            idx = (prev - NSPECIAL).clamp(min=0)
            gathered = torch.gather(words, 1, idx.unsqueeze(-1).expand(-1, -1, words.size(-1)))
            emb[is_ptr] = gathered[is_ptr]
        pos = torch.arange(T, device=prev.device).clamp(max=self.pos_emb.num_embeddings - 1)
        role = torch.arange(T, device=prev.device) % 3
        return emb + self.pos_emb(pos) + self.role_emb(role)

    def _logits(self, prev: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        x = self._embed(prev, words)
        T = x.size(1)
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        h = self.norm(self.decoder(x, memory, tgt_mask=causal, memory_key_padding_mask=~memory_mask))
        special = self.special(h)
        ptr = torch.einsum("btd,bnd->btn", self.ptr_q(h), self.ptr_k(words)) / math.sqrt(h.size(-1))
        ptr = ptr.masked_fill(~word_mask.unsqueeze(1), -1e9)
        return torch.cat([special, ptr], dim=-1)

    def loss(self, words, word_mask, memory, memory_mask, targets: torch.Tensor) -> torch.Tensor:
        """targets [B, T] output classes, -100 = padding."""
        prev = torch.cat([torch.full_like(targets[:, :1], -1), targets[:, :-1]], dim=1).clamp(min=-1)
        prev = torch.where(targets == -100, torch.zeros_like(prev), prev)
        prev[:, 0] = -1
        logits = self._logits(prev, words, word_mask, memory, memory_mask)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                           ignore_index=-100)

    @torch.no_grad()
    def classify(self, words, word_mask, memory, memory_mask, spans: list[list[tuple[int, int]]]
                 ) -> list[list[str]]:
        """MASC on given spans: the polarity token after the forced pointers ``s, e-1``."""
        out = []
        for b, row in enumerate(spans):
            if not row:
                out.append([])
                continue
            prev = torch.tensor([[-1, NSPECIAL + s, NSPECIAL + e - 1] for s, e in row])
            k = len(row)
            logits = self._logits(prev, words[b:b + 1].expand(k, -1, -1), word_mask[b:b + 1].expand(k, -1),
                                  memory[b:b + 1].expand(k, -1, -1), memory_mask[b:b + 1].expand(k, -1))
            pol = logits[:, -1, 1:NSPECIAL].argmax(-1).tolist()
            out.append([POLARITIES[p] for p in pol])
        return out

    # ---------------------------------------------------------------- constrained decoding

    def _allowed(self, seq: list[int], n_words: int, width: int) -> torch.Tensor:
        """Which output classes may follow ``seq`` (classes already emitted, without BOS)."""
        ok = torch.zeros(width, dtype=torch.bool)
        k = len(seq) % 3
        covered = set()
        for i in range(0, len(seq) - k, 3):
            covered.update(range(seq[i] - NSPECIAL, seq[i + 1] - NSPECIAL + 1))
        if k == 0:
            ok[EOS] = True
            if len(seq) // 3 < self.max_aspects:
                for w in range(n_words):
                    if w not in covered:
                        ok[NSPECIAL + w] = True
        elif k == 1:
            s = seq[-1] - NSPECIAL
            for w in range(s, min(n_words, s + MAX_SPAN)):
                if w in covered:
                    break
                ok[NSPECIAL + w] = True
        else:
            ok[1:NSPECIAL] = True
        return ok

    @torch.no_grad()
    def decode(self, words, word_mask, memory, memory_mask, beam: int = 1
               ) -> list[list[tuple[int, int, str, float]]]:
        B = words.size(0)
        n_words = word_mask.sum(1).tolist()
        if beam == 1:
            return self._greedy(words, word_mask, memory, memory_mask, [int(n) for n in n_words])
        results = []
        for b in range(B):
            results.append(self._decode_one(words[b:b + 1], word_mask[b:b + 1], memory[b:b + 1],
                                            memory_mask[b:b + 1], int(n_words[b]), beam))
        return results

    def _greedy(self, words, word_mask, memory, memory_mask, n_words: list[int]):
        """Batched constrained greedy decoding (the same choices as beam=1, one decoder call per step)."""
        B = words.size(0)
        width = NSPECIAL + words.size(1)
        seqs: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        active = list(range(B))
        for _ in range(3 * self.max_aspects + 1):
            if not active:
                break
            prev = torch.tensor([[-1] + seqs[b] for b in active])
            logits = self._logits(prev, words[active], word_mask[active], memory[active], memory_mask[active])[:, -1]
            ok = torch.stack([self._allowed(seqs[b], n_words[b], width) for b in active])
            lp = torch.log_softmax(logits.float().masked_fill(~ok, -1e9), dim=-1)
            best = lp.max(dim=-1)
            still = []
            for r, b in enumerate(active):
                c = int(best.indices[r])
                seqs[b].append(c)
                lps[b].append(float(best.values[r]))
                if c != EOS:
                    still.append(b)
            active = still
        out = []
        for b in range(B):
            seq = seqs[b]
            if not seq or seq[-1] != EOS:  # ran out of steps: keep the full triples
                seq = seq[:len(seq) - len(seq) % 3] + [EOS]
            res = []
            for i in range(0, len(seq) - 1, 3):
                s, e, p = seq[i] - NSPECIAL, seq[i + 1] - NSPECIAL, seq[i + 2]
                res.append((s, e + 1, POLARITIES[p - 1], math.exp(sum(lps[b][i:i + 3]) / 3)))
            out.append(res)
        return out

    def _decode_one(self, words, word_mask, memory, memory_mask, n_words: int, beam: int):
        width = NSPECIAL + words.size(1)
        beams: list[tuple[float, list[int], list[float]]] = [(0.0, [], [])]
        finished: list[tuple[float, list[int], list[float]]] = []
        for _ in range(3 * self.max_aspects + 1):
            if not beams:
                break
            prev = torch.tensor([[-1] + seq for _, seq, _ in beams])
            k = len(beams)
            logits = self._logits(prev, words.expand(k, -1, -1), word_mask.expand(k, -1),
                                  memory.expand(k, -1, -1), memory_mask.expand(k, -1))[:, -1]
            cand = []
            for r, (score, seq, lps) in enumerate(beams):
                ok = self._allowed(seq, n_words, width)
                lp = torch.log_softmax(logits[r].float().masked_fill(~ok, -1e9), dim=-1)
                top = torch.topk(lp, min(beam, int(ok.sum())))
                for v, c in zip(top.values.tolist(), top.indices.tolist()):
                    cand.append((score + v, seq + [c], lps + [v]))
            cand.sort(key=lambda x: -x[0] / max(1, len(x[1])) if beam > 1 else -x[0])
            beams = []
            for c in cand[:beam]:
                (finished if c[1][-1] == EOS else beams).append(c)
            if len(finished) >= beam:
                break
        if not finished:  # ran out of steps: close the open beams at their last full triple
            finished = [(s, seq[:len(seq) - len(seq) % 3] + [EOS], lps) for s, seq, lps in beams]
        best = max(finished, key=lambda x: x[0] / max(1, len(x[1])))
        seq, lps = best[1], best[2]
        out = []
        for i in range(0, len(seq) - 1, 3):
            s, e, p = seq[i] - NSPECIAL, seq[i + 1] - NSPECIAL, seq[i + 2]
            conf = math.exp(sum(lps[i:i + 3]) / 3)
            out.append((s, e + 1, POLARITIES[p - 1], conf))
        return out
