"""Batch generation: cache look-up, bounded concurrency, output checks, a JSON report.

``generate(inputs, backend, cache=...)`` asks the backend only for parts missing from the cache; each result
is committed to the cache as soon as it arrives, so a killed run resumes where it stopped and a finished job
reruns with zero backend calls. Failures (after the backend's own retries) are counted, not raised, and the
parts stay missing so the next run asks for them again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from lrsa.data.schema import Example, Rationale
from lrsa.rationales.backends import KINDS, Backend, BackendError, Request
from lrsa.rationales.cache import RationaleCache, cache_key
from lrsa.rationales.checks import FLAGS, check
from lrsa.rationales.inputs import RationaleInput, from_example
from lrsa.rationales.prompts import build_messages


@dataclass
class Report:
    backend: str = ""
    model: str = ""
    requested: int = 0  # rationale parts asked for (L_t and L_i count separately)
    generated: int = 0  # produced by the backend in this run
    cached: int = 0  # found in the cache
    failed: int = 0  # failed for good after retries (still missing)
    retried: int = 0  # retry attempts made by the backend
    calls: int = 0  # backend calls including retries
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    skipped: int = 0  # parts with nothing to generate from (e.g. L_i of a post without image information)
    flagged: dict[str, int] = field(default_factory=lambda: {f: 0 for f in FLAGS})
    items: int = 0  # posts
    complete_items: int = 0  # posts with every part present
    rationales_per_s: float = 0.0
    est_cost_usd: float | None = None

    def merge(self, other: "Report") -> None:
        """Add the counts of another run (one chunk of a stream) to this report."""
        for name in ("requested", "generated", "cached", "failed", "retried", "calls", "prompt_tokens",
                     "completion_tokens", "skipped", "items", "complete_items"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.flagged.items():
            self.flagged[k] = self.flagged.get(k, 0) + v
        if other.est_cost_usd is not None:
            self.est_cost_usd = round((self.est_cost_usd or 0.0) + other.est_cost_usd, 6)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["est_cost_usd"] is None:
            del d["est_cost_usd"]
        return d

    def save(self, path: str | Path) -> None:
        from lrsa.io import atomic_write_json

        atomic_write_json(path, self.to_dict())


@dataclass
class Result:
    rationales: dict[str, Rationale]  # id -> rationale (complete items and items with missing parts)
    missing: dict[str, list[str]]  # id -> kinds that failed
    report: Report
    provenance: dict[str, Any] = field(default_factory=dict)  # shared by every item (backend, model, ...)

    def records(self, full_provenance: bool = False) -> list[dict[str, Any]]:
        """Bundle / export records (``{"id", "text", "image", "provenance"}``) of complete items, in order.

        Unless ``full_provenance``, a record's provenance holds only what differs from ``self.provenance``
        (image source, flags), which bundles keep once in their manifest."""
        out = []
        for rid, r in self.rationales.items():
            if rid in self.missing:
                continue
            prov = r.provenance if full_provenance else {
                k: v for k, v in r.provenance.items() if self.provenance.get(k) != v}
            rec = {"id": rid, "text": r.text, "image": r.image}
            if prov:
                rec["provenance"] = prov
            out.append(rec)
        return out


@dataclass
class _Part:
    inp: RationaleInput
    kind: str
    task: str
    key: str
    input_hash: str
    prompt_hash: str


def _plan(inputs: list[RationaleInput], backend: Backend, kinds: tuple[str, ...]) -> tuple[list[_Part], int]:
    parts, skipped = [], 0
    settings = backend.settings()
    for inp in inputs:
        for kind in kinds:
            task = backend.task_for(kind, inp)
            if task is None:
                skipped += 1
                continue
            ih = inp.input_hash(kind, with_image_bytes=backend.vision and task == "image",
                                with_image_texts=backend.reads_image_texts(task))
            ph = backend.prompt_hash(task)
            parts.append(_Part(inp, kind, task, cache_key(backend.name, backend.model, ph, settings, ih, kind),
                               ih, ph))
    return parts, skipped


async def agenerate(inputs: Iterable[RationaleInput], backend: Backend, cache: RationaleCache | None = None,
                    concurrency: int = 4, max_tokens: int = 160, kinds: tuple[str, ...] = KINDS,
                    on_progress: Callable[[int, int], None] | None = None, cache_only: bool = False,
                    prices: dict[str, float] | None = None) -> Result:
    """Generate every missing part; ``prices`` = USD per 1M ``prompt`` / ``completion`` tokens."""
    t0 = time.perf_counter()
    inputs = list(inputs)
    rep = Report(backend=backend.name, model=backend.model, items=len(inputs))
    parts, rep.skipped = _plan(inputs, backend, kinds)
    rep.requested = len(parts)
    outputs: dict[tuple[str, str], str] = {}
    use_cache = cache is not None and backend.cacheable
    todo = parts
    if use_cache:
        hits = cache.get_many([p.key for p in parts])
        todo = []
        for p in parts:
            e = hits.get(p.key)
            if e is None:
                todo.append(p)
            else:
                outputs[(p.inp.id, p.kind)] = e.output
        rep.cached = len(parts) - len(todo)
    if cache_only:
        rep.failed = len(todo)
        todo = []
    done = rep.cached
    if on_progress:
        on_progress(done, len(parts))
    failed: set[tuple[str, str]] = set()
    queue = iter(todo)
    settings = backend.settings()

    async def worker() -> None:
        nonlocal done
        for p in queue:
            messages = build_messages(p.task, p.inp, backend.prompt_version) if backend.checked else []
            try:
                c = await backend.complete(Request(p.kind, p.task, p.inp, messages))
                if backend.checked and check(c.text, max_tokens)[1] == "empty":
                    # an empty answer is never a rationale: not cached, counted as failed, retried next run
                    raise BackendError(f"{backend.name}: empty reply for {p.inp.id} ({p.kind})", c.attempts)
            except BackendError as err:
                rep.failed += 1
                rep.calls += err.attempts
                rep.retried += max(0, err.attempts - 1)
                failed.add((p.inp.id, p.kind))
            else:
                rep.generated += 1
                rep.calls += c.attempts
                rep.retried += max(0, c.attempts - 1)
                rep.prompt_tokens += c.prompt_tokens
                rep.completion_tokens += c.completion_tokens
                outputs[(p.inp.id, p.kind)] = c.text
                if use_cache:
                    cache.put(p.key, backend=backend.name, model=backend.model, prompt_hash=p.prompt_hash,
                              settings=settings, input_hash=p.input_hash, kind=p.kind, output=c.text,
                              prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                              item_id=p.inp.id)
            done += 1
            if on_progress:
                on_progress(done, len(parts))

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(todo) or 1)))))

    prov = backend.provenance()
    rationales: dict[str, Rationale] = {}
    missing: dict[str, list[str]] = {}
    planned = {(p.inp.id, p.kind) for p in parts}
    for inp in inputs:
        vals: dict[str, str] = {}
        flags: dict[str, str] = {}
        for kind in kinds:
            if (inp.id, kind) not in planned:
                vals[kind] = ""
                continue
            raw = outputs.get((inp.id, kind))
            if raw is None:
                missing.setdefault(inp.id, []).append(kind)
                vals[kind] = ""
                continue
            if backend.checked:
                text, flag = check(raw, max_tokens)
                if flag:
                    rep.flagged[flag] += 1
                    flags[kind] = flag
            else:
                text = raw
            vals[kind] = text
        p = dict(prov)
        if inp.image_source:
            p["image_source"] = inp.image_source
        if flags:
            p["flags"] = flags
        rationales[inp.id] = Rationale(text=vals.get("text", ""), image=vals.get("image", ""), provenance=p)
    rep.complete_items = len(inputs) - len(missing)
    rep.wall_s = round(time.perf_counter() - t0, 4)
    rep.rationales_per_s = round((rep.requested - rep.failed) / rep.wall_s, 2) if rep.wall_s > 0 else 0.0
    if prices:
        rep.est_cost_usd = round(rep.prompt_tokens * prices.get("prompt", 0.0) / 1e6
                                 + rep.completion_tokens * prices.get("completion", 0.0) / 1e6, 6)
    return Result(rationales, missing, rep, prov)


def generate_stream(inputs: Iterable[RationaleInput], backend: Backend,
                    sink: Callable[[Result], None], chunk_size: int = 5000, **kwargs: Any) -> Report:
    """Generate for an input stream of any length in chunks (bounded memory); ``sink`` gets each chunk's
    result in order. Returns the merged report. The backend is closed at the end."""
    import itertools

    async def _run() -> Report:
        t0 = time.perf_counter()
        total = Report(backend=backend.name, model=backend.model)
        it = iter(inputs)
        try:
            while chunk := list(itertools.islice(it, chunk_size)):
                res = await agenerate(chunk, backend, **kwargs)
                total.merge(res.report)
                sink(res)
        finally:
            await backend.aclose()
        total.wall_s = round(time.perf_counter() - t0, 4)
        done = total.requested - total.failed
        total.rationales_per_s = round(done / total.wall_s, 2) if total.wall_s > 0 else 0.0
        return total

    return asyncio.run(_run())


def generate(inputs: Iterable[RationaleInput], backend: Backend, **kwargs: Any) -> Result:
    """Synchronous wrapper around ``agenerate`` (closes the backend afterwards)."""

    async def _run() -> Result:
        try:
            return await agenerate(inputs, backend, **kwargs)
        finally:
            await backend.aclose()

    return asyncio.run(_run())


def rationalize(post: Example | RationaleInput | str, backend: Backend, cache: RationaleCache | None = None,
                image_path: str | None = None, image_texts: list[str] | None = None,
                max_tokens: int = 160, kinds: tuple[str, ...] = KINDS) -> Rationale:
    """L_t and L_i with provenance for one post (an Example, an input, or a text with optional image);
    ``kinds``: the parts to write (a part left out is empty)."""
    if isinstance(post, Example):
        inp = from_example(post)
    elif isinstance(post, RationaleInput):
        inp = post
    else:
        inp = RationaleInput(id="post", text=post, image_path=image_path, image_texts=tuple(image_texts or ()))
    res = generate([inp], backend, cache=cache, concurrency=2, max_tokens=max_tokens, kinds=kinds)
    if res.missing:
        raise BackendError(f"rationale generation failed for parts {res.missing[inp.id]} "
                           f"(report: {res.report.to_dict()})")
    return res.rationales[inp.id]


#: provenance fields that decide whether two runs of a backend produce the same outputs
SAME_OUTPUT_KEYS = ("backend", "model", "prompt_version", "prompt_hashes", "settings")


def same_outputs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in SAME_OUTPUT_KEYS)


def seed_cache(inputs: list[RationaleInput], backend: Backend, cache: RationaleCache,
               records: dict[str, Rationale], kinds: tuple[str, ...] = KINDS) -> int:
    """Put the parts that an existing bundle of the same backend, model, prompts and settings already holds
    into the cache (so that a bundle committed on one machine resumes on another); returns how many.
    A bundle holds cleaned texts: cleaning them again leaves them as they are. Token counts are unknown (0)."""
    from lrsa.rationales.published import MISSING

    parts, _ = _plan(inputs, backend, kinds)
    have = cache.get_many([p.key for p in parts])
    settings = backend.settings()
    n = 0
    for p in parts:
        r = records.get(p.inp.id)
        text = getattr(r, p.kind) if r is not None else ""
        if p.key in have or not text or text == MISSING or (r.provenance.get("flags") or {}).get(p.kind):
            continue
        n += cache.put(p.key, backend=backend.name, model=backend.model, prompt_hash=p.prompt_hash,
                       settings=settings, input_hash=p.input_hash, kind=p.kind, output=text, item_id=p.inp.id)
    return n
