"""Typed configs for the model and its training, loaded from YAML or JSON.

A run is described by one ``RunConfig``: what model to build (``ModelConfig``), what data to train it
on and how (``TrainConfig``). Configs are saved beside every checkpoint, so a checkpoint says exactly
how it was made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Host = Literal["span", "generative", "aspect"]  # aspect: MASC (sentiment of one given aspect)
AspectInput = Literal["pair", "marked"]
Fusion = Literal["off", "concat", "single", "dual"]
FusionGate = Literal["content", "zero"]
ImageSide = Literal["none", "captions", "pixels"]
SideEncoder = Literal["frozen", "shared"]

#: the ablation variants of the paper's table, as (image side on?, rationale fusion, L_t read?);
#: ``lrsa_li`` is LRSA with the text rationale removed (the image rationale only)
VARIANTS: dict[str, dict[str, Any]] = {
    "text": {"image": False, "fusion": "off", "rationale_text": True},
    "image": {"image": True, "fusion": "off", "rationale_text": True},
    "concat": {"image": True, "fusion": "concat", "rationale_text": True},
    "lrsa": {"image": True, "fusion": "dual", "rationale_text": True},
    "lrsa_li": {"image": True, "fusion": "dual", "rationale_text": False},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """What the network is."""

    backbone: str = "minilm"  # "minilm", "mpnet", a local directory, or a Hugging Face hub id
    host: Host = "span"
    fusion: Fusion = "dual"  # how rationales enter: off / concat / single cross-attention / dual
    # gate of every fusion block: content (sigmoid of [q; attn], post-norm) or zero (tanh(alpha), alpha=0
    # at start, pre-norm: the fused text states start equal to the text-only ones)
    fusion_gate: FusionGate = "content"
    image_side: ImageSide = "captions"  # none (text only), captions (image as text), pixels
    image_text_source: str = "mdca_captions"  # side input used as the image's text
    image_text_max: int = 4  # how many captions to join
    pixel_encoder: str = "efficientnet-lite0"
    side_encoder: SideEncoder = "frozen"  # frozen: cached states of the pretrained backbone
    side_backbone: str | None = None  # encoder of side texts when frozen; default = backbone
    # side texts (captions, L_t, L_i) arrive whole: 256 MiniLM tokens keep >= 95 % of every source whole
    # (docs/design.md has the measured lengths; the longest p95 is GPT-4's descriptions, 248)
    side_max_tokens: int = 256
    # depth of the frozen side encoder: side texts go through its first N transformer layers (0: its
    # embedding layer alone: token + position embeddings, layer-normed); None = every layer. Served cost of
    # a post scales with it (docs/training.md, "Side-encoder depth of the main job")
    side_layers: int | None = Field(default=None, ge=0)
    rationale_text: bool = True  # read L_t; False = the image rationale only (dual / single fusion)
    # fine-tune only the top N transformer layers; the frozen lower layers' states are cached on disk
    # during training (BERT-family backbones). None = fine-tune every layer.
    train_layers: int | None = None
    freeze_embeddings: bool = True  # word-piece embeddings stay pretrained (half of MiniLM's weights)
    casing: bool = True  # word-level casing / tweet-sign features (the backbones are uncased)
    max_tokens: int = 256
    heads: int = 6
    dropout: float = 0.1
    # generative host
    decoder_layers: int = 2
    decoder_ffn: int = 1024
    max_aspects: int = 12
    beam: int = 1
    # aspect host (MASC): the given aspect as a second segment ([CLS] tweet [SEP] aspect [SEP]) or marked
    # inside the tweet (``< aspect >``)
    aspect_input: AspectInput = "pair"

    @property
    def uses_rationales(self) -> bool:
        return self.fusion != "off"

    @property
    def rationale_kinds(self) -> tuple[str, ...]:
        if not self.uses_rationales:
            return ()
        return ("rat_text", "rat_image") if self.rationale_text else ("rat_image",)

    @property
    def task(self) -> str:
        """``masc`` for the aspect host (given aspects), ``jmasa`` for the joint hosts."""
        return "masc" if self.host == "aspect" else "jmasa"

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if not self.rationale_text and self.fusion not in ("dual", "single"):
            raise ValueError("rationale_text=false (image rationale only) needs fusion dual or single")
        return self

    @property
    def uses_image(self) -> bool:
        return self.image_side != "none"


class TrainConfig(_Strict):
    """How it is trained. Selection is on dev only (JMASA F1; MASC accuracy for the aspect host); test is
    scored once at the end."""

    dataset: str = "twitter2015"
    rationale_source: str = "lexicon"
    seed: int = 0
    epochs: int = 6
    patience: int = 2
    batch_size: int = 16
    lr: float = 1e-4  # backbone
    head_lr: float = 1e-3  # fusion, heads, decoder
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of all steps
    clip: float = 1.0
    # probability that a training example loses its image side (the visual memory V and the image rationale
    # L_i, both masked empty), so that a model with an image side stays good on text-only posts
    modality_dropout: float = Field(0.0, ge=0.0, le=1.0)
    # probability that a training example loses its text rationale L_t, and (drawn independently) its image
    # rationale L_i, masked empty (``lrsa.model.inputs.drop_rationales``): an empty part, as a model meets it
    # at prediction time where the writer it was trained with cannot run (e.g. the published MiniGPT-4
    # descriptions), is then in the training distribution. 0: off (the committed tables' schedule)
    rationale_dropout: float = Field(0.0, ge=0.0, le=1.0)
    # which parts rationale dropout may mask: both (default), or only the one whose training writer cannot run
    # where the model is served (``["image"]`` for a model that learned L_i from a published bundle: the V-present,
    # L_i-empty input it then meets is in its training distribution, and L_t, written here, keeps every example)
    rationale_dropout_parts: list[Literal["text", "image"]] = Field(default_factory=lambda: ["text", "image"],
                                                                    min_length=1)
    train_limit: int | None = None  # first N training examples (quick runs, tests)
    dev_limit: int | None = None
    test_limit: int | None = None
    max_steps_per_epoch: int | None = None
    eval_test: bool = True
    threads: int | None = None  # torch threads; default: the cores the current load leaves free (≥ 1)
    # compute precision of every forward pass (lrsa.precision): fp32, or bf16 autocast (weights stay fp32;
    # 3-4x faster on CPUs with AMX / AVX512-BF16). A checkpoint predicts in the precision it was trained in
    # unless told otherwise.
    precision: Literal["fp32", "bf16"] = "fp32"
    # where it runs (lrsa.training.distributed): processes per machine and machines (DDP when more than one;
    # batch_size stays the global batch), and the accelerator (auto: CUDA when present, else CPU)
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    accelerator: Literal["auto", "cpu", "cuda"] = "auto"


class RunConfig(_Strict):
    name: str = "run"
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML/JSON config file; ``overrides`` is ``{"train.seed": 1, "model.host": "span"}``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    data = apply_overrides(data, overrides or {})
    try:
        return RunConfig.model_validate(data)
    except Exception as err:  # pydantic names the field
        raise ValueError(f"{path}: {err}") from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    for key, value in overrides.items():
        parts = key.split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return data


def variant_overrides(variant: str) -> dict[str, Any]:
    """Model settings of one ablation variant (``text``, ``image``, ``concat``, ``lrsa``)."""
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    v = VARIANTS[variant]
    return {"model.fusion": v["fusion"], "model.image_side": "captions" if v["image"] else "none",
            "model.rationale_text": v["rationale_text"]}
