"""The composed network: tweet encoder + side projections + fusion + host, and its checkpoints.

A checkpoint directory holds ``model.safetensors`` (every trained weight), ``config.json`` (the
RunConfig, label set, side encoder fingerprint, training record), ``backbone/config.json`` (to
rebuild the encoder offline) and ``tokenizer/``. Nothing is pickled.
The training record names the writer of each rationale part (``training.rationale_writers``: ``text`` = L_t,
``image`` = L_i; ``lrsa.rationales.writers``), so that prediction can use the same writers; a checkpoint
written before that field existed gets it from its rationale source and provenance (``rationale_writers``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrsa.config import ModelConfig
from lrsa.features.text import CASING_FEATURES, load_encoder
from lrsa.features.vision import PixelEncoder
from lrsa.model.aspect import AspectHead
from lrsa.model.fusion import Fusion
from lrsa.model.generative import PointerDecoder
from lrsa.model.span import SpanHead
from lrsa.precision import autocast, check

FORMAT_VERSION = 1


class LRSANet(nn.Module):
    """``forward(batch)`` is the training loss (what DDP wraps); ``loss``, ``decode``, ``classify_spans``,
    ``decode_and_classify`` and ``lower_states`` move a collated batch to the device of the weights and run in
    the compute ``precision`` (``lrsa.precision``: ``fp32``, or ``bf16`` autocast; weights stay fp32); set it
    with ``set_precision``."""

    def __init__(self, cfg: ModelConfig, encoder_path: str, side_dim: int, pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        self.precision = "fp32"
        self.encoder = load_encoder(encoder_path, pretrained=pretrained)
        H = int(self.encoder.config.hidden_size)
        if cfg.freeze_embeddings or cfg.train_layers is not None:
            for p in self.encoder.get_input_embeddings().parameters():
                p.requires_grad_(False)
        self.n_frozen = 0
        if cfg.train_layers is not None:
            layers = self._layers()
            self.n_frozen = max(0, len(layers) - cfg.train_layers)
            for p in self.encoder.embeddings.parameters():
                p.requires_grad_(False)
            for layer in layers[:self.n_frozen]:
                for p in layer.parameters():
                    p.requires_grad_(False)
        self.hidden = H
        self.casing = nn.Linear(len(CASING_FEATURES), H) if cfg.casing else None
        self.word_norm = nn.LayerNorm(H)
        self.drop = nn.Dropout(cfg.dropout)
        self.side_proj = nn.ModuleDict()
        if cfg.uses_image:
            vdim = PixelEncoder.dim if cfg.image_side == "pixels" else side_dim
            self.side_proj["visual"] = nn.Sequential(nn.Linear(vdim, H), nn.LayerNorm(H))
        if cfg.uses_rationales:
            for kind in cfg.rationale_kinds:
                self.side_proj[kind] = nn.Sequential(nn.Linear(side_dim, H), nn.LayerNorm(H))
        self.fusion = Fusion(cfg.fusion, cfg.uses_image, H, cfg.heads, cfg.dropout,
                             visual_out=cfg.host == "generative", gate=cfg.fusion_gate,
                             rationale_text=cfg.rationale_text)
        if cfg.host == "span":
            self.head = SpanHead(H, cfg.dropout)
        elif cfg.host == "aspect":
            self.head = AspectHead(H, cfg.dropout)
        else:
            self.head = PointerDecoder(H, cfg.heads, cfg.decoder_layers, cfg.decoder_ffn, cfg.dropout,
                                       cfg.max_aspects)

    def set_precision(self, precision: str) -> "LRSANet":
        self.precision = check(precision)
        return self

    @property
    def device(self) -> torch.device:
        return self.word_norm.weight.device

    def _autocast(self):
        return autocast(self.precision, self.device.type)

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch with its tensors (and side tables) on the weights' device; itself on that device."""
        dev = self.device
        if batch["input_ids"].device == dev:
            return batch
        out = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch.items() if k != "side"}
        out["side"] = {k: (s.to(dev), m.to(dev)) for k, (s, m) in batch["side"].items()}
        return out

    # ---------------------------------------------------------------- forward pieces

    def _layers(self):
        layers = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        if layers is None or not hasattr(self.encoder, "_create_attention_masks"):
            raise ValueError(f"train_layers needs a BERT-family backbone (encoder.layer); "
                             f"{type(self.encoder).__name__} is not one: set model.train_layers: null")
        return layers

    @torch.no_grad()
    def lower_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Output of the frozen lower layers (cached during training; identical to the live path)."""
        with self._autocast():
            out = self.encoder(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                               output_hidden_states=True)
        return out.hidden_states[self.n_frozen].float()

    def words(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.n_frozen and "lower" in batch["side"]:
            h = batch["side"]["lower"][0]
            att = batch["attention_mask"][:, :h.size(1)]
            mask, _ = self.encoder._create_attention_masks(attention_mask=att, encoder_attention_mask=None,
                                                           embedding_output=h, encoder_hidden_states=None,
                                                           cache=None)
            for layer in self._layers()[self.n_frozen:]:
                h = layer(h, mask)
        else:
            out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            h = out.last_hidden_state
        w = torch.gather(h, 1, batch["first"].unsqueeze(-1).expand(-1, -1, h.size(-1)))
        if self.casing is not None:
            w = w + self.casing(batch["feats"])
        return self.drop(self.word_norm(w))

    def fused(self, batch: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        w = self.words(batch)
        side = {}
        for k, (s, m) in batch["side"].items():
            if k not in self.side_proj:
                continue
            if not s.is_floating_point():  # side_encoder=shared: token ids through the trained encoder
                s = self.encoder(input_ids=s, attention_mask=m.long()).last_hidden_state
            side[k] = (self.side_proj[k](s), m)
        return self.fusion(w, batch["word_mask"], side)

    def _memory(self, t, wmask, v):
        if v is None:
            return t, wmask
        return torch.cat([t, v[0]], dim=1), torch.cat([wmask, v[1]], dim=1)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.loss(batch)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        batch = self.to_device(batch)
        with self._autocast():
            return self._loss(batch).float()

    def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
        t, v = self.fused(batch)
        if self.cfg.host == "span":
            return self.head.loss(t, batch["word_mask"], batch["tags"])
        if self.cfg.host == "aspect":
            return self.head.loss(t, batch["word_mask"], batch["aspect"], batch["label"])
        mem, mmask = self._memory(t, batch["word_mask"], v)
        return self.head.loss(t, batch["word_mask"], mem, mmask, batch["targets"])

    @torch.no_grad()
    def decode(self, batch: dict[str, Any]) -> list[list[tuple[int, int, str, float]]]:
        batch = self.to_device(batch)
        with self._autocast():
            return self.decode_states(batch, *self.fused(batch))

    def decode_states(self, batch: dict[str, Any], t: torch.Tensor, v: Any) -> list[list[tuple[int, int, str, float]]]:
        """The aspects of each row from the batch's fused states ``(t, v) = fused(batch)``."""
        if self.cfg.host == "span":
            return self.head.decode(t, batch["word_mask"])
        if self.cfg.host == "aspect":  # one (start, end, polarity, confidence) for each row's given span
            return self.head.decode(t, batch["word_mask"], batch["aspect"])
        mem, mmask = self._memory(t, batch["word_mask"], v)
        return self.head.decode(t, batch["word_mask"], mem, mmask, beam=self.cfg.beam)

    @torch.no_grad()
    def classify_spans(self, batch: dict[str, Any], spans: list[list[tuple[int, int]]]) -> list[list[str]]:
        self._check_joint()
        batch = self.to_device(batch)
        with self._autocast():
            return self.classify_states(batch, *self.fused(batch), spans)

    def classify_states(self, batch: dict[str, Any], t: torch.Tensor, v: Any,
                        spans: list[list[tuple[int, int]]]) -> list[list[str]]:
        """The polarity of each given span from the batch's fused states ``(t, v) = fused(batch)``."""
        if self.cfg.host == "span":
            return self.head.classify(t, spans)
        mem, mmask = self._memory(t, batch["word_mask"], v)
        return self.head.classify(t, batch["word_mask"], mem, mmask, spans)

    @torch.no_grad()
    def decode_and_classify(self, batch: dict[str, Any], spans: list[list[tuple[int, int]]]
                            ) -> tuple[list[list[tuple[int, int, str, float]]], list[list[str]]]:
        """``(decode(batch), classify_spans(batch, spans))`` from one pass of the encoders and the fusion: what
        scoring a joint host needs (its aspects, and its polarity on the gold spans) at half the cost."""
        self._check_joint()
        batch = self.to_device(batch)
        with self._autocast():
            t, v = self.fused(batch)
            return self.decode_states(batch, t, v), self.classify_states(batch, t, v, spans)

    def _check_joint(self) -> None:
        if self.cfg.host == "aspect":
            raise ValueError("the aspect host classifies the aspect of each item: use decode")


