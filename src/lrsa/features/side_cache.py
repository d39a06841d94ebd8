"""Frozen encoders for side texts (rationales, captions) with their token states cached on disk.

Training fine-tunes only the tweet encoder; the rationale and caption texts go through a frozen copy
of the pretrained backbone once, and their states are stored (fp16 safetensors, atomic writes) keyed
by the encoder's weights, the token limit, the depth (``layers``: the first N transformer layers, 0 = the
embedding layer alone; None = all), the compute precision (``lrsa.precision``: fp32 or bf16 autocast) and
the texts. A rerun, another seed or another variant reads the same file instead of
re-encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from lrsa.features.text import load_encoder, load_tokenizer, resolve_backbone
from lrsa.precision import autocast, check


@lru_cache(maxsize=8)
def weights_fingerprint(path: str) -> str:
    """sha256 of the backbone's weight files (or the hub id when not local)."""
    p = Path(path)
    if not p.is_dir():
        return hashlib.sha256(path.encode()).hexdigest()
    h = hashlib.sha256()
    files = sorted(list(p.glob("*.safetensors")) + list(p.glob("*.bin")) + list(p.glob("config.json")))
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], dest: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp,
                  metadata={k: str(v) for k, v in (metadata or {}).items()})
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def truncate_layers(model: torch.nn.Module, n: int, name: str) -> None:
    """Keep the first ``n`` transformer layers of a BERT-family encoder (``model.encoder.layer``; 0 leaves
    the embedding layer alone), in place."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"side encoder {name!r}: cannot choose its depth (no encoder.layer list in "
                         f"{type(model).__name__}); leave model.side_layers unset")
    if n > len(layers):
        raise ValueError(f"side encoder {name!r} has {len(layers)} layers; model.side_layers={n} asks for more")
    model.encoder.layer = torch.nn.ModuleList(list(layers)[:n])
    model.config.num_hidden_layers = n


class FrozenTextEncoder:
    """Encodes texts with a frozen backbone (its first ``layers`` transformer layers; None: all); returns
    padded fp16 token states and a mask."""

    def __init__(self, backbone: str, max_tokens: int = 64, cache_dir: str | Path | None = None,
                 batch_size: int = 32, precision: str = "fp32", layers: int | None = None):
        self.backbone = backbone
        self.precision = check(precision)
        self.path = resolve_backbone(backbone)
        self.max_tokens = max_tokens
        if layers is not None and layers < 0:
            raise ValueError(f"side encoder layers must be >= 0 or None (all), got {layers}")
        self.layers = layers
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self._model = None
        self._tok = None
        self.stats = {"encoded": 0, "cache_hits": 0, "seconds": 0.0}
        #: set by lrsa.model.quantize ("int8-dynamic") when the encoder's Linear layers are quantized
        self.quantized: str | None = None

    @property
    def model(self):
        if self._model is None:
            model = load_encoder(self.path).eval()
            if self.layers is not None:
                truncate_layers(model, self.layers, self.backbone)
            for p in model.parameters():
                p.requires_grad_(False)
            self._model = model
        return self._model

    @property
    def tokenizer(self):
        if self._tok is None:
            self._tok = load_tokenizer(self.path)
        return self._tok

    @property
    def hidden_size(self) -> int:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(self.path)
        return int(getattr(cfg, "hidden_size", None) or cfg.d_model)

    def key(self, texts: list[str]) -> str:
        h = hashlib.sha256()
        head = {"weights": weights_fingerprint(self.path), "max": self.max_tokens}
        if self.layers is not None:  # the full encoder's keys stay those written before depth existed
            head["layers"] = self.layers
        if self.precision != "fp32":  # fp32 keys stay those of the caches written before precision existed
            head["precision"] = self.precision
        if self.quantized:  # int8 states (lrsa.model.quantize) never mix with the reference's
            head["quantized"] = self.quantized
        h.update(json.dumps(head).encode())
        for t in texts:
            h.update(t.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(states [N, L, H] float16, mask [N, L] bool)``, L = the longest text (≤ max_tokens). An empty
        (or all-blank) text is an empty memory: its mask row is all False (a post without an image)."""
        import time

        path = self.cache_dir / "side" / f"{self.key(texts)}.safetensors" if self.cache_dir else None
        if path is not None and path.exists():
            from safetensors.torch import load_file

            d = load_file(str(path))
            self.stats["cache_hits"] += len(texts)
            return d["states"], d["mask"].bool()
        t0 = time.perf_counter()
        states, mask = self._encode(texts)
        self.stats["seconds"] += time.perf_counter() - t0
        self.stats["encoded"] += len(texts)
        if path is not None:
            atomic_save_safetensors({"states": states, "mask": mask.to(torch.uint8)}, path,
                                    {"backbone": self.backbone, "n": len(texts)})
        return states, mask

    @torch.inference_mode()
    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each distinct text is encoded once (a batch of posts repeats many side texts: an empty image side,
        a lexicon L_i with no shared word); the rows of a repeated text are copies of its states."""
        first: dict[str, int] = {}
        for t in texts:
            first.setdefault(t, len(first))
        if len(first) == len(texts):
            return self._encode_distinct(texts)
        states, mask = self._encode_distinct(list(first))
        rows = torch.tensor([first[t] for t in texts])
        return states[rows], mask[rows]

    def _encode_distinct(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer
        enc = tok(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        n = len(texts)
        longest = max((len(e) for e in enc), default=1)
        hidden = self.model.config.hidden_size
        states = torch.zeros(n, longest, hidden, dtype=torch.float16)
        mask = torch.zeros(n, longest, dtype=torch.bool)
        order = sorted(range(n), key=lambda i: len(enc[i]))
        pad = tok.pad_token_id or 0
        for b in range(0, n, self.batch_size):
            idx = order[b:b + self.batch_size]
            L = max(len(enc[i]) for i in idx)
            ids = torch.full((len(idx), L), pad, dtype=torch.long)
            att = torch.zeros((len(idx), L), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :len(enc[i])] = torch.tensor(enc[i])
                att[r, :len(enc[i])] = 1
            with autocast(self.precision):
                out = self.model(input_ids=ids, attention_mask=att).last_hidden_state
            for r, i in enumerate(idx):
                li = len(enc[i])
                states[i, :li] = out[r, :li].to(torch.float16)
                mask[i, :li] = bool(texts[i].strip())
        return states, mask
