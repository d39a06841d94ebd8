"""`lrsa reproduce`: the ablation tables (JMASA and MASC), resumable per run, with paired statistics.

A profile is a list of ``Row``s: (task, host, variant, rationale source, number of seeds, datasets). Every
(dataset, row, seed) run trains into its own directory under ``<runs>/<profile>/`` and is complete when its
``result.json`` exists (predictions and scores beside it); an interrupted run resumes from its last finished
epoch. A finished run leaves a record in ``<results>/<dataset>/runs/`` (``lrsa.training.records``: its
result and per-test-item counts), which is what the repository keeps: a run with a record is not trained
again, even on a machine without its run directory. Several workers (processes) can run the same plan at
once: each run is claimed with a file lock, so they share the runs out. The reports
(``<results>/<dataset>/report.{json,md}``) are rebuilt from the records, with missing rows marked; each
non-``text`` row carries its paired comparison against ``text`` of the same task and host
(``lrsa.training.stats``). Nothing is chosen on test.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

from lrsa.config import RunConfig, apply_overrides, variant_overrides
from lrsa.io import git_commit
from lrsa.training.records import counts, read_record, record_path, write_record
from lrsa.training.stats import paired, summary

HOSTS = ("span", "generative", "aspect")
DATASETS = ("twitter2015", "twitter2017", "political_twitter")
TWITTER = ("twitter2015", "twitter2017")

# Published figures (../shared/METHOD.md and the MASC issue), for the reports.
PUBLISHED = {
    "twitter2015": [("BART text-only (Yan et al. 2021)", "62.9 / 65.0 / 63.9"), ("VLP-MABSA", "65.1 / 68.3 / 66.6"),
                    ("CMMT", "64.6 / 68.7 / 66.5"), ("AoM", "67.9 / 69.3 / 68.6"), ("DQPSA", "71.7 / 72.0 / 71.9"),
                    ("DEQA", "71.4 / 73.9 / 72.7"), ("GPT-4o zero-shot", "23.7 / 28.5 / 25.9")],
    "twitter2017": [("BART text-only (Yan et al. 2021)", "65.2 / 65.6 / 65.4"), ("VLP-MABSA", "66.9 / 69.2 / 68.0"),
                    ("CMMT", "67.6 / 69.4 / 68.5"), ("AoM", "68.4 / 71.0 / 69.7"), ("DQPSA", "71.1 / 70.2 / 70.6"),
                    ("DEQA", "71.4 / 72.4 / 71.9"), ("GPT-4o zero-shot", "25.2 / 26.3 / 25.7")],
}
PUBLISHED_MATE = {"twitter2015": "MATE F1: VLP-MABSA 85.7, AoM 86.2, DQPSA 87.7.",
                  "twitter2017": "MATE F1: VLP-MABSA 91.7, AoM 92.3, DQPSA 94.3."}
PUBLISHED_MASC = {  # accuracy / macro-F1 of systems trained for MASC (the aspect is given)
    "twitter2015": [("TomBERT (BERT-base, images)", "77.2 / 71.8"), ("VLP-MABSA", "78.6 / 73.8"),
                    ("AoM", "80.2 / 75.9")],
    "twitter2017": [("TomBERT (BERT-base, images)", "70.3 / 68.0"), ("VLP-MABSA", "73.8 / 71.8"),
                    ("AoM", "76.4 / 75.0")],
}


@dataclass(frozen=True)
class Row:
    """One table row, run for ``seeds`` seeds on each of ``datasets``. ``tier``: planning priority."""

    task: str  # jmasa | masc
    host: str
    variant: str
    rationales: str | None  # bundle source for variants that read rationales
    seeds: int
    datasets: tuple[str, ...]
    tier: int = 0
    image_side: str | None = None  # override of the variant's image side (e.g. "pixels": the real photos)
    required: bool = True  # optional rows are planned after every seed of every required row

    def spec(self, dataset: str, seed: int) -> RunSpec:
        return RunSpec(dataset, self.host, self.variant, seed, self.rationales, self.task, self.image_side)


@dataclass(frozen=True)
class Profile:
    name: str
    rows: tuple[Row, ...]
    train: dict[str, Any]  # TrainConfig overrides
    model: dict[str, Any] | None = None  # ModelConfig overrides
    description: str = ""
    results: str | None = None  # where its records and reports live (default: <runs>/<name>)
    # the one commit every run of the table was trained from (a clean snapshot, docs/training.md); records
    # of another commit, or of a dirty checkout, are listed as excluded and enter no row. None: no check
    snapshot: str | None = None


def _jmasa(host: str, variant: str, rationales: str | None, seeds: int, datasets=TWITTER, tier=0,
           required=True) -> Row:
    return Row("jmasa", host, variant, rationales, seeds, datasets, tier, required=required)


def _masc(variant: str, rationales: str | None, seeds: int, tier=0, required=True) -> Row:
    return Row("masc", "aspect", variant, rationales, seeds, TWITTER, tier, required=required)


#: The schedule of the first tables (``top2``, results/top2/), fixed before any of their test numbers was
#: seen, the same for every task, host and variant (docs/training.md gives the dev evidence behind it).
SCHEDULE = {"epochs": 20, "patience": 3, "warmup": 0.1}
SCHEDULE_MODEL = {"train_layers": 2}

#: The schedule of the table on the all-layer host (``full``, results/), fixed on dev before its first run
#: (docs/training.md, "The schedule of the all-layer table"; results/experiments/schedule_all_layers.md).
SCHEDULE_ALL = {"epochs": 20, "patience": 3, "warmup": 0.1, "precision": "fp32", "lr": 1e-4}
SCHEDULE_ALL_MODEL = {"train_layers": None}

#: The main job's schedule (``--profile main``): the shortest measured whose dev F1 is within 2 points of
#: SCHEDULE's for both rows (docs/training.md: text 3 / 4 / 5 epochs reach dev 52.0 / 54.6 / 54.8 against
#: 55.3 ± 0.3 for SCHEDULE; lrsa 3 epochs 53.6 against 54.2 ± 0.6), warmup 10 % and a decay that ends at the
#: last epoch; the lrsa model drops its image side for 20 % of the training examples so that it stays good
#: on text-only posts, and each rationale part (L_t, L_i, independently) for 30 %, so that a part left empty
#: at prediction time (its training writer, e.g. the published MiniGPT-4 descriptions, cannot run here) is in
#: its training distribution. It computes in bf16 (autocast; lrsa.precision) on CPUs with native bfloat16 (AMX or
#: AVX512-BF16): there 2-4x faster per epoch and for the side texts, with the same dev F1 (text 54.7 vs 54.6
#: in fp32, lrsa 54.5 vs 54.3; 3 epochs in bf16 leave text at 51.9, so 4 stays the shortest); elsewhere
#: (e.g. an AVX2-only AMD EPYC) bf16 is emulated and several times slower than fp32, so it runs in fp32.
MAIN_SCHEDULE = {"epochs": 4, "patience": 4, "warmup": 0.1}


def main_precision() -> str:
    """The main job's compute precision on this machine: bf16 where the CPU has it natively, else fp32."""
    from lrsa.precision import cpu_has_bf16

    return "bf16" if cpu_has_bf16() else "fp32"

