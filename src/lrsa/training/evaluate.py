"""Predicting and scoring a benchmark split with a network, shared by the training loop (dev selection)
and ``LRSA.evaluate_split`` (the final dev/test scores). It imports neither of them.

Predictions are ``{sentence id: [(start, end, polarity, confidence), ...]}``; aspect-host items
(``<sentence id>@<span>``) are gathered back under their sentence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from lrsa.data.schema import Aspect


def batches(items: list, size: int, order: list[int] | None = None, progress: str | None = None):
    """Chunks of ``items`` (in ``order``); ``progress``: show a progress bar with this description."""
    idx = order if order is not None else list(range(len(items)))
    starts = range(0, len(idx), size)
    if progress:
        from rich.progress import track

        starts = track(starts, description=progress, transient=True)
    for b in starts:
        yield [items[i] for i in idx[b:b + size]]


@torch.no_grad()
def predict_split(net, split, pad_id: int, batch_size: int = 32, progress: str | None = None
                  ) -> dict[str, list[tuple[int, int, str, float]]]:
    from lrsa.model.inputs import collate

    net.eval()
    order = sorted(range(len(split.items)), key=lambda i: len(split.items[i].ids))
    out: dict[str, list] = {ex.id: [] for ex in split.examples}
    for chunk in batches(split.items, batch_size, order, progress):
        batch = collate(chunk, pad_id, split.side)
        for rid, aspects in zip(batch["ids"], net.decode(batch)):
            out[rid.split("@", 1)[0]].extend(aspects)  # aspect-host items "<sentence id>@<span>"
    for ex in split.examples:
        out[ex.id].sort(key=lambda a: (a[0], a[1]))
    return out


@torch.no_grad()
def masc_split(net, split, pad_id: int, batch_size: int = 32, progress: str | None = None
               ) -> dict[str, list[Aspect]]:
    """MASC on gold aspects: the model's polarity for every gold span."""
    from lrsa.model.inputs import collate

    net.eval()
    gold = {ex.id: ex for ex in split.examples}
    out: dict[str, list[Aspect]] = {}
    for chunk in batches(split.items, batch_size, progress=progress):
        batch = collate(chunk, pad_id, split.side)
        spans = [[a.span for a in gold[rid].aspects] for rid in batch["ids"]]
        for rid, sp, pols in zip(batch["ids"], spans, net.classify_spans(batch, spans)):
            out[rid] = [Aspect(start=s, end=e, polarity=p) for (s, e), p in zip(sp, pols)]
    return out


def as_aspects(pred: dict[str, list[tuple[int, int, str, float]]]) -> dict[str, list[Aspect]]:
    return {k: [Aspect(start=s, end=e, polarity=p) for s, e, p, _ in v] for k, v in pred.items()}


def write_predictions(pred: dict[str, list[tuple[int, int, str, float]]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rid, aspects in pred.items():
            fh.write(json.dumps({"id": rid, "aspects": [
                {"start": s, "end": e, "polarity": p, "confidence": round(c, 4)} for s, e, p, c in aspects]})
                + "\n")
    os.replace(tmp, path)


def score_split(split, pred) -> dict[str, Any]:
    from lrsa.training.metrics import score

    return score(split.examples, as_aspects(pred))


#: the dev score that selects the checkpoint, per task (the aspect host predicts given aspects: MASC)
SELECTION = {"jmasa": ("JMASA F1", lambda s: s["jmasa"]["f1"]), "masc": ("MASC acc", lambda s: s["masc"]["acc"])}