# --------------------------------------------------------------------------- checkpoints


def checkpoint_meta(run: Any, side_encoder: Any, side_dim: int, rat_prov: dict | None) -> dict[str, Any]:
    """What a checkpoint's config.json records besides its format: the run, the side encoder, the data."""
    from lrsa.features.side_cache import weights_fingerprint

    m = run.model
    return {
        "run": run.model_dump(),
        "side_dim": side_dim,
        "side_encoder": None if side_encoder is None else {
            "backbone": side_encoder.backbone, "max_tokens": side_encoder.max_tokens,
            "fingerprint": weights_fingerprint(side_encoder.path),
            **({"layers": side_encoder.layers} if side_encoder.layers is not None else {})},
        "training": {"dataset": run.train.dataset,
                     "rationale_source": run.train.rationale_source if m.uses_rationales else None,
                     "rationale_provenance": rat_prov,
                     "rationale_writers": rationale_writers(run.model_dump(), {
                         "dataset": run.train.dataset, "rationale_provenance": rat_prov,
                         "rationale_source": run.train.rationale_source}),
                     "image_text_source": m.image_text_source if m.image_side == "captions" else None},
    }


def rationale_writers(run: dict[str, Any], training: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The writer of L_t (``text``) and of L_i (``image``) of a model (None: it reads no rationales): the
    record's own ``rationale_writers``, else derived from its rationale source and provenance (checkpoints
    written before writers were recorded)."""
    cfg = ModelConfig.model_validate(run["model"])
    if not cfg.uses_rationales:
        return None
    if training.get("rationale_writers"):
        return training["rationale_writers"]
    from lrsa.rationales.writers import training_writers

    source = training.get("rationale_source") or run.get("train", {}).get("rationale_source") or "lexicon"
    return training_writers(source, training.get("rationale_provenance"),
                            training.get("dataset") or run.get("train", {}).get("dataset"))


def save_checkpoint(net: LRSANet, tokenizer: Any, meta: dict[str, Any], dest: str | Path) -> Path:
    """Write a checkpoint directory atomically (a temp dir renamed into place)."""
    from safetensors.torch import save_model

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        save_model(net, str(tmp / "model.safetensors"))
        net.encoder.config.save_pretrained(tmp / "backbone")
        tokenizer.save_pretrained(tmp / "tokenizer")
        meta = {"format": "lrsa-checkpoint", "format_version": FORMAT_VERSION, **meta}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.exists():
        raise FileNotFoundError(f"{path} is not an lrsa checkpoint: no config.json")
    meta = json.loads(cfg.read_text())
    if meta.get("format") != "lrsa-checkpoint":
        raise ValueError(f"{cfg} is not an lrsa checkpoint config (format={meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{cfg}: checkpoint format {meta.get('format_version')} is not "
                         f"supported (this lrsa reads {FORMAT_VERSION})")
    return meta


def record_scores(path: str | Path, dev: dict | None, test: dict | None) -> dict[str, Any]:
    """Add final dev/test scores to a checkpoint's config.json (atomic rewrite); returns the new config."""
    cfg = Path(path) / "config.json"
    meta = json.loads(cfg.read_text())
    meta["training"]["dev"] = dev
    meta["training"]["test"] = test
    tmp = cfg.with_name(".config.json.part")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, cfg)
    return meta