PROFILES = {
    # the main job (scripts/main.sh): the span host text and lrsa on the full Twitter-2015 train split, one
    # seed; the lrsa checkpoint is the README's model (runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0)
    "main": Profile("main", (
        _jmasa("span", "text", None, 1, ("twitter2015",)),
        _jmasa("span", "lrsa", "arkmsa", 1, ("twitter2015",)),
    ), {**MAIN_SCHEDULE, "precision": main_precision(), "modality_dropout": 0.2, "rationale_dropout": 0.3},
        SCHEDULE_MODEL,
        "full Twitter-2015 splits, one seed, 4 epochs (warmup 10 % and linear decay), MiniLM with its top 2 "
        "layers fine-tuned, image side dropped for 20 % of training examples and each rationale part for 30 % "
        "(the served model meets an empty L_i: its MiniGPT-4 writer cannot run here), bf16 compute where the "
        "CPU has native bfloat16, else fp32"),
    # ≤ 5 min on 2 shared cores: small subsets, 2 epochs; a smoke-scale run of the JMASA table (tests).
    "smoke": Profile("smoke", tuple(_jmasa(h, v, "lexicon" if v in ("concat", "lrsa") else None, 1,
                                           ("twitter2015",)) for h in ("span", "generative")
                                    for v in ("text", "image", "concat", "lrsa")),
                     {"train_limit": 128, "dev_limit": 48, "test_limit": 96, "epochs": 2, "patience": 1},
                     {"train_layers": 2}, "Twitter-2015 subsets (128/48/96 sentences), 2 epochs: checks the "
                                          "pipeline; its scores are noise"),
    # the table on the all-layer host: full splits, SCHEDULE_ALL, one code snapshot (docs/training.md); the
    # rows the comparison needs first, then the other ablations where the cores are free
    "full": Profile("full", (
        _jmasa("span", "text", None, 5),
        _jmasa("span", "lrsa", "arkmsa", 5),
        _masc("text", None, 5),
        _masc("lrsa", "arkmsa-aspect", 5),
        _jmasa("span", "lrsa", "gpt4", 5, ("twitter2017",), tier=1),
        _jmasa("generative", "text", None, 5, tier=1),
        _jmasa("generative", "lrsa", "arkmsa", 5, tier=1),
        _jmasa("span", "text", None, 3, ("political_twitter",), tier=2),
        _jmasa("span", "lrsa", "arkmsa", 3, ("political_twitter",), tier=2),
        _jmasa("span", "image", None, 3, tier=3, required=False),
        _jmasa("span", "concat", "arkmsa", 3, tier=3, required=False),
        _jmasa("span", "lrsa", "lexicon", 3, tier=3, required=False),
        _masc("image", None, 3, tier=3, required=False),
        _masc("concat", "arkmsa-aspect", 3, tier=3, required=False),
        _masc("lrsa_li", "arkmsa-aspect", 3, tier=3, required=False),
        _jmasa("span", "lrsa", "qwen0.5b-arkmsa", 3, tier=4, required=False),
    ), SCHEDULE_ALL, SCHEDULE_ALL_MODEL, "full splits, ≤ 20 epochs, patience 3 on dev, warmup 10 % and linear "
                                         "decay, MiniLM with all 6 layers fine-tuned, fp32", results="results",
                    # the commit every run of this table trains from (scripts/table.sh; docs/training.md)
                    snapshot="865c9afce3a7f3b650e55604ee19d88924b3ff41"),
    # the first tables (top 2 layers tuned), kept as published: results/top2/
    "top2": Profile("top2", (
        _jmasa("span", "text", None, 5),
        _jmasa("span", "lrsa", "arkmsa", 5),
        _masc("text", None, 5),
        _masc("lrsa", "arkmsa-aspect", 5),
        _jmasa("span", "lrsa", "gpt4", 5, ("twitter2017",), tier=1),
        _jmasa("span", "image", None, 3, tier=1),
        _jmasa("span", "concat", "arkmsa", 3, tier=1),
        _jmasa("span", "lrsa", "lexicon", 3, tier=1),
        _masc("image", None, 3, tier=1),
        _masc("concat", "arkmsa-aspect", 3, tier=1),
        _masc("lrsa_li", "arkmsa-aspect", 3, tier=1),
        _jmasa("generative", "text", None, 3, tier=2),
        _jmasa("generative", "lrsa", "arkmsa", 3, tier=2),
        _jmasa("span", "text", None, 3, ("political_twitter",), tier=2),
        _jmasa("span", "lrsa", "arkmsa", 3, ("political_twitter",), tier=2),
        # L_t written offline by Qwen2.5-Coder-0.5B-Instruct (llama.cpp), L_i the MiniGPT-4 description
        _jmasa("span", "lrsa", "qwen0.5b-arkmsa", 5, tier=3),
    ), SCHEDULE, SCHEDULE_MODEL, "full splits, ≤ 20 epochs, patience 3 on dev, warmup 10 % and linear decay, "
                                 "MiniLM with its top 2 layers fine-tuned", results="results/top2"),
}


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    host: str
    variant: str
    seed: int
    rationales: str | None = None
    task: str = "jmasa"
    image_side: str | None = None

    @property
    def row_name(self) -> str:
        return self.variant + (f"-{self.rationales}" if self.rationales else "") + \
            (f"-{self.image_side}" if self.image_side else "")

    @property
    def key(self) -> str:
        task = "" if self.task == "jmasa" else f"{self.task}/"
        return f"{self.dataset}/{task}{self.host}/{self.row_name}/seed{self.seed}"


