"""Run records: the part of a finished table run that the repository keeps.

A run directory (``runs/reproduce/<profile>/<key>/``: checkpoints, predictions, curves) lives on the
machine that trained it and is lost with that machine; the table must not be. When a run has finished,
``lrsa reproduce`` writes its record to ``<results>/<dataset>/runs/<key after the dataset>.json``, which is
committed, and the reports and the README table are built from records only: any clone rebuilds them.

A record is one JSON object:

- ``key``: the run's key, ``<dataset>/[masc/]<host>/<row>/seed<n>``;
- ``origin``: ``run`` (written from the run directory) or ``legacy`` (see below);
- ``result``: the run's ``result.json`` (config, commit, seed, best epoch, history, dev and test scores);
- ``test_items``: ``{"task", "items", "ids_sha256", "counts"}``, per test item the counts that the paired
  bootstrap resamples (``lrsa.training.metrics.item_counts``: JMASA ``[tp, predicted, gold]`` per sentence,
  MASC ``[correct]`` per gold aspect) and the sha256 of the item ids they belong to, in order.

Beside a record, ``<record>.predictions_test.jsonl.gz`` archives the run's test predictions (the run
directory's ``predictions_test.jsonl``, gzipped; ``archive_predictions``), so that analyses per aspect
(benchmarks/rationale_breakdown.py) can be rerun from a clone after the run directory is gone; it is
checked against the record's per-item counts before it is written.

A ``legacy`` record keeps a run that finished before records existed and whose directory was lost: its
values come from the report that published them (``legacy_from``: report path and commit) and
``test_items`` is null. It counts in means, standard deviations and seed-paired differences; a paired
bootstrap uses the seeds whose records hold items (``lrsa.training.stats.paired``), and
``lrsa reproduce --redo-legacy`` retrains legacy runs to give them items.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

ORIGINS = ("run", "legacy")


def record_path(results: Path, key: str) -> Path:
    dataset, rest = key.split("/", 1)
    return Path(results) / dataset / "runs" / f"{rest}.json"


def read_record(results: Path, key: str) -> dict[str, Any] | None:
    path = record_path(results, key)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text(encoding="utf-8"))
    if rec.get("key") != key or rec.get("origin") not in ORIGINS or "result" not in rec:
        raise ValueError(f"{path}: not a run record for {key} (key, origin and result are required)")
    return rec


def _ids_sha256(task: str, ids: list[str]) -> str:
    return hashlib.sha256(("\n".join([task, *ids])).encode("utf-8")).hexdigest()


def item_record(task: str, gold: list, predictions: Path) -> dict[str, Any]:
    """The per-item counts of a run's test predictions (only the sentences it predicted, e.g. under a
    ``test_limit``), with the ids of the items they belong to hashed."""
    from lrsa.training.metrics import item_counts, read_predictions

    pred = read_predictions(predictions, gold)
    scored = [ex for ex in gold if ex.id in pred]
    ids = [ex.id for ex in scored] if task == "jmasa" else \
        [f"{ex.id}@{a.start}:{a.end}" for ex in scored for a in ex.aspects]
    counts = [list(c) for c in item_counts(task, scored, pred)]
    return {"task": task, "items": len(counts), "ids_sha256": _ids_sha256(task, ids), "counts": counts}


def write_record(results: Path, key: str, run_dir: Path, data_dir: str | Path | None = None,
                 gold: list | None = None) -> Path:
    """Write the record of the finished run in ``run_dir`` (atomically; one line of JSON)."""
    from lrsa.config import RunConfig
    from lrsa.data import load_dataset
    from lrsa.io import atomic_write_text

    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    task = RunConfig.model_validate(result["config"]).model.task
    items = None
    if result.get("test"):
        if gold is None:
            gold = load_dataset(key.split("/", 1)[0], "test", data_dir)
        items = item_record(task, gold, run_dir / "predictions_test.jsonl")
    path = record_path(results, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"key": key, "origin": "run", "result": result, "test_items": items}
    atomic_write_text(path, json.dumps(rec, separators=(",", ":"), sort_keys=True) + "\n")
    return path


def predictions_path(results: Path, key: str) -> Path:
    """Where the test predictions of the record ``key`` are archived: beside it, ``.predictions_test.jsonl.gz``."""
    return record_path(results, key).with_suffix(".predictions_test.jsonl.gz")


def archive_predictions(results: Path, key: str, run_dir: Path, gold: list) -> bool:
    """Archive ``run_dir``'s test predictions beside the record ``key`` (gzip, atomic; written once: False when
    the archive exists or the run directory has no predictions). The predictions must give the record's
    per-item counts exactly (``gold``: the test split), so an archive always belongs to its record; a run
    directory retrained since its record was written is refused with an error naming both files."""
    import gzip

    from lrsa.io import atomic_write_bytes

    dest = predictions_path(results, key)
    src = Path(run_dir) / "predictions_test.jsonl"
    rec = read_record(results, key)
    if dest.exists() or not src.is_file() or rec is None or not rec.get("test_items"):
        return False
    items = rec["test_items"]
    if item_record(items["task"], gold, src) != items:
        raise ValueError(f"{src}: these test predictions do not give the per-item counts of the record "
                         f"{record_path(results, key)} (was the run retrained after its record was written?)")
    atomic_write_bytes(dest, gzip.compress(src.read_bytes(), compresslevel=9, mtime=0))
    return True


def counts(rec: dict[str, Any]) -> tuple[str, np.ndarray] | None:
    """``(ids_sha256, counts [items, k])`` of a record, or None for a record without items."""
    items = rec.get("test_items")
    if not items:
        return None
    return items["ids_sha256"], np.asarray(items["counts"], dtype=np.float64)
