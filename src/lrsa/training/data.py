"""Benchmark splits -> encoded items + side tables (frozen, cached states of rationales and captions)."""

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
from lrsa.model.inputs import Encoded, encode_post


@dataclass
class Split:
    name: str
    examples: list[Example]
    items: list[Encoded]
    side: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def side_texts(examples: list[Example], run: RunConfig, side: dict[str, dict[str, list[str]]] | None,
               rationales: dict[str, Rationale] | None, dataset: str) -> dict[str, list[str]]:
    """The side texts of each example by kind; a missing caption or rationale is an error."""
    m = run.model
    out: dict[str, list[str]] = {}
    if m.image_side == "captions":
        out["visual"] = [image_text(side, m.image_text_source, ex.image_id, m.image_text_max,
                                    f"{dataset} {ex.id}") for ex in examples]
    elif m.image_side == "pixels":
        raise DataError(dataset, "image_side=pixels",
                        "the benchmark images are not available here; train with image_side=captions "
                        "(image as text) or none")
    if m.uses_rationales:
        assert rationales is not None
        missing = [ex.id for ex in examples if ex.id not in rationales]
        if missing:
            raise DataError(f"rationale bundle {dataset}/{run.train.rationale_source}", f"id {missing[0]!r}",
                            f"no rationale for {len(missing)} example(s)")
        out["rat_text"] = [rationales[ex.id].text for ex in examples]
        out["rat_image"] = [rationales[ex.id].image for ex in examples]
    return out


def token_table(tokenizer: Any, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded token ids for side texts encoded by the trainable backbone (side_encoder=shared)."""
    enc = tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
    L = max(len(e) for e in enc)
    ids = torch.full((len(enc), L), tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros((len(enc), L), dtype=torch.bool)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = True
    return ids, mask


def load_split(run: RunConfig, split: str, tokenizer: Any, side_encoder: FrozenTextEncoder | None,
               data_dir: str | Path | None, rationales: dict[str, Rationale] | None,
               limit: int | None = None) -> Split:
    ds = run.train.dataset
    examples = load_dataset(ds, split, data_dir)
    if limit is not None:
        examples = examples[:limit]
    side = side_inputs(ds, data_dir) if run.model.image_side == "captions" else None
    texts = side_texts(examples, run, side, rationales, ds)
    items = []
    for i, ex in enumerate(examples):
        aspects = [(a.start, a.end, a.polarity) for a in ex.aspects]
        items.append(encode_post(tokenizer, ex.id, ex.words, run.model.max_tokens, aspects,
                                 {k: i for k in texts}))
    tables = {}
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
