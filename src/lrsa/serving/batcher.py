"""Inference off the event loop, with optional dynamic micro-batching.

All model calls run in one dedicated inference thread (models are not assumed thread-safe, and torch
parallelises inside a call). With batching on, each request's posts are queued; a collector task takes the
first waiting job, keeps collecting for up to `max_wait_ms` or until `max_batch` posts are waiting, and
runs them as one `predict_batch` call. While a batch runs, new requests pile up and form the next batch.
With batching off, every request is its own `predict_batch` call in the same thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lrsa.data.schema import Prediction
from lrsa.serving.config import BatchingConfig
from lrsa.serving.errors import ApiError
from lrsa.serving.predictor import Post

RunBatch = Callable[[list[Post]], list[Prediction]]


@dataclass
class BatchResult:
    predictions: list[Prediction]
    queue_ms: float  # from submission until the batch holding it started
    inference_ms: float  # the predict_batch call that served it
    batch_posts: int  # posts in that call (>= this request's posts when requests were merged)


@dataclass
class _Job:
    posts: list[Post]
    future: asyncio.Future
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class BatcherStats:
    requests: int = 0
    posts: int = 0
    batches: int = 0
    rejected_overloaded: int = 0
    failed_batches: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)  # posts per predict_batch call -> count

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "posts": self.posts,
            "batches": self.batches,
            "mean_batch_posts": round(self.posts / self.batches, 3) if self.batches else 0.0,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "rejected_overloaded": self.rejected_overloaded,
            "failed_batches": self.failed_batches,
        }


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere. Batches of varying shapes leave freed tensor memory in malloc's
    heaps (resident memory creeps up under load); trimming after each model call hands it back to the OS."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class InferenceRunner:
    """Owns the inference thread and (when enabled) the micro-batching queue. Start/stop inside a loop."""

    def __init__(self, run_batch: RunBatch, config: BatchingConfig):
        self._run_batch = run_batch
        self.config = config
        self.stats = BatcherStats()
        self._executor: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._collector: asyncio.Task | None = None
        self._queued_posts = 0
        self._arrived: asyncio.Event | None = None
        self._trim = _malloc_trim() if config.trim_interval_s >= 0 else None
        self._last_trim = time.monotonic()

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrsa-inference")
        if self.config.enabled:
            self._queue = asyncio.Queue()
            self._arrived = asyncio.Event()
            self._collector = asyncio.create_task(self._collect_forever(), name="lrsa-microbatcher")

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            try:
                await self._collector
            except asyncio.CancelledError:
                pass
            self._collector = None
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(ApiError("overloaded", "server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, posts: list[Post]) -> BatchResult:
        if self._executor is None:
            raise RuntimeError("InferenceRunner.start() was not called")
        self.stats.requests += 1
        if not self.config.enabled:
            return await self._run_direct(posts)
        assert self._queue is not None
        if self._queued_posts + len(posts) > self.config.max_queue:
            self.stats.rejected_overloaded += 1
            raise ApiError(
                "overloaded",
                f"{self._queued_posts} posts are already queued (limit {self.config.max_queue})",
                headers={"Retry-After": "1"},
            )
        job = _Job(posts=posts, future=asyncio.get_running_loop().create_future())
        self._queued_posts += len(posts)
        self._queue.put_nowait(job)
        self._arrived.set()
        return await job.future

    async def _run_direct(self, posts: list[Post]) -> BatchResult:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        preds, started, ended = await loop.run_in_executor(self._executor, self._timed_run, posts)
        self._count(len(posts))
        return BatchResult(preds, (started - t0) * 1000, (ended - started) * 1000, len(posts))

    def _timed_run(self, posts: list[Post]) -> tuple[list[Prediction], float, float]:
        started = time.perf_counter()
        try:
            preds = self._run_batch(posts)
        finally:
            now = time.monotonic()
            if self._trim is not None and now - self._last_trim >= self.config.trim_interval_s:
                self._trim(0)
                self._last_trim = now
        ended = time.perf_counter()
        if len(preds) != len(posts):
            raise RuntimeError(f"predictor returned {len(preds)} predictions for {len(posts)} posts")
        return preds, started, ended

    def _count(self, n: int) -> None:
        self.stats.batches += 1
        self.stats.posts += n
        self.stats.batch_sizes[n] = self.stats.batch_sizes.get(n, 0) + 1

    async def _collect_forever(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        pending: _Job | None = None  # a job that did not fit into the previous batch
        while True:
            first = pending if pending is not None else await self._queue.get()
            pending = None
            jobs, n = [first], len(first.posts)
            deadline = loop.time() + self.config.max_wait_ms / 1000
            while n < self.config.max_batch:
                if self._queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    # Wait on an event, not on queue.get(): cancelling a get() on timeout could lose a job.
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), remaining)
                    except TimeoutError:
                        break
                    continue
                job = self._queue.get_nowait()
                if n + len(job.posts) > self.config.max_batch:
                    pending = job
                    break
                jobs.append(job)
                n += len(job.posts)
            self._queued_posts -= n
            posts = [p for job in jobs for p in job.posts]
            try:
                preds, started, ended = await loop.run_in_executor(self._executor, self._timed_run, posts)
            except Exception as e:
                self.stats.failed_batches += 1
                if len(jobs) == 1:
                    if not jobs[0].future.done():
                        jobs[0].future.set_exception(e)
                    continue
                # One request must not fail the others merged with it: rerun each request on its own.
                for job in jobs:
                    try:
                        preds, started, ended = await loop.run_in_executor(self._executor, self._timed_run, job.posts)
                    except Exception as e1:
                        if not job.future.done():
                            job.future.set_exception(e1)
                        continue
                    self._count(len(job.posts))
                    if not job.future.done():
                        job.future.set_result(BatchResult(preds, (started - job.submitted) * 1000,
                                                          (ended - started) * 1000, len(job.posts)))
                continue
            self._count(n)
            i = 0
            for job in jobs:
                k = len(job.posts)
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(
                        BatchResult(
                            preds[i : i + k],
                            (started - job.submitted) * 1000,
                            (ended - started) * 1000,
                            n,
                        )
                    )
                i += k
