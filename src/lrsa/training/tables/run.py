"""Running a table (``lrsa reproduce``): every (dataset, row, seed) run of the plan trains into its own
directory under ``<runs>/<profile>/`` and is complete when its ``result.json`` exists; an interrupted run
resumes from its last finished epoch. A finished run leaves a record in ``<results>/<dataset>/runs/``
(``lrsa.training.records``), and a run with a record is not trained again. Several workers (processes) can
run the same plan at once: each run is claimed with a file lock, so they share the runs out. After the runs,
the reports are rebuilt (``lrsa.training.tables.report``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

from lrsa.training.records import read_record, record_path, write_record
from lrsa.training.tables.plan import PROFILES, Profile, RunSpec, plan, run_config, run_dir
from lrsa.training.tables.report import insert_summary, summary_markdown, write_report


def ensure_published_bundles(specs: list[RunSpec], data_dir: str | Path | None, log: Callable[[str], None]) -> None:
    """Build missing bundles of published sources (derived from the pinned data files; never committed), the
    runs' own and those a composed bundle takes its L_i from (``image_from``, e.g. ``qwen0.5b-arkmsa``).
    A rebuild is checked against the committed manifest's sha256 when the bundle is loaded."""
    from lrsa.rationales.bundle import bundle_path, read_manifest
    from lrsa.rationales.published import SOURCES, import_published

    needed = []
    for s in specs:
        if s.rationales:
            entry = read_manifest(s.dataset).get("sources", {}).get(s.rationales) or {}
            needed += [(s.dataset, s.rationales), (s.dataset, entry.get("provenance", {}).get("image_from"))]
    for d, src in dict.fromkeys((d, src) for d, src in needed if src in SOURCES):
        if not bundle_path(d, src).is_file():
            path, cov = import_published(d, src, data_dir)
            log(f"built rationale bundle {path} from the data directory ({cov})")


def encode_side_states(profile: Profile, specs: list[RunSpec], cache_dir: Path, data_dir: str | Path | None,
                       threads: int | None, overrides: dict[str, Any] | None, log: Callable[[str], None]) -> None:
    """Write the frozen side-text states of every planned run's train, dev and test splits into ``cache_dir``
    (the states its training and its test scoring read), and for a host whose lower layers are frozen their
    states of the train and dev sentences, training nothing: a stage before the rows train side by side
    (scripts/main.sh), so that none of them spends its own core on these states."""
    from lrsa.features.side_cache import FrozenTextEncoder, weights_fingerprint
    from lrsa.features.text import load_tokenizer, resolve_backbone
    from lrsa.model.lrsa import LRSANet
    from lrsa.training.data import attach_lower_states, load_rationales, load_split
    from lrsa.training.loop import set_threads

    t0 = time.perf_counter()
    for spec in specs:
        run = run_config(profile, spec, overrides, threads)
        m = run.model
        if m.side_encoder != "frozen" or not (m.uses_rationales or m.image_side == "captions"):
            continue
        set_threads(run.train.threads)
        enc = FrozenTextEncoder(m.side_backbone or m.backbone, m.side_max_tokens, cache_dir=cache_dir,
                                precision=run.train.precision, layers=m.side_layers)
        path = resolve_backbone(m.backbone)
        tok = load_tokenizer(path)
        rationales = load_rationales(run)
        limits = {"train": run.train.train_limit, "dev": run.train.dev_limit, "test": run.train.test_limit}
        # a host with frozen lower layers: their states too (the ones training caches, lrsa.training.loop.train)
        net = (LRSANet(m, path, side_dim=enc.hidden_size).set_precision(run.train.precision)
               if m.train_layers is not None else None)
        for split, limit in limits.items():
            if split != "test" or run.train.eval_test:
                sp = load_split(run, split, tok, enc, data_dir, rationales, limit, cache_dir)
                if net is not None and split != "test":
                    attach_lower_states(sp, net, weights_fingerprint(path), cache_dir)
        log(f"[{time.perf_counter() - t0:6.0f}s] side states of {spec.key}: {enc.stats['encoded']} encoded, "
            f"{enc.stats['cache_hits']} cached")