def plan(profile: Profile, datasets: list[str] | None = None, hosts: list[str] | None = None,
         variants: list[str] | None = None, max_seeds: int | None = None, tasks: list[str] | None = None,
         rationales: list[str] | None = None) -> list[RunSpec]:
    """Every run of the profile in priority order: required rows before optional ones, the first 3 seeds of
    every row before seeds 3-4, then by tier, seed, row order and dataset. Filters keep the rows whose
    fields are listed."""
    keyed = []
    for i, row in enumerate(profile.rows):
        if (hosts and row.host not in hosts) or (variants and row.variant not in variants) \
                or (tasks and row.task not in tasks) or (rationales and (row.rationales or "none") not in rationales):
            continue
        n = row.seeds if max_seeds is None else min(max_seeds, row.seeds)
        for d_i, d in enumerate(row.datasets):
            if datasets and d not in datasets:
                continue
            for seed in range(n):
                spec = row.spec(d, seed)
                keyed.append(((not row.required, seed >= 3, row.tier, seed, i, d_i), spec))
    return [s for _, s in sorted(keyed, key=lambda x: x[0])]


def run_config(profile: Profile, spec: RunSpec, overrides: dict[str, Any] | None = None,
               threads: int | None = None) -> RunConfig:
    """The run's config: the variant, host, dataset and seed, then the profile's schedule, then
    ``overrides`` (dotted keys, e.g. ``{"model.train_layers": None}`` of an experiment), which win."""
    over = {**variant_overrides(spec.variant), "model.host": spec.host, "train.dataset": spec.dataset,
            "train.seed": spec.seed, **{f"train.{k}": v for k, v in profile.train.items()},
            **{f"model.{k}": v for k, v in (profile.model or {}).items()}}
    if spec.rationales:
        over["train.rationale_source"] = spec.rationales
    if spec.image_side:
        over["model.image_side"] = spec.image_side
    if threads:
        over["train.threads"] = threads
    over.update(overrides or {})
    return RunConfig.model_validate(apply_overrides({"name": spec.key.replace("/", "-")}, over))