def load_side_encoder(spec: dict[str, Any] | None, cache_dir: str | Path | None = None,
                      precision: str = "fp32") -> Any:
    """The frozen side encoder of a checkpoint's ``side_encoder`` record (backbone, max_tokens, fingerprint,
    ``layers`` when not all), its weights checked against the fingerprint it was trained with; None for a model
    without one."""
    from lrsa.features.side_cache import FrozenTextEncoder, weights_fingerprint

    if not spec:
        return None
    enc = FrozenTextEncoder(spec["backbone"], spec["max_tokens"], cache_dir=cache_dir, precision=precision,
                            layers=spec.get("layers"))
    got = weights_fingerprint(enc.path)
    if got != spec["fingerprint"]:
        raise RuntimeError(f"side encoder {spec['backbone']!r} at {enc.path} has weights {got[:12]}..., "
                           f"but this model was trained with {spec['fingerprint'][:12]}...")
    return enc


def load_checkpoint(path: str | Path) -> tuple[LRSANet, Any, dict[str, Any]]:
    from safetensors.torch import load_model

    from lrsa.features.text import load_tokenizer

    path = Path(path)
    meta = read_meta(path)
    cfg = ModelConfig.model_validate(meta["run"]["model"])
    net = LRSANet(cfg, str(path / "backbone"), side_dim=int(meta["side_dim"]), pretrained=False)
    missing, unexpected = load_model(net, str(path / "model.safetensors"), strict=True)
    net.eval()
    tok = load_tokenizer(str(path / "tokenizer"))
    return net, tok, meta
