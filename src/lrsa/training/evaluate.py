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
    return _predict(net, split, pad_id, batch_size, progress, gold_spans=False)[0]


@torch.no_grad()
def predict_and_classify_split(net, split, pad_id: int, batch_size: int = 32, progress: str | None = None
                               ) -> tuple[dict[str, list[tuple[int, int, str, float]]], dict[str, list[Aspect]]]:
    """A joint host's predictions and, from the same forward pass, its polarity on every gold span (MASC
    forced onto the gold aspects)."""
    return _predict(net, split, pad_id, batch_size, progress, gold_spans=True)


def _predict(net, split, pad_id: int, batch_size: int, progress: str | None, gold_spans: bool):
    from lrsa.model.inputs import collate

    net.eval()
    order = sorted(range(len(split.items)), key=lambda i: len(split.items[i].ids))
    gold = {ex.id: ex for ex in split.examples}
    out: dict[str, list] = {ex.id: [] for ex in split.examples}
    forced: dict[str, list[Aspect]] = {}
    for chunk in batches(split.items, batch_size, order, progress):
        batch = collate(chunk, pad_id, split.side)
        if gold_spans:
            spans = [[a.span for a in gold[rid].aspects] for rid in batch["ids"]]
            decoded, polarities = net.decode_and_classify(batch, spans)
            for rid, sp, pols in zip(batch["ids"], spans, polarities):
                forced[rid] = [Aspect(start=s, end=e, polarity=p) for (s, e), p in zip(sp, pols)]
        else:
            decoded = net.decode(batch)
        for rid, aspects in zip(batch["ids"], decoded):
            out[rid.split("@", 1)[0]].extend(aspects)  # aspect-host items "<sentence id>@<span>"
    for ex in split.examples:
        out[ex.id].sort(key=lambda a: (a[0], a[1]))
    return out, forced


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


def evaluate_split(net, tokenizer, run, side_encoder, dataset: str, split: str,
                   data_dir: str | Path | None = None, limit: int | None = None,
                   rationale_source: str | None = None, log=None, progress: bool = False,
                   without_image: bool = False, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Predict a benchmark split with its committed rationales and captions and score it (what
    ``LRSA.evaluate_split`` runs). ``side_encoder``: a zero-argument callable returning the model's frozen
    side encoder (called only when the model has one); ``log``: stage messages (loading, encoding side
    texts); ``progress``: progress bars over the prediction batches; ``without_image``: every post as if it
    had no image (V and L_i empty), as text-only posts are read."""
    import time

    from lrsa.training.data import load_rationales, load_split
    from lrsa.training.metrics import score

    run = run.model_copy(update={"train": run.train.model_copy(update={
        "dataset": dataset, "rationale_source": rationale_source or run.train.rationale_source})})
    say = log or (lambda m: None)
    say(f"loading {dataset} {split}" + (f" ({run.train.rationale_source} rationales)"
                                        if run.model.uses_rationales else "")
        + "; side texts are encoded once (cached states are reused)")
    t0 = time.perf_counter()
    rationales = load_rationales(run)
    sp = load_split(run, split, tokenizer, side_encoder() if run.model.side_encoder == "frozen" else None,
                    data_dir, rationales, limit, cache_dir)
    say(f"{len(sp.examples)} sentences ready in {time.perf_counter() - t0:.1f}s")
    if without_image:  # the modality-dropout mechanism, applied to every row of the split
        from lrsa.model.inputs import drop_image_side

        drop_image_side({"side": sp.side})
    pad = tokenizer.pad_token_id or 0
    t0 = time.perf_counter()
    if run.model.task == "jmasa":  # a joint host: also its MASC, forced onto the gold spans (same pass)
        pred, forced = predict_and_classify_split(net, sp, pad, progress="predicting" if progress else None)
    else:
        pred, forced = predict_split(net, sp, pad, progress="predicting" if progress else None), None
    seconds = time.perf_counter() - t0
    scores = score_split(sp, pred)
    if forced is not None:
        scores["masc_forced"] = score(sp.examples, forced)["masc"]
        scores["masc"] = scores["masc_forced"]
    scores["predict_seconds"] = round(seconds, 2)
    scores["examples_per_s"] = round(len(sp.examples) / seconds, 2)
    return {"predictions": pred, "scores": scores, "examples": sp.examples}
