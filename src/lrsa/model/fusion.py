"""Rationale injection and dual cross-attention, every part switchable.

Inputs (all already projected to the text width H):
  T   [B, n, H]  tweet token states (the only states the hosts decode from)
  V   [B, v, H]  visual states: caption tokens (image as text) or pixel regions; may be absent
  Lt  [B, r, H]  text rationale tokens;  Li [B, q, H] image rationale tokens; absent when fusion=off

Modes (``ModelConfig.fusion``):
  off     no rationales. With an image side, T attends to V once (the ``image`` variant).
  concat  as off for the image; the mean-pooled rationales are concatenated to every token state and
          mixed back in by a linear layer: no attention over rationale tokens (the ``concat`` variant).
  single  one cross-attention of T over the joint memory [V; Lt; Li].
  dual    (1) injection: T attends to Lt, V attends to Li; (2) cross-modal: the enriched T attends to
          the enriched V, and V to T; the hosts read the fused T (the ``lrsa`` variant). Without an
          image side, the image rationale plays the part of V. The reverse direction (V <- T) is
          computed only for the generative host, whose decoder also attends to the fused V; the span
          tagger and the aspect classifier read T alone, so it is skipped there (dead computation).
Switch ``rationale_text`` (``ModelConfig.rationale_text``, single and dual only): False = L_t is not read
(the ``lrsa_li`` ablation: image rationale only); dual then skips T <- Lt, single leaves Lt out of the memory.
Every attention block is residual with a gate, so an unhelpful side input can be closed
(``ModelConfig.fusion_gate``):
  content  q <- LayerNorm(q + sigmoid(W [q; a]) * a): a per-token gate opened about half-way at start.
  zero     q <- q + tanh(alpha) * Attn(LayerNorm(q), kv), alpha a per-channel vector initialised at 0
           (pre-norm, as Flamingo's gated cross-attention): at initialisation the fused T equals T, so
           the span host starts as exactly its text-only host (the generative decoder's memory still
           holds the visual tokens), and side inputs come in only as far as training opens the gates.
Read-out (opt-in, for ``lrsa.model.attribution``): ``Fusion.capture`` is None by default and nothing is
recorded (the blocks call attention exactly as without it). Set it to a dict and each forward fills it, all
detached, with ``text_norm`` [B, n] (norm of each tweet state entering fusion) and, per block that ran, under
its name (``visual``, ``single``, ``inject_t``, ``inject_v``, ``t_from_v``, ``v_from_t``) a dict of
``attn`` [B, nq, nk] (attention weights averaged over heads, 0 for rows with no real key), ``update`` [B, nq]
(norm of the gated update added to each query state: ``g * a`` or ``tanh(alpha) * a``) and ``query`` [B, nq]
(norm of each query state before the block); ``single`` also records ``segments`` (the memory's parts in
order, as ``(name, length)``); ``concat`` records ``update`` [B, n] and the norms of the first linear layer's
terms from the tweet state ``t`` [B, n] and from the pooled rationales ``lt``, ``li`` [B]. The weights are
computed by a second attention call, so the fused states are bitwise those of a run without capture.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossBlock(nn.Module):
    """Gated residual cross-attention of q over kv (no FFN: CPU budget); see the module doc for the gates."""

    def __init__(self, dim: int, heads: int, dropout: float, gate: str = "content"):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.gate_kind = gate
        if gate == "content":
            self.gate = nn.Linear(2 * dim, dim)
        elif gate == "zero":
            self.alpha = nn.Parameter(torch.zeros(dim))
        else:
            raise ValueError(f"unknown fusion gate {gate!r}; known: content, zero")
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor,
                record: dict | None = None) -> torch.Tensor:
        # kv_mask: True = real token. Rows with no real token attend to nothing (output 0).
        # record: None, or a dict to fill with the read-out (module doc); the output is the same either way
        empty = ~kv_mask.any(dim=1)
        safe = kv_mask.clone()
        safe[empty, 0] = True
        x = self.norm(q) if self.gate_kind == "zero" else q
        a, _ = self.attn(x, kv, kv, key_padding_mask=~safe, need_weights=False)
        a = a.masked_fill(empty[:, None, None], 0.0)
        if self.gate_kind == "zero":
            upd = torch.tanh(self.alpha) * a
            out = q + self.drop(upd)
        else:
            g = torch.sigmoid(self.gate(torch.cat([q, a], dim=-1)))
            upd = g * a
            out = self.norm(q + self.drop(upd))
        if record is not None:
            with torch.no_grad():
                _, w = self.attn(x, kv, kv, key_padding_mask=~safe, need_weights=True, average_attn_weights=True)
                record.update(attn=w.float().masked_fill(empty[:, None, None], 0.0).detach(),
                              update=upd.float().norm(dim=-1).detach(), query=q.float().norm(dim=-1).detach())
        return out


def _pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class Fusion(nn.Module):
    def __init__(self, mode: str, use_image: bool, dim: int, heads: int, dropout: float,
                 visual_out: bool = True, gate: str = "content", rationale_text: bool = True):
        super().__init__()
        if not rationale_text and mode not in ("single", "dual"):
            raise ValueError(f"rationale_text=False needs fusion single or dual, not {mode!r}")
        self.mode = mode
        self.rationale_text = rationale_text
        self.gate = gate
        self.visual_out = visual_out  # compute V <- T (dual step 2, reverse direction) for hosts that read it
        self.use_image = use_image
        if mode in ("off", "concat") and use_image:
            self.visual = CrossBlock(dim, heads, dropout, gate)
        if mode == "concat":
            self.concat = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU())
            self.concat_norm = nn.LayerNorm(dim)
            if gate == "zero":
                self.concat_alpha = nn.Parameter(torch.zeros(dim))
        if mode == "single":
            self.single = CrossBlock(dim, heads, dropout, gate)
        if mode == "dual":
            if rationale_text:
                self.inject_t = CrossBlock(dim, heads, dropout, gate)  # T  <- Lt
            self.inject_v = CrossBlock(dim, heads, dropout, gate)  # V  <- Li
            self.t_from_v = CrossBlock(dim, heads, dropout, gate)  # T' <- V'
            if visual_out:
                self.v_from_t = CrossBlock(dim, heads, dropout, gate)  # V' <- T'
        self.capture: dict | None = None  # read-out: None = off (module doc)

    def _block(self, name: str, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        if self.capture is None:
            return getattr(self, name)(q, kv, kv_mask)
        rec = self.capture[name] = {}
        return getattr(self, name)(q, kv, kv_mask, record=rec)

    def forward(self, t: torch.Tensor, t_mask: torch.Tensor, side: dict[str, tuple[torch.Tensor, torch.Tensor]]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Fused text states, and the fused visual memory (or None) for hosts that read it."""
        v = side.get("visual")
        if self.use_image and v is None:
            raise ValueError("this model has an image side but no visual input was given")
        need = ("rat_text", "rat_image") if self.rationale_text else ("rat_image",)
        if self.mode != "off" and any(k not in side for k in need):
            raise ValueError(f"fusion={self.mode} needs the rationales {', '.join(need)}")
        if self.capture is not None:
            self.capture["text_norm"] = t.detach().float().norm(dim=-1)
        if self.mode == "off":
            if self.use_image:
                t = self._block("visual", t, *v)
            return t, v
        lt, li = side.get("rat_text") if self.rationale_text else None, side["rat_image"]
        if self.mode == "concat":
            if self.use_image:
                t = self._block("visual", t, *v)
            r = torch.cat([_pool(*lt), _pool(*li)], dim=-1).unsqueeze(1).expand(-1, t.size(1), -1)
            if self.gate == "zero":
                x = self.concat_norm(t)
                upd = torch.tanh(self.concat_alpha) * self.concat(torch.cat([x, r], dim=-1))
                t_new = t + upd
            else:
                x = t
                upd = self.concat(torch.cat([t, r], dim=-1))
                t_new = self.concat_norm(t + upd)
            if self.capture is not None:
                self.capture["concat"] = self._concat_terms(x, r[:, 0], upd)
            return t_new, v
        if self.mode == "single":
            named = ([("V", v)] if self.use_image else []) + ([("L_t", lt)] if lt is not None else []) + [("L_i", li)]
            mem = torch.cat([p[0] for _, p in named], dim=1)
            mmask = torch.cat([p[1] for _, p in named], dim=1)
            if self.capture is not None:
                self.capture["segments"] = [(name, p[0].size(1)) for name, p in named]
            return self._block("single", t, mem, mmask), v
        # dual
        t1 = self._block("inject_t", t, *lt) if lt is not None else t
        if self.use_image:
            v1 = self._block("inject_v", v[0], li[0], li[1])
            vmask = v[1]
        else:
            v1, vmask = li
        t2 = self._block("t_from_v", t1, v1, vmask)
        if not self.visual_out:
            return t2, None
        v2 = self._block("v_from_t", v1, t1, t_mask)
        return t2, (v2, vmask)

    @torch.no_grad()
    def _concat_terms(self, x: torch.Tensor, r: torch.Tensor, upd: torch.Tensor) -> dict:
        """Read-out of ``concat``: norms of the first linear layer's terms from the tweet state and from each
        pooled rationale (``r`` = [pool(Lt); pool(Li)], [B, 2H]), and of the update added to each token."""
        w = self.concat[0].weight.float()
        H = x.size(-1)
        return {"update": upd.float().norm(dim=-1), "t": (x.float() @ w[:, :H].T).norm(dim=-1),
                "lt": (r[:, :H].float() @ w[:, H:2 * H].T).norm(dim=-1),
                "li": (r[:, H:].float() @ w[:, 2 * H:].T).norm(dim=-1)}