def reproduce(profile_name: str, runs: str | Path = "runs/reproduce", results: str | Path | None = None,
              datasets: list[str] | None = None, hosts: list[str] | None = None,
              variants: list[str] | None = None, seeds: int | None = None, max_runs: int | None = None,
              data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              threads: int | None = None, overrides: dict[str, Any] | None = None,
              tasks: list[str] | None = None, rationales: list[str] | None = None,
              redo_legacy: bool = False, encode_only: bool = False,
              log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run (or resume) the profile's runs, then write one report per dataset. Returns report paths.
    ``redo_legacy``: retrain the runs whose records are legacy (no per-item counts). ``encode_only``: only
    write the runs' frozen side-text states into the cache (``encode_side_states``); no run, no report."""
    from lrsa.config import RunConfig
    from lrsa.training.loop import train, without_placement

    profile = PROFILES[profile_name]
    runs = Path(runs)
    results = Path(results) if results else (Path(profile.results) if profile.results else runs / profile.name)
    cache_dir = Path(cache_dir) if cache_dir else runs / "cache"
    specs = plan(profile, datasets, hosts, variants, seeds, tasks, rationales)
    ensure_published_bundles(specs, data_dir, log)
    if encode_only:
        encode_side_states(profile, specs, cache_dir, data_dir, threads, overrides, log)
        return {}
    sync_records(profile, runs, results, data_dir, log)

    def current(spec: RunSpec, cfg: dict[str, Any] | None) -> bool:
        """A finished run counts only if its config is the one the plan asks for now (where it ran aside): a
        profile whose schedule or model changed retrains its runs (a record without a config counts)."""
        if cfg is None:
            return True
        return without_placement(RunConfig.model_validate(cfg)) == \
            without_placement(run_config(profile, spec, overrides, threads))

    def dir_config(out: Path) -> dict[str, Any] | None:
        path = out / "config.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def finished(spec: RunSpec, out: Path) -> bool:
        if (out / "result.json").exists():
            return current(spec, dir_config(out))
        rec = read_record(results, spec.key)
        return rec is not None and not (redo_legacy and rec["origin"] == "legacy") and \
            current(spec, rec["result"].get("config"))

    done = 0
    failed: list[str] = []
    t0 = time.perf_counter()
    for spec in specs:
        out = run_dir(runs, profile, spec)
        if finished(spec, out):
            continue
        if max_runs is not None and done >= max_runs:
            break
        # several workers may share one plan (e.g. one per core): each run is claimed by a lock that the
        # OS releases if its worker dies, so a run is trained once and a crashed one is taken up again
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(out / ".worker.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log(f"[{time.perf_counter() - t0:6.0f}s] {spec.key}: being trained by another worker; skipped")
            continue
        try:
            if finished(spec, out):  # finished by another worker meanwhile
                continue
            if not current(spec, dir_config(out)):  # an interrupted run of the same config resumes
                old = out.with_name(f"{out.name}.old-{time.strftime('%Y%m%dT%H%M%S')}")
                old.mkdir()
                for f in out.iterdir():
                    if f.name != ".worker.lock":
                        f.rename(old / f.name)
                log(f"[{time.perf_counter() - t0:6.0f}s] {spec.key}: its run directory held another config "
                    f"(an older schedule or model): moved to {old}")
            log(f"[{time.perf_counter() - t0:6.0f}s] run {spec.key}")
            train(run_config(profile, spec, overrides, threads), out, data_dir=data_dir, cache_dir=cache_dir,
                  log=lambda m: log(f"  {m}"))
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
            # one failed run (e.g. a missing rationale bundle) must not stop the table; it stays missing
            log(f"  FAILED {spec.key}: {type(err).__name__}: {err}")
            failed.append(spec.key)
            continue
        finally:
            lock.release()
        done += 1
        write_record(results, spec.key, out, data_dir)
        write_report(profile, results, spec.dataset, data_dir, overrides)
    sync_records(profile, runs, results, data_dir, log)  # runs other workers finished meanwhile
    paths = {}
    for d in dict.fromkeys(s.dataset for s in specs):
        paths[d] = write_report(profile, results, d, data_dir, overrides)
    from lrsa.io import atomic_write_text

    table = summary_markdown(results)
    atomic_write_text(results / "summary.md", table)
    if profile.name == "full" and results.resolve() == (Path.cwd() / "results").resolve():
        insert_summary(Path("README.md"), table)
    if failed:
        log(f"{len(failed)} run(s) failed: {', '.join(failed)}")
    log(f"{done} run(s) trained in {time.perf_counter() - t0:.0f}s; reports: "
        + ", ".join(str(p) for p in paths.values()))
    return paths


def sync_records(profile: Profile, runs: Path, results: Path, data_dir: str | Path | None,
                 log: Callable[[str], None]) -> None:
    """Write the record of every finished run directory of the profile that has none (or a legacy one)."""
    for spec in plan(profile):
        out = run_dir(runs, profile, spec)
        if (out / "result.json").exists():
            rec = read_record(results, spec.key)
            if rec is None or rec["origin"] == "legacy":
                log(f"recorded {record_path(results, spec.key)}")
                write_record(results, spec.key, out, data_dir)
