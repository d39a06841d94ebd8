"""Batch prediction over large JSONL files (``lrsa predict --input posts.jsonl --out preds.jsonl``).

Contract:
- input: one post per line, ``{"id"?, "text", "image"?, "image_text"?, "aspects"?}`` (the user JSONL format of
  docs/data.md); ``image`` is a path relative to the input file. A post without ``id`` is keyed
  ``line-<n>`` (its 1-based line number), so a rerun finds the same key. Blank lines are ignored.
- output: one line per post, in input order: the ``Prediction`` as JSON, its ``id`` the post's key.
- errors: a line that is not a JSON object with a string ``text``, or a post the model refuses, is an error
  naming the file and line; with ``lenient`` it becomes an output line ``{"id", "line", "error"}`` and is
  counted in the returned summary (the rest of its batch is still predicted).
- streaming: posts are read, predicted and written one batch at a time; memory does not grow with the
  input (only the set of finished ids is kept).
- resume: an existing output is read first and its ids are skipped; a torn last line (a crash mid-write) is
  cut off. Every batch is flushed and fsynced when it is written, so a kill loses at most the batches in
  flight.
- workers: with ``workers > 1`` batches are predicted by that many processes, each loading the checkpoint
  once (``threads`` torch threads each); at most ``2 x workers`` batches are in flight (memory stays flat)
  and they are written in input order, so the output is the same as with one process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from lrsa.data.schema import DataError


def finished_ids(dest: Path) -> set[str]:
    """Ids already written to ``dest``; a torn last line is truncated away."""
    done: set[str] = set()
    if not dest.exists():
        return done
    good = 0
    with open(dest, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                done.add(json.loads(raw)["id"])
            except (ValueError, KeyError, TypeError):
                break
            good += len(raw)
    if good != dest.stat().st_size:
        with open(dest, "r+b") as fh:
            fh.truncate(good)
    return done


def _read_post(line: str, n: int, src: Path) -> dict[str, Any]:
    try:
        post = json.loads(line)
    except ValueError as e:
        raise DataError(str(src), f"line {n}", f"not JSON ({e.msg})") from None
    if not isinstance(post, dict) or not isinstance(post.get("text"), str):
        raise DataError(str(src), f"line {n}", "needs a JSON object with a string 'text'")
    if post.get("id") is not None and not isinstance(post["id"], str):
        raise DataError(str(src), f"line {n}", "'id' must be a string")
    post = dict(post)
    post["id"] = post.get("id") or f"line-{n}"
    if post.get("image"):
        post["image"] = str((src.parent / post["image"]).resolve())
    return post


def _predict_rows(model: Any, batch: list[tuple[int, dict[str, Any]]], use_rationales: bool,
                  lenient: bool, explain: bool = False) -> tuple[list[str], str | None, int]:
    """Output lines of one batch, and (not lenient) the error that stops the run, and the errors counted."""
    try:
        preds = model.predict_batch([p for _, p in batch], use_rationales=use_rationales, explain=explain)
        return [json.dumps(p.model_dump(), ensure_ascii=False) + "\n" for p in preds], None, 0
    except (ValueError, OSError) as err:
        if not lenient:
            return [], str(err), 0
    rows, errors = [], 0
    for n, post in batch:  # find the bad post(s); their neighbours are still predicted
        try:
            p = model.predict_batch([post], use_rationales=use_rationales, explain=explain)[0]
            rows.append(json.dumps(p.model_dump(), ensure_ascii=False) + "\n")
        except (ValueError, OSError) as e:
            rows.append(json.dumps({"id": post["id"], "line": n, "error": str(e)}) + "\n")
            errors += 1
    return rows, None, errors


_models: dict[tuple, Any] = {}  # per process: the checkpoints a --workers process or a partition has loaded


def _model(checkpoint: str, backend: str | None, precision: str | None, threads: int | None) -> Any:
    """The model of this process for these settings, loaded on first use and kept."""
    from lrsa.api import LRSA

    key = (str(checkpoint), backend, precision, threads)
    if key not in _models:
        _models[key] = LRSA.from_pretrained(checkpoint, rationale_backend=backend, precision=precision,
                                            threads=threads)
    return _models[key]


def predict_partition(checkpoint: str, posts: list[dict[str, Any]], batch_size: int = 64,
                      rationale_backend: str | None = None, precision: str | None = None,
                      threads: int | None = None) -> list[dict[str, Any]]:
    """Predictions (JSON-able dicts, in order) for one partition of posts: what a cluster engine's worker
    calls (Dask ``map_partitions``, Ray Data ``map_batches``, Spark ``mapInPandas``; README). The model is
    loaded once per process and reused by every later partition of that process. ``rationale_backend``: None
    writes each rationale part with the writer the model was trained with (as ``LRSA.from_pretrained``)."""
    preds = _model(checkpoint, rationale_backend, precision, threads).predict_batch(list(posts),
                                                                                   batch_size=batch_size)
    return [p.model_dump(mode="json") for p in preds]


def _worker_rows(settings: tuple, batch: list[tuple[int, dict[str, Any]]], use_rationales: bool, lenient: bool,
                 explain: bool = False):
    return _predict_rows(_model(*settings), batch, use_rationales, lenient, explain)


def _pool(workers: int):
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _worker_settings(model: Any, threads: int) -> tuple:
    """What a worker process needs to load ``model`` again (``_model``'s arguments)."""
    backend = model.rationale_backend
    if model.path is None or not (backend is None or isinstance(backend, str)):
        raise ValueError("--workers needs a model loaded from a checkpoint directory with its trained rationale "
                         "writers or a named rationale backend (each worker process loads it again)")
    return str(model.path), backend, model.precision, threads


def predict_file(model: Any, src: str | Path, dest: str | Path, batch_size: int = 64, lenient: bool = False,
                 use_rationales: bool = True, progress: bool = True,
                 log: Callable[[str], None] | None = None, workers: int = 1,
                 worker_threads: int = 1, explain: bool = False) -> dict[str, Any]:
    """Predict every post of ``src`` into ``dest`` (see the module doc); returns a summary
    ``{"posts", "already_done", "errors", "seconds", "posts_per_s", "workers"}``. ``explain``: every aspect
    also carries its ``attribution`` (``LRSA.predict_batch(explain=True)``; several forward passes per post)."""
    from collections import deque

    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise FileNotFoundError(f"input {src} not found")
    if workers < 1:
        raise ValueError(f"workers={workers}: at least 1")
    dest.parent.mkdir(parents=True, exist_ok=True)
    done = finished_ids(dest)
    summary = {"posts": 0, "already_done": len(done), "errors": 0}
    t0 = time.perf_counter()
    total = sum(1 for line in open(src, encoding="utf-8") if line.strip()) if progress else None

    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]} posts/s"), TimeRemainingColumn(), transient=True)
        bar.start()
        task = bar.add_task("predict", total=total, completed=len(done), rate="–")

    settings = _worker_settings(model, worker_threads) if workers > 1 else None
    pool = _pool(workers) if workers > 1 else None
    with open(dest, "a", encoding="utf-8") as out:
        batch: list[tuple[int, dict[str, Any]]] = []
        seen: set[str] = set()  # ids read from this input in this run
        in_flight: deque = deque()  # (first line, last line, size, future) in input order

        def write(lines: list[str]) -> None:
            out.write("".join(lines))
            out.flush()
            os.fsync(out.fileno())

        def land(first: int, last: int, size: int, result) -> None:
            rows, error, errors = result
            if error is not None:
                raise DataError(str(src), f"lines {first}-{last}", error)
            write(rows)
            summary["errors"] += errors
            summary["posts"] += size
            if bar is not None:
                rate = summary["posts"] / max(1e-9, time.perf_counter() - t0)
                bar.update(task, advance=size, rate=f"{rate:.1f}")

        def drain(keep: int) -> None:
            while len(in_flight) > keep:
                first, last, size, fut = in_flight.popleft()
                land(first, last, size, fut.result())

        def flush() -> None:
            if not batch:
                return
            first, last = batch[0][0], batch[-1][0]
            if pool is None:
                land(first, last, len(batch), _predict_rows(model, batch, use_rationales, lenient, explain))
            else:
                in_flight.append((first, last, len(batch),
                                  pool.submit(_worker_rows, settings, list(batch), use_rationales, lenient,
                                              explain)))
                drain(2 * workers)
            batch.clear()

        try:
            with open(src, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        post = _read_post(line, n, src)
                    except DataError as err:
                        if not lenient:
                            raise
                        key = f"line-{n}"
                        if key not in done:
                            flush()
                            drain(0)  # the error line keeps its place in input order
                            write([json.dumps({"id": key, "line": n, "error": str(err)}) + "\n"])
                            summary["errors"] += 1
                            done.add(key)
                        continue
                    if post["id"] in done:
                        if post["id"] in seen:  # twice in this input: the output could not say which
                            err = DataError(str(src), f"line {n}", f"duplicate id {post['id']!r}")
                            if not lenient:
                                raise err
                            summary["errors"] += 1
                        continue
                    done.add(post["id"])
                    seen.add(post["id"])
                    batch.append((n, post))
                    if len(batch) >= batch_size:
                        flush()
                flush()
                drain(0)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            if bar is not None:
                bar.stop()
    seconds = time.perf_counter() - t0
    summary.update(seconds=round(seconds, 2), posts_per_s=round(summary["posts"] / max(seconds, 1e-9), 1),
                   workers=workers)
    if log:
        log(f"{summary['posts']} posts predicted in {seconds:.1f}s ({summary['posts_per_s']} posts/s), "
            f"{summary['already_done']} already done, {summary['errors']} errors -> {dest}")
    return summary
