"""What a run ran on: CPU model and the instruction sets its matrix kernels use, torch, threads.

Every training result records ``machine(threads)`` (``result.json`` ``machine``), because the same seed
trains to other numbers on CPUs whose kernels differ (AMX vs AVX-512 vs AVX2 moved test JMASA F1 by 1-2
points here): a table row must say which CPUs its seeds ran on.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

#: The /proc/cpuinfo flags that decide which matrix kernels oneDNN / MKL / llama.cpp pick.
KERNEL_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4", "vnni")


def _cpuinfo(cpuinfo: Path) -> tuple[str | None, list[str] | None]:
    """(first ``model name``, first ``flags`` line split) of a /proc/cpuinfo file; None for what it lacks."""
    model, flags = None, None
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model is None:
                model = value.strip()
            elif key == "flags" and flags is None:
                flags = value.split()
            if model is not None and flags is not None:
                break
    except OSError:
        pass
    return model, flags


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """This CPU's feature flags (x86 Linux), or None where /proc/cpuinfo has no ``flags`` line."""
    flags = _cpuinfo(cpuinfo)[1]
    return None if flags is None else set(flags)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """This CPU's model name (/proc/cpuinfo, else ``platform.processor()``), or None."""
    return _cpuinfo(cpuinfo)[0] or platform.processor() or None


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str | None, list[str] | None]:
    """(model name, sorted kernel-relevant flags) of this CPU, or None for what /proc/cpuinfo lacks."""
    model, flags = _cpuinfo(cpuinfo)  # one read of the file
    kernel = None if flags is None else sorted({f for f in flags if f.startswith(KERNEL_FLAG_PREFIXES)})
    return model or platform.processor() or None, kernel


def machine(threads: int | None = None) -> dict[str, Any]:
    """The record of where a run ran: CPU model and kernel flags, core count, torch version and threads."""
    import torch

    model, flags = cpu_info()
    return {"cpu_model": model, "cpu_flags": flags, "cpus": os.cpu_count(),
            "threads": threads if threads is not None else torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
