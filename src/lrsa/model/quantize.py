"""The serving fast path: int8 dynamic quantization and a token budget for side texts, applied to a loaded
model (an ``lrsa.LRSA``) after its weights are read. Nothing here changes a checkpoint on disk.

- ``quantize``: which networks have their ``nn.Linear`` layers replaced by int8 dynamically quantized ones
  (``torch.ao.quantization.quantize_dynamic``: int8 weights with one scale per output channel, activations
  quantized per batch; fbgemm on x86, qnnpack elsewhere; the transformer layers' feed-forward
  down-projections stay float32, see RECIPES):
  ``none`` (the reference), ``side`` (the frozen side encoder that reads captions and rationales: half of
  an ``lrsa`` post's time), ``host`` (the tweet encoder, fusion and head), ``all`` (both). A quantized
  network computes in float32 around its int8 matrix products (bf16 autocast does not apply to it): with
  ``host`` or ``all`` the whole net predicts in fp32+int8 whatever ``precision`` says; with ``side`` the
  host keeps its precision.
- ``side_max_tokens``: a token budget for the side texts a served post brings (image text, L_t, L_i): each
  is cut to this many subword tokens before the frozen encoder reads it (never more than the checkpoint's
  own ``side_max_tokens``; ``None`` keeps it). Bounds the cost of a long user-given image description.

``apply_fast_path`` returns a record of what it did (``fast_path_info``), which ``LRSA.info()`` and the
service's ``GET /v1/model`` show. Predictions differ from the reference path by the int8 rounding; what that
costs in test F1 is measured by ``benchmarks/fast_path_check.py`` (docs/serving.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# torch is imported inside the functions: `lrsa serve --workers N` checks --quantize against QUANTIZE_CHOICES
# in its parent process, which never loads a model and should not spend time and memory importing torch.
QUANTIZE_CHOICES: tuple[str, ...] = ("none", "side", "host", "all")


def check_quantize(quantize: str | None) -> str:
    q = quantize or "none"
    if q not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize {quantize!r} is not one of {', '.join(QUANTIZE_CHOICES)}")
    return q


def quantized_engine() -> str:
    """The quantized-kernel engine used here: fbgemm on x86 (AVX2 / AVX512 VNNI), else qnnpack."""
    import torch

    engines = torch.backends.quantized.supported_engines
    for e in ("fbgemm", "x86", "qnnpack"):
        if e in engines:
            return e
    raise RuntimeError(f"no int8 engine in this torch build (supported: {engines})")


#: Which Linear layers become int8, and how: ``per-tensor`` (one weight scale per layer, every layer),
#: ``per-channel`` (one scale per output row, every layer) or ``per-channel-ffn-down-fp32`` (the default:
#: per-channel, but the feed-forward down-projections of transformer layers, ``*.output.dense`` outside
#: attention, whose inputs are GELU outputs with outlying values, stay float32). Per-token cosine of MiniLM
#: side states against float32 on 48 real captions and posts: 0.917 / 0.963 / 0.981 (mean; the 5th
#: percentile 0.865 / 0.939 / 0.968); the encoder's speed-up over float32 on one AVX2 core was about
#: 1.5x / 1.3x / 1.3x (a busy machine: rough).
RECIPES: tuple[str, ...] = ("per-tensor", "per-channel", "per-channel-ffn-down-fp32")
DEFAULT_RECIPE = "per-channel-ffn-down-fp32"


def _ffn_down(name: str) -> bool:
    return name.endswith("output.dense") and "attention" not in name


def qconfig_spec(module: nn.Module, recipe: str = DEFAULT_RECIPE) -> dict[Any, Any]:
    """The ``qconfig_spec`` of ``quantize_dynamic`` for ``recipe`` (see RECIPES)."""
    from torch import nn
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    if recipe not in RECIPES:
        raise ValueError(f"int8 recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    if recipe == "per-tensor":
        return {nn.Linear: default_dynamic_qconfig}
    if recipe == "per-channel":
        return {nn.Linear: per_channel_dynamic_qconfig}
    return {name: per_channel_dynamic_qconfig for name, m in module.named_modules()
            if type(m) is nn.Linear and not _ffn_down(name)}


def quantize_linear_int8(module: nn.Module, recipe: str = DEFAULT_RECIPE) -> nn.Module:
    """``module`` with its ``nn.Linear`` layers replaced (in place) by int8 dynamically quantized ones, as
    ``recipe`` says (RECIPES)."""
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    spec = qconfig_spec(module, recipe)
    torch.backends.quantized.engine = quantized_engine()
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it still works
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, spec, dtype=torch.qint8, inplace=True)


def count_quantized(module: nn.Module) -> int:
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return sum(isinstance(m, QLinear) for m in module.modules())


def apply_fast_path(model: Any, quantize: str | None = "none", side_max_tokens: int | None = None,
                    recipe: str = DEFAULT_RECIPE) -> dict[str, Any]:
    """Apply the fast-path levers to a loaded ``lrsa.LRSA`` (its ``net``, ``side_encoder``, ``precision``);
    returns and stores (``model.fast_path``) what was done. Idempotent for the same arguments."""
    q = check_quantize(quantize)
    if recipe not in RECIPES:
        raise ValueError(f"int8 recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    done = getattr(model, "fast_path", None) or {"quantize": "none", "side_max_tokens": None}
    if done["quantize"] not in ("none", q):
        raise ValueError(f"this model is already quantized ({done['quantize']}); load it again for {q}")
    if side_max_tokens is not None and side_max_tokens < 1:
        raise ValueError(f"side_max_tokens must be >= 1, got {side_max_tokens}")
    m = model.run.model
    reads_side = m.uses_rationales or m.image_side == "captions"
    frozen_side = reads_side and m.side_encoder == "frozen"
    if q in ("side", "all") and not frozen_side:
        raise ValueError("quantize side/all needs a model with a frozen side encoder; this one has "
                         + ("none (it reads no side texts)" if not reads_side else "side_encoder: shared")
                         + ": use quantize host")
    if side_max_tokens is not None and not frozen_side:
        raise ValueError("side_max_tokens applies to the frozen side encoder; this model has none")
    info: dict[str, Any] = {"quantize": q, "side_max_tokens": None, "engine": None, "recipe": None,
                            "int8_linear_layers": {}}
    if q != "none":
        if done["quantize"] == q and done.get("recipe") != recipe:
            raise ValueError(f"this model is already quantized with recipe {done.get('recipe')}")
        info["engine"], info["recipe"] = quantized_engine(), recipe
    enc = model.side_encoder if frozen_side else None
    if q in ("side", "all") and done["quantize"] == "none":
        quantize_linear_int8(enc.model, recipe)
        enc.precision = "fp32"  # int8 products, float32 around them (autocast does not reach them)
        enc.quantized = f"int8-dynamic-{recipe}"  # in its cache key: int8 states never mix with others
    if q in ("host", "all") and done["quantize"] == "none":
        quantize_linear_int8(model.net, recipe)
        model.net.set_precision("fp32")
        model.precision = "fp32"
    if enc is not None:
        if side_max_tokens is not None:
            enc.max_tokens = min(enc.max_tokens, side_max_tokens)
        info["side_max_tokens"] = enc.max_tokens
    if q in ("side", "all"):
        info["int8_linear_layers"]["side"] = count_quantized(enc.model)
    if q in ("host", "all"):
        info["int8_linear_layers"]["host"] = count_quantized(model.net)
    info["precision"] = {"host": model.net.precision, "side": enc.precision if enc is not None else None}
    model.fast_path = info
    return info
