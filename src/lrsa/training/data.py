"""Benchmark splits -> encoded items + side tables (frozen, cached states of rationales and captions).

Joint hosts (span, generative) get one item per sentence. The aspect host (MASC) gets one item per gold
aspect, with id ``<sentence id>@<start>:<end>``; its image text is the sentence's, its rationales are the
aspect's own when the bundle is aspect-level (keyed the same way) or the sentence's when tweet-level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lrsa.config import RunConfig
from lrsa.data import load_dataset, side_inputs
from lrsa.data.schema import DataError, Example, Rationale
from lrsa.features.side_cache import FrozenTextEncoder
from lrsa.features.vision import image_text
from lrsa.model.inputs import Encoded, encode_aspect, encode_post, token_table


@dataclass
class Split:
    name: str
    examples: list[Example]
    items: list[Encoded]
    side: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def aspect_id(ex: Example, aspect: Any) -> str:
    """The item id of one gold aspect (the key of aspect-level rationales too)."""
    from lrsa.rationales.published import aspect_key

    return aspect_key(ex.id, aspect.start, aspect.end)


def load_rationales(run: RunConfig) -> dict[str, Rationale] | None:
    """The run's rationale bundle: tweet-level for the joint hosts (an aspect-level bundle is refused there),
    tweet- or aspect-level for the aspect host."""
    if not run.model.uses_rationales:
        return None
    from lrsa.rationales.bundle import load_bundle, read_manifest

    ds, src = run.train.dataset, run.train.rationale_source
    level = "tweet"
    if run.model.host == "aspect":
        level = read_manifest(ds).get("sources", {}).get(src, {}).get("provenance", {}).get("level", "tweet")
    return load_bundle(ds, src, level=level)


def side_texts(examples: list[Example], run: RunConfig, side: dict[str, dict[str, list[str]]] | None,
               rationales: dict[str, Rationale] | None, dataset: str) -> dict[str, list[str]]:
    """The side texts by kind: image text per sentence; rationales per item (sentence, or gold aspect for
    the aspect host). A missing caption or rationale is an error."""
    m = run.model
    out: dict[str, list[str]] = {}
    if m.image_side == "captions":
        out["visual"] = [image_text(side, m.image_text_source, ex.image_id, m.image_text_max,
                                    f"{dataset} {ex.id}") for ex in examples]
    if m.uses_rationales:
        assert rationales is not None
        if m.host == "aspect":  # one row per gold aspect: its own rationale (aspect-level) or its tweet's
            aspect_level = any("@" in k for k in rationales)
            keys = [aspect_id(ex, a) if aspect_level else ex.id for ex in examples for a in ex.aspects]
        else:
            keys = [ex.id for ex in examples]
        missing = [k for k in keys if k not in rationales]
        if missing:
            raise DataError(f"rationale bundle {dataset}/{run.train.rationale_source}", f"id {missing[0]!r}",
                            f"no rationale for {len(missing)} item(s)")
        if m.rationale_text:
            out["rat_text"] = [rationales[k].text for k in keys]
        out["rat_image"] = [rationales[k].image for k in keys]
    return out


def load_split(run: RunConfig, split: str, tokenizer: Any, side_encoder: FrozenTextEncoder | None,
               data_dir: str | Path | None, rationales: dict[str, Rationale] | None,
               limit: int | None = None, cache_dir: str | Path | None = None) -> Split:
    """One split as encoded items and side tables; ``cache_dir``: where frozen photo features are cached
    (side texts are cached by ``side_encoder``)."""
    ds = run.train.dataset
    examples = load_dataset(ds, split, data_dir)
    if limit is not None:
        examples = examples[:limit]
    side = side_inputs(ds, data_dir) if run.model.image_side == "captions" else None
    texts = side_texts(examples, run, side, rationales, ds)
    items = []
    m = run.model
    kinds = [*texts, *(["visual"] if m.image_side == "pixels" else [])]
    for i, ex in enumerate(examples):
        if m.host == "aspect":
            for a in ex.aspects:
                index = {k: (i if k == "visual" else len(items)) for k in kinds}
                items.append(encode_aspect(tokenizer, aspect_id(ex, a), ex.words, a.span, m.aspect_input,
                                           m.max_tokens, a.polarity, index))
            continue
        aspects = [(a.start, a.end, a.polarity) for a in ex.aspects]
        items.append(encode_post(tokenizer, ex.id, ex.words, m.max_tokens, aspects, {k: i for k in kinds}))
    tables = {}
    if m.image_side == "pixels":  # the real photos (Twitter-2015), EfficientNet-Lite0 regions cached on disk
        from lrsa.data.registry import image_path
        from lrsa.features.vision import PixelEncoder, pixel_table

        for ex in examples:
            if not ex.image_id:
                raise DataError(ds, ex.id, "example has no image id (image_side=pixels needs its photo)")
        paths = [image_path(ds, ex.image_id, data_dir) for ex in examples]
        tables["visual"] = pixel_table(paths, PixelEncoder(m.pixel_encoder), cache_dir)
    for kind, tx in texts.items():
        if run.model.side_encoder == "frozen":
            assert side_encoder is not None
            tables[kind] = side_encoder.encode(tx)
        else:
            tables[kind] = token_table(tokenizer, tx, run.model.side_max_tokens)
    return Split(split, examples, items, tables)


def attach_lower_states(split: Split, net: Any, fingerprint: str, cache_dir: str | Path | None,
                        batch_size: int = 32) -> None:
    """Cache the frozen lower layers' output for every item (``split.side["lower"]``, float32)."""
    import hashlib

    from lrsa.features.side_cache import atomic_save_safetensors

    if not net.n_frozen:
        return
    h = hashlib.sha256(f"{fingerprint}:{net.n_frozen}".encode())
    if net.precision != "fp32":  # fp32 keys stay those of the caches written before precision existed
        h.update(f":{net.precision}".encode())
    for it in split.items:
        h.update(str(it.ids).encode())
    path = Path(cache_dir) / "lower" / f"{h.hexdigest()}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        from safetensors.torch import load_file

        d = load_file(str(path))
        states, mask = d["states"], d["mask"].bool()
    else:
        n, L = len(split.items), max(len(it.ids) for it in split.items)
        states = torch.zeros(n, L, net.hidden)
        mask = torch.zeros(n, L, dtype=torch.bool)
        was = net.training
        net.eval()
        order = sorted(range(n), key=lambda i: len(split.items[i].ids))
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            ll = max(len(split.items[i].ids) for i in idx)
            ids = torch.zeros(len(idx), ll, dtype=torch.long)
            att = torch.zeros(len(idx), ll, dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :len(split.items[i].ids)] = torch.tensor(split.items[i].ids)
                att[r, :len(split.items[i].ids)] = 1
            out = net.lower_states(ids, att)
            for r, i in enumerate(idx):
                li = len(split.items[i].ids)
                states[i, :li] = out[r, :li]
                mask[i, :li] = True
        net.train(was)
        if path is not None:
            atomic_save_safetensors({"states": states, "mask": mask.to(torch.uint8)}, path)
    split.side["lower"] = (states, mask)
    for i, it in enumerate(split.items):
        it.side_index["lower"] = i