def run_dir(runs: Path, profile: Profile, spec: RunSpec) -> Path:
    return runs / profile.name / spec.key


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


def reproduce(profile_name: str, runs: str | Path = "runs/reproduce", results: str | Path | None = None,
              datasets: list[str] | None = None, hosts: list[str] | None = None,
              variants: list[str] | None = None, seeds: int | None = None, max_runs: int | None = None,
              data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              threads: int | None = None, overrides: dict[str, Any] | None = None,
              tasks: list[str] | None = None, rationales: list[str] | None = None,
              redo_legacy: bool = False, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run (or resume) the profile's runs, then write one report per dataset. Returns report paths.
    ``redo_legacy``: retrain the runs whose records are legacy (no per-item counts)."""
    from lrsa.training.loop import train

    profile = PROFILES[profile_name]
    runs = Path(runs)
    results = Path(results) if results else (Path(profile.results) if profile.results else runs / profile.name)
    cache_dir = Path(cache_dir) if cache_dir else runs / "cache"
    specs = plan(profile, datasets, hosts, variants, seeds, tasks, rationales)
    ensure_published_bundles(specs, data_dir, log)
    sync_records(profile, runs, results, data_dir, log)

    def finished(spec: RunSpec, out: Path) -> bool:
        if (out / "result.json").exists():
            return True
        rec = read_record(results, spec.key)
        return rec is not None and not (redo_legacy and rec["origin"] == "legacy")

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


# --------------------------------------------------------------------------- report


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


@dataclass
class _Run:
    """A record as the report reads it."""

    record: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.record["key"].rsplit("seed", 1)[1])

    @property
    def result(self) -> dict[str, Any]:
        return self.record["result"]

    @property
    def origin(self) -> str:
        return self.record["origin"]

    @property
    def items(self):
        return counts(self.record)


def _finished(profile: Profile, results: Path, row: Row, dataset: str,
              excluded: list[dict[str, Any]] | None = None) -> list[_Run]:
    """The records of the row's finished runs on ``dataset``, by seed; with a profile snapshot, only those
    trained from it (the others are appended to ``excluded`` with the reason)."""
    out = []
    for seed in range(row.seeds):
        rec = read_record(results, row.spec(dataset, seed).key)
        if rec is None:
            continue
        commit = rec["result"].get("commit") or ""
        if profile.snapshot and commit != profile.snapshot:
            if excluded is not None:
                excluded.append({"key": rec["key"], "commit": commit or None,
                                 "reason": "dirty checkout" if commit.endswith("+dirty") else
                                 f"not the table's snapshot {profile.snapshot[:12]}"})
            continue
        out.append(_Run(rec))
    return out


def _tuned_layers(config: dict[str, Any]) -> str | int:
    layers = config["model"].get("train_layers")
    return "all" if layers is None else layers


def _machine(result: dict[str, Any]) -> str | None:
    m = result.get("machine")
    if not m:
        return None
    simd = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in (m.get("cpu_flags") or [])]
    return f"{m.get('cpu_model')} ({simd[0] if simd else 'no AVX2'}), {m.get('threads')} thread(s), torch {m.get('torch')}"


METRICS = {  # row field -> how to read it from a split's scores
    "jmasa": {"jmasa_p": lambda t: t["jmasa"]["p"], "jmasa_r": lambda t: t["jmasa"]["r"],
              "jmasa_f1": lambda t: t["jmasa"]["f1"], "mate_f1": lambda t: t["mate"]["f1"],
              "masc_joint_acc": lambda t: t["masc_joint"]["acc"],
              "masc_forced_acc": lambda t: (t.get("masc_forced") or t.get("masc") or {}).get("acc")},
    "masc": {"masc_acc": lambda t: t["masc"]["acc"], "masc_f1": lambda t: t["masc"]["macro_f1"]},
}
HEADLINE = {"jmasa": "jmasa_f1", "masc": "masc_acc"}


def collect(profile: Profile, results: Path, dataset: str,
            excluded: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    rows = []
    finished = {}
    for row in profile.rows:
        if dataset in row.datasets:
            finished[row] = _finished(profile, results, row, dataset, excluded)
    for row, got in finished.items():
        tests = [r for r in got if r.result.get("test")]
        image_side = run_config(profile, row.spec(dataset, 0)
                                ).model.image_side
        out: dict[str, Any] = {
            "dataset": dataset, "task": row.task, "host": row.host, "variant": row.variant,
            "rationales": row.rationales or "none", "image_side": image_side,
            "tuned_layers": _tuned_layers(run_config(profile, row.spec(dataset, 0)).model_dump()),
            "commits": sorted({r.result.get("commit") or "unknown" for r in tests}),
            "seeds": [r.seed for r in tests], "planned_seeds": list(range(row.seeds)),
            "status": "done" if len(tests) == row.seeds else ("partial" if tests else "missing")}
        for name, get in METRICS[row.task].items():
            vals = [get(r.result["test"]) for r in tests]
            out[name] = summary([v for v in vals if v is not None])
        head_get = METRICS[row.task][HEADLINE[row.task]]
        out[HEADLINE[row.task] + "_without_image"] = summary(
            [head_get(r.result["test_without_image"]) for r in tests if r.result.get("test_without_image")])
        sel = "dev_" + HEADLINE[row.task]
        out[sel] = summary([head_get(r.result["dev"]) for r in got if r.result.get("dev")])
        out["per_seed"] = [{"seed": r.seed, "best_epoch": r.result.get("best_epoch"),
                            "epochs_run": r.result.get("epochs_run"), "stopped": r.result.get("stopped"),
                            "train_seconds": r.result.get("train_seconds"), "commit": r.result.get("commit"),
                            "origin": r.origin, "cpu": _machine(r.result), "machine": r.result.get("machine"),
                            "dev": METRICS[row.task][HEADLINE[row.task]](r.result["dev"]),
                            "test": METRICS[row.task][HEADLINE[row.task]](r.result["test"]),
                            "test_scores": {name: get(r.result["test"]) for name, get in METRICS[row.task].items()}}
                           for r in tests]
        # paired comparisons: every non-text row against text of the same task and host; an LLM-rationale
        # row also against the same variant with lexicon rationales (does the rationale source matter?)
        against = {"vs_text": lambda b: b.variant == "text"}
        if row.rationales not in (None, "lexicon"):
            against["vs_lexicon"] = lambda b: b.variant == row.variant and b.rationales == "lexicon"
        for name, match in against.items():
            if row.variant == "text":
                continue
            base = next((b for b in finished if b.task == row.task and b.host == row.host and match(b)), None)
            if base is None or not tests:
                continue
            head = METRICS[row.task][HEADLINE[row.task]]
            base_runs = [r for r in finished[base] if r.result.get("test")]
            common = {r.seed for r in tests} & {r.seed for r in base_runs}
            out[name] = paired(row.task, {r.seed: head(r.result["test"]) for r in tests},
                               {r.seed: head(r.result["test"]) for r in base_runs},
                               {r.seed: r.items for r in tests if r.items},
                               {r.seed: r.items for r in base_runs if r.items}) if common else None
        rows.append(out)
    return rows


def _fmt(s: dict[str, float | None] | None) -> str:
    if not s or s.get("mean") is None:
        return "–"
    if s.get("std") is None:
        return f"{s['mean']:.1f}"
    return f"{s['mean']:.1f} ± {s['std']:.1f}"


def _interval(ci: dict[str, Any] | None) -> str:
    return f"[{ci['lo']:+.1f}, {ci['hi']:+.1f}]" if ci else "–"


def _fmt_paired(p: dict[str, Any] | None, short: bool = False) -> str:
    """A paired comparison: mean ± std of the seed-paired differences, then the intervals that include
    seed variance (t over seeds; two-level bootstrap, seeds then items) and the paired bootstrap over test
    items (models held fixed). ``short``: the mean and the seed-level t-interval (the README table)."""
    if not p:
        return "–"
    d = p["seed_diff"]
    ci = p["bootstrap"]
    spread = f" ± {d['std']:.1f}" if d.get("std") is not None else ""
    if "seed_ci95" not in p:  # built before seed-level intervals existed (the top-2 table's experiments)
        if not ci:
            return f"{d['mean']:+.1f}{spread} [no item counts]"
        boot_seeds = "" if ci["seeds"] == p["seeds"] else f" (seeds {','.join(map(str, ci['seeds']))})"
        return f"{d['mean']:+.1f}{spread} [{ci['lo']:+.1f}, {ci['hi']:+.1f}]{boot_seeds}"
    if short:  # the README table: the verdict rests on the seed-level interval alone
        ci = p["seed_ci95"]
        verdict = "" if not ci else (": helps" if ci["lo"] > 0 else ": hurts" if ci["hi"] < 0
                                     else ": no effect detected")
        return f"{d['mean']:+.1f} seeds {_interval(ci)}{verdict}"
    items = _interval(ci) if ci else "[no item counts]"
    return (f"{d['mean']:+.1f}{spread}; seeds (t) {_interval(p['seed_ci95'])}; seeds×items "
            f"{_interval(p.get('two_level'))}; items {items}")


def _status(r: dict[str, Any]) -> str:
    if r["status"] == "done":
        return "done"
    return f"{r['status']} (planned seeds {','.join(map(str, r['planned_seeds']))})"


def _per_seed(r: dict[str, Any]) -> str:
    return ", ".join(f"{p['test']:.1f}" for p in r["per_seed"]) or "–"


def _cells(r: dict[str, Any], *scores: str) -> str:
    """A report table line: the row's identity, its scores, its status."""
    lead = [r["host"], r["variant"], r["rationales"], r["image_side"], ",".join(map(str, r["seeds"])) or "–"]
    return "| " + " | ".join([*lead, *scores, _status(r)]) + " |"


def write_report(profile: Profile, results: Path, dataset: str,
                 data_dir: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Path:
    from lrsa.data import data_checksums
    from lrsa.io import atomic_write_text
    from lrsa.rationales.bundle import read_manifest
    from lrsa.training.loop import write_json

    excluded: list[dict[str, Any]] = []
    rows = collect(profile, results, dataset, excluded)
    manifest = read_manifest(dataset).get("sources", {})
    sources = sorted({r.rationales for r in profile.rows if dataset in r.datasets and r.rationales})
    example = next(r for r in profile.rows if dataset in r.datasets)
    report = {"commit": git_commit(), "profile": profile.name, "profile_description": profile.description,
              "rationale_bundles": {s: {"sha256": manifest.get(s, {}).get("sha256"),
                                        "provenance": manifest.get(s, {}).get("provenance"),
                                        "coverage": manifest.get(s, {}).get("coverage")} for s in sources},
              "config": {"profile_train_overrides": profile.train, "profile_model_overrides": profile.model,
                         "base_run_config": run_config(profile, example.spec(dataset, 0), overrides).model_dump()},
              "data_sha256": data_checksums(dataset, data_dir), "snapshot": profile.snapshot, "rows": rows,
              "excluded_records": excluded}
    if profile.results is None:  # a one-seed profile (main, smoke): how to read it
        report["notes"] = reading_notes(dataset, data_dir)
    if any(r.task == "masc" for r in profile.rows if dataset in r.datasets):
        from lrsa.training.stats import masc_baselines

        report["masc_baselines"] = masc_baselines(dataset, data_dir)
    out = results / dataset
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render(report, dataset))
    return out / "report.md"


def reading_notes(dataset: str, data_dir: str | Path | None = None) -> list[str]:
    """How to read a one-seed table: the majority class of the test aspects, and the seed noise measured
    by the committed full-profile table (results/<dataset>/report.json, when present)."""
    from collections import Counter

    from lrsa.data import load_dataset

    pol = Counter(a.polarity for ex in load_dataset(dataset, "test", data_dir) for a in ex.aspects)
    top, n = pol.most_common(1)[0]
    notes = [f"Majority class: {100 * n / sum(pol.values()):.1f} % of the test aspects are {top}: a model that "
             f"found every aspect perfectly and called each {top} would score that JMASA F1 (and that "
             "accuracy on given aspects); a row's sentiment is worth what it scores above that, given its MATE F1."]
    committed = Path("results") / dataset / "report.json"  # run from the repository root, as lrsa reproduce is
    if committed.is_file():
        full = json.loads(committed.read_text())
        stds = [(r["variant"], r["rationales"], r[HEADLINE[r["task"]]]["std"], len(r["seeds"]))
                for r in full["rows"] if r["task"] == "jmasa" and len(r["seeds"]) >= 3]
        if stds:
            notes.append("Seed noise: these are single-seed numbers. Over seeds, the committed full-profile "
                         "table measures a test JMASA F1 std of " + ", ".join(
                             f"{sd:.1f} ({v}{'-' + rt if rt != 'none' else ''}, {k} seeds)" for v, rt, sd, k in stds)
                         + " on this dataset, so a single-seed difference of 2-3 points between two rows can be "
                           "noise alone; the committed tables (5 seeds, paired bootstrap) are the comparison.")
    return notes


def render(report: dict[str, Any], dataset: str) -> str:
    rows = report["rows"]
    lines = [f"# {dataset}: LRSA ablation tables ({report['profile']} profile)", "",
             f"Generated by `lrsa reproduce --profile {report['profile']}`; {report['profile_description']}. "
             "Test scores of the dev-selected checkpoint (selection on dev only; test scored once), mean ± std "
             "over the seeds listed (one number: one seed). Δ vs text: seed-paired difference against the "
             "`text` row of the same host (mean ± std over common seeds), then three 95 % intervals: "
             "**seeds (t)**, the t-interval over the seed-paired differences, and **seeds×items**, a two-level "
             "bootstrap that resamples seeds and then test items — both include training noise, and a claim "
             "that a variant helps needs them above zero; **items**, the paired bootstrap over test items "
             "(sentences for JMASA, aspects for MASC; 2,000 resamples) that holds the trained models fixed, "
             "reported beside them, never instead. "
             "Δ vs lexicon: the same for an LLM-rationale row against the same variant with lexicon "
             "rationales (does the rationale source matter?).", "",
             f"report commit `{report['commit']}`"
             + (f"; every run of the table trained from snapshot `{report['snapshot']}`" if report.get("snapshot")
                else ""), ""]
    jm = [r for r in rows if r["task"] == "jmasa"]
    if jm:
        lines += ["## JMASA (aspect terms and their sentiment)", "",
                  "| host | variant | rationales | image side | seeds | JMASA P | JMASA R | JMASA F1 | per seed | "
                  "Δ vs text [95 % CI] | Δ vs lexicon [95 % CI] | MATE F1 | dev JMASA F1 | status |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in jm:
            lines.append(_cells(r, _fmt(r["jmasa_p"]), _fmt(r["jmasa_r"]), _fmt(r["jmasa_f1"]), _per_seed(r),
                                _fmt_paired(r.get("vs_text")), _fmt_paired(r.get("vs_lexicon")),
                                _fmt(r["mate_f1"]), _fmt(r["dev_jmasa_f1"])))
        blind = [r for r in jm if (r.get("jmasa_f1_without_image") or {}).get("mean") is not None]
        if blind:
            lines += ["", "Test JMASA F1 with every post stripped of its image (V and L_i empty, as a text-only post "
                      "is read), same checkpoints: " + "; ".join(
                          f"{r['host']} {r['variant']} ({r['rationales']}, {r['image_side']}) "
                          f"{_fmt(r['jmasa_f1_without_image'])} (with images {_fmt(r['jmasa_f1'])})" for r in blind)
                      + "."]
        if dataset in PUBLISHED:
            lines += ["", "Published JMASA P / R / F1 (../shared/METHOD.md; BART-base or larger, real images): "
                      + "; ".join(f"{n} {v}" for n, v in PUBLISHED[dataset]) + ". " + PUBLISHED_MATE[dataset]]
        lines += ["", "The joint hosts' sentiment accuracy over correctly extracted spans (`masc_joint_acc`) and "
                      "on gold spans forced on them (`masc_forced_acc`) are in report.json; neither is a "
                      "MASC system and neither is compared with published MASC figures."]
    ms = [r for r in rows if r["task"] == "masc"]
    if ms:
        lines += ["", "## MASC (sentiment of given aspects; aspect host trained for it)", "",
                  "| host | variant | rationales | image side | seeds | accuracy | macro-F1 | per seed (acc) | "
                  "Δ acc vs text [95 % CI] | dev accuracy | status |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in ms:
            lines.append(_cells(r, _fmt(r["masc_acc"]), _fmt(r["masc_f1"]), _per_seed(r),
                                _fmt_paired(r.get("vs_text")), _fmt(r["dev_masc_acc"])))
        b = report.get("masc_baselines") or {}
        if b:
            lines += ["", "Baselines (no training; accuracy / macro-F1, dev and test):"]
            for name, v in b.items():
                lines.append(f"- {v['description']}: dev {v['dev']['acc']:.1f} / {v['dev']['macro_f1']:.1f}, "
                             f"test {v['test']['acc']:.1f} / {v['test']['macro_f1']:.1f}")
        if dataset in PUBLISHED_MASC:
            lines += ["", "Published MASC accuracy / macro-F1 (trained for MASC): "
                      + "; ".join(f"{n} {v}" for n, v in PUBLISHED_MASC[dataset]) + "."]
    for note in report.get("notes", []):
        lines += ["", note]
    cpus = sorted({p["cpu"] for r in rows for p in r["per_seed"] if p.get("cpu")})
    if cpus:
        lines += ["", "Machines of the runs: " + "; ".join(cpus) + " (per seed in report.json)."]
    if report.get("excluded_records"):
        lines += ["", f"Excluded records ({len(report['excluded_records'])}; not of the table's snapshot): "
                  + ", ".join(f"`{e['key']}` ({e['reason']})" for e in report["excluded_records"]) + "."]
    lines += ["", "Rationale bundles: " + ", ".join(
        f"`{s}` {(v.get('sha256') or '?')[:12]}… ({(v.get('provenance') or {}).get('model', '?')})"
        for s, v in report["rationale_bundles"].items()),
        "", "Data sha256: " + ", ".join(f"`{k}` {v[:12]}…" for k, v in report["data_sha256"].items()), ""]
    return "\n".join(lines)


def summary_markdown(results: Path, datasets: tuple[str, ...] = DATASETS) -> str:
    """The README's table, built from ``<results>/<dataset>/report.json``: test score (JMASA F1 or MASC
    accuracy) mean ± std and the seed count per row and dataset, with Δ vs text [paired bootstrap 95 % CI]."""
    reports = {d: json.loads((results / d / "report.json").read_text())
               for d in datasets if (results / d / "report.json").exists()}
    keys: dict[tuple[str, str, str, str], dict[str, dict[str, Any]]] = {}
    for d, rep in reports.items():
        for r in rep["rows"]:
            keys.setdefault((r["task"], r["host"], r["variant"], r["rationales"]), {})[d] = r
    ds = list(reports)
    lines = ["| task | host | variant | rationales | " + " | ".join(ds) + " |",
             "|---|---|---|---|" + "---|" * len(ds)]
    for (task, host, variant, rats), by in keys.items():
        cells = []
        for d in ds:
            r = by.get(d)
            if r is None:
                cells.append("")
                continue
            s = r[HEADLINE[task]]
            if s.get("mean") is None:
                cells.append("– (not run yet)")
                continue
            cell = f"{_fmt(s)} (n={len(r['seeds'])})"
            if r.get("vs_text"):
                cell += f"; Δ {_fmt_paired(r['vs_text'], short=True)}"
            cells.append(cell)
        name = "JMASA F1" if task == "jmasa" else "MASC acc"
        lines.append(f"| {name} | {host} | {variant} | {rats} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


SUMMARY_MARKERS = ("<!-- summary:start -->", "<!-- summary:end -->")


def insert_summary(readme: Path, table: str) -> None:
    """Put ``table`` between the summary markers of the README (the committed tables' one place)."""
    if not readme.is_file():
        return
    from lrsa.io import atomic_write_text

    text = readme.read_text(encoding="utf-8")
    start, end = SUMMARY_MARKERS
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(readme, f"{head}{start}\n{table}{end}{tail}")
