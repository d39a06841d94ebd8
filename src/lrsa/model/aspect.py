"""Host 3: sentiment of one given aspect (MASC).

Input: the (fused) word states of the tweet ``T [B, n, H]``, their mask, and for each row the aspect's
word span ``[start, end)`` in ``T`` (``aspect [B, 2]``). How the aspect reaches the encoder is chosen by
``ModelConfig.aspect_input`` (``lrsa.model.inputs.encode_aspect``): ``pair`` appends it as a second segment
(``[CLS] tweet [SEP] aspect [SEP]``; the states read here are the tweet's words), ``marked`` wraps it in
``<`` ``>`` inside the tweet (the span then covers the aspect's words between the markers).
Output: logits over ``POS, NEU, NEG`` from ``[mean of the span's states; max over the tweet's states]``;
the confidence of a prediction is its softmax probability.
"""

from __future__ import annotations

import torch
from torch import nn

from lrsa.data.schema import POLARITIES


class AspectHead(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim, dim), nn.GELU(),
                                  nn.Linear(dim, len(POLARITIES)))

    def logits(self, words: torch.Tensor, word_mask: torch.Tensor, aspect: torch.Tensor) -> torch.Tensor:
        n = words.size(1)
        pos = torch.arange(n, device=words.device).unsqueeze(0)
        in_span = (pos >= aspect[:, :1]) & (pos < aspect[:, 1:]) & word_mask
        m = in_span.unsqueeze(-1).to(words.dtype)
        span = (words * m).sum(1) / m.sum(1).clamp(min=1.0)
        ctx = words.masked_fill(~word_mask.unsqueeze(-1), float("-inf")).max(dim=1).values
        return self.proj(torch.cat([span, ctx], dim=-1))

    def loss(self, words: torch.Tensor, word_mask: torch.Tensor, aspect: torch.Tensor,
             label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.logits(words, word_mask, aspect), label)

    @torch.no_grad()
    def decode(self, words: torch.Tensor, word_mask: torch.Tensor, aspect: torch.Tensor
               ) -> list[list[tuple[int, int, str, float]]]:
        """One ``(start, end, polarity, confidence)`` per row, for its given span."""
        prob = torch.softmax(self.logits(words, word_mask, aspect).float(), dim=-1)
        conf, k = prob.max(dim=-1)
        return [[(int(s), int(e), POLARITIES[int(c)], float(p))]
                for (s, e), c, p in zip(aspect.tolist(), k, conf)]
