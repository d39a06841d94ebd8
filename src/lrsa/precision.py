"""Compute precision of the networks: ``fp32`` (the reference) or ``bf16`` (autocast).

``bf16`` runs the matrix products and attention of every forward pass (the tweet encoder, the frozen side
encoder, fusion and heads) in bfloat16 under ``torch.autocast``; weights, optimizer moments, losses and
softmaxes stay float32. It pays on CPUs with native bfloat16 (Intel AMX or AVX512-BF16: 3-4x faster
MiniLM forwards measured here) and on CUDA GPUs; elsewhere it is slower than fp32 and ``check`` says so.
Where the states are cached (side texts, frozen lower layers) the cache key holds the precision, so fp32
and bf16 states never mix.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Literal, get_args

import torch

from lrsa.env import cpu_flags

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 matrix instructions (Linux: AMX-BF16 or AVX512-BF16 flags)."""
    flags = cpu_flags() or set()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def check(precision: str) -> str:
    """``precision`` if known; a ``ValueError`` naming the choices otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def note(precision: str, device: str = "cpu") -> str | None:
    """A warning when ``bf16`` will be slow here (a CPU without native bfloat16), else None."""
    if precision == "bf16" and device == "cpu" and not cpu_has_bf16():
        return ("precision bf16 on a CPU without AMX/AVX512-BF16: results are valid but slower than fp32; "
                "use --precision fp32 on this machine")
    return None


def autocast(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager:
    """The context every forward pass runs in: bf16 autocast, or nothing for fp32."""
    if check(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)
