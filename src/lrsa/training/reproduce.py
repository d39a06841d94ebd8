"""`lrsa reproduce`: the ablation table (text / image / concat / lrsa for both hosts), resumable per run.

Every (dataset, host, variant, seed) run trains into its own directory under ``<runs>/<profile>/`` and
is complete when its ``result.json`` exists (predictions and scores beside it); a rerun skips it, and an
interrupted run resumes from its last finished epoch. The report is rebuilt from whatever has finished,
with missing rows marked. Several workers (processes) can run the same plan at once: each run is claimed
with a file lock, so they share the runs out between them.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

from lrsa.config import VARIANTS, RunConfig, apply_overrides, variant_overrides

HOSTS = ("span", "generative")
DATASETS = ("twitter2015", "twitter2017", "political_twitter")

# Published JMASA P / R / F1 (../shared/METHOD.md), for the report.
PUBLISHED = {
    "twitter2015": [("BART text-only (Yan et al. 2021)", "62.9 / 65.0 / 63.9"), ("VLP-MABSA", "65.1 / 68.3 / 66.6"),
                    ("CMMT", "64.6 / 68.7 / 66.5"), ("AoM", "67.9 / 69.3 / 68.6"), ("DQPSA", "71.7 / 72.0 / 71.9"),
                    ("DEQA", "71.4 / 73.9 / 72.7"), ("GPT-4o zero-shot", "23.7 / 28.5 / 25.9")],
    "twitter2017": [("BART text-only (Yan et al. 2021)", "65.2 / 65.6 / 65.4"), ("VLP-MABSA", "66.9 / 69.2 / 68.0"),
                    ("CMMT", "67.6 / 69.4 / 68.5"), ("AoM", "68.4 / 71.0 / 69.7"), ("DQPSA", "71.1 / 70.2 / 70.6"),
                    ("DEQA", "71.4 / 72.4 / 71.9"), ("GPT-4o zero-shot", "25.2 / 26.3 / 25.7")],
}
PUBLISHED_OTHER = {
    "twitter2015": "MATE F1: VLP-MABSA 85.7, AoM 86.2, DQPSA 87.7. MASC Acc / macro-F1: VLP-MABSA 78.6 / 73.8, "
                   "AoM 80.2 / 75.9.",
    "twitter2017": "MATE F1: VLP-MABSA 91.7, AoM 92.3, DQPSA 94.3. MASC Acc / macro-F1: VLP-MABSA 73.8 / 71.8, "
                   "AoM 76.4 / 75.0.",
}


@dataclass(frozen=True)
class Profile:
    name: str
    datasets: tuple[str, ...]
    hosts: tuple[str, ...]
    seeds: dict[str, int]  # variant -> number of seeds
    train: dict[str, Any]  # TrainConfig overrides
    model: dict[str, Any] | None = None  # ModelConfig overrides
    political: tuple[str, ...] = ("text", "lrsa")  # variants run on political_twitter (better host, 1 seed)
    host_train: dict[str, dict[str, Any]] | None = None  # host -> TrainConfig overrides on top of ``train``


PROFILES = {
    # ≤ 15 min on 2 shared cores: small subsets, 2 epochs; a smoke-scale reproduction of the table.
    "quick": Profile("quick", ("twitter2015",), HOSTS, {v: 1 for v in VARIANTS},
                     {"train_limit": 128, "dev_limit": 48, "test_limit": 96, "epochs": 2, "patience": 1},
                     {"train_layers": 2}),
    # the committed table: full splits, early stopping on dev JMASA F1.
    # The generative host's decoder starts from scratch and its dev F1 dips in the first epochs (patience 1
    # stopped its text run after 2 of 5 epochs), so it runs every epoch; the dev-best epoch is still kept.
    "full": Profile("full", DATASETS, HOSTS, {"text": 3, "image": 1, "concat": 1, "lrsa": 3},
                    {"epochs": 5, "patience": 1}, {"train_layers": 2},
                    host_train={"generative": {"patience": 4}}),
}


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    host: str
    variant: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.host}/{self.variant}/seed{self.seed}"


def plan(profile: Profile, datasets: list[str] | None = None, hosts: list[str] | None = None,
         variants: list[str] | None = None, max_seeds: int | None = None,
         political_host: str = "span") -> list[RunSpec]:
    """Every run of the profile in priority order: seed 0 before more seeds, text/lrsa before image/concat,
    span before generative, Twitter-2015/2017 before Political Twitter."""
    ds = [d for d in profile.datasets if not datasets or d in datasets]
    hs = [h for h in profile.hosts if not hosts or h in hosts]
    vs = [v for v in VARIANTS if not variants or v in variants]
    twitter = [d for d in ds if d != "political_twitter"]
    runs: list[RunSpec] = []
    order = [("text", "lrsa"), ("image", "concat")]
    top = max(profile.seeds.values())
    for host in hs:
        for seed in range(top):
            for group in order:
                for d in twitter:
                    for v in group:
                        n = profile.seeds[v] if max_seeds is None else min(max_seeds, profile.seeds[v])
                        if v in vs and seed < n:
                            runs.append(RunSpec(d, host, v, seed))
    if "political_twitter" in ds and political_host in hs:
        runs += [RunSpec("political_twitter", political_host, v, 0) for v in profile.political if v in vs]
    return runs


def run_config(profile: Profile, spec: RunSpec, base: dict[str, Any] | None = None,
               threads: int | None = None) -> RunConfig:
    over = {**variant_overrides(spec.variant), "model.host": spec.host, "train.dataset": spec.dataset,
            "train.seed": spec.seed, **{f"train.{k}": v for k, v in profile.train.items()},
            **{f"train.{k}": v for k, v in (profile.host_train or {}).get(spec.host, {}).items()},
            **{f"model.{k}": v for k, v in (profile.model or {}).items()}}
    if threads:
        over["train.threads"] = threads
    return RunConfig.model_validate(apply_overrides({**(base or {}), "name": spec.key.replace("/", "-")}, over))


def run_dir(runs: Path, profile: Profile, spec: RunSpec) -> Path:
    return runs / profile.name / spec.dataset / spec.host / spec.variant / f"seed{spec.seed}"


def reproduce(profile_name: str, runs: str | Path = "runs/reproduce", results: str | Path | None = None,
              datasets: list[str] | None = None, hosts: list[str] | None = None,
              variants: list[str] | None = None, seeds: int | None = None, max_runs: int | None = None,
              data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              threads: int | None = None, base: dict[str, Any] | None = None,
              log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run (or resume) the profile's runs, then write one report per dataset. Returns report paths."""
    from lrsa.training.loop import train

    profile = PROFILES[profile_name]
    runs = Path(runs)
    results = Path(results) if results else (Path("results") if profile.name == "full"
                                             else runs / profile.name)
    cache_dir = Path(cache_dir) if cache_dir else runs / "cache"
    specs = plan(profile, datasets, hosts, variants, seeds)
    done = 0
    failed: list[str] = []
    t0 = time.perf_counter()
    for spec in specs:
        out = run_dir(runs, profile, spec)
        if (out / "result.json").exists():
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
            if (out / "result.json").exists():  # finished by another worker meanwhile
                continue
            log(f"[{time.perf_counter() - t0:6.0f}s] run {spec.key}")
            train(run_config(profile, spec, base, threads), out, data_dir=data_dir, cache_dir=cache_dir,
                  log=lambda m: log(f"  {m}"))
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
            # one failed run (e.g. a missing rationale bundle) must not stop the table; it stays missing
            log(f"  FAILED {spec.key}: {type(err).__name__}: {err}")
            failed.append(spec.key)
            continue
        finally:
            lock.release()
        done += 1
        write_report(profile, runs, results, spec.dataset, specs, data_dir, base)
    paths = {}
    for d in dict.fromkeys(s.dataset for s in specs):
        paths[d] = write_report(profile, runs, results, d, specs, data_dir, base)
    if failed:
        log(f"{len(failed)} run(s) failed: {', '.join(failed)}")
    log(f"{done} run(s) trained in {time.perf_counter() - t0:.0f}s; reports: "
        + ", ".join(str(p) for p in paths.values()))
    return paths


# --------------------------------------------------------------------------- report


def _stat(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None}
    m = sum(values) / len(values)
    if len(values) < 2:  # one seed: no spread to report
        return {"mean": round(m, 2), "std": None}
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return {"mean": round(m, 2), "std": round(sd, 2)}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def collect(profile: Profile, runs: Path, dataset: str, specs: list[RunSpec]) -> list[dict[str, Any]]:
    rows = []
    groups: dict[tuple[str, str], list[RunSpec]] = {}
    for s in specs:
        if s.dataset == dataset:
            groups.setdefault((s.host, s.variant), []).append(s)
    for (host, variant), group in groups.items():
        results = []
        for s in group:
            f = run_dir(runs, profile, s) / "result.json"
            if f.exists():
                results.append((s.seed, json.loads(f.read_text())))
        tests = [(seed, r["test"]) for seed, r in results if r.get("test")]
        row = {"dataset": dataset, "host": host, "variant": variant,
               "seeds": [seed for seed, _ in tests],
               "planned_seeds": [s.seed for s in group],
               "status": "done" if len(tests) == len(group) else ("partial" if tests else "missing")}
        for name, get in (("jmasa_p", lambda t: t["jmasa"]["p"]), ("jmasa_r", lambda t: t["jmasa"]["r"]),
                          ("jmasa_f1", lambda t: t["jmasa"]["f1"]), ("mate_f1", lambda t: t["mate"]["f1"]),
                          ("masc_acc", lambda t: t["masc"]["acc"] if t.get("masc") else None),
                          ("masc_f1", lambda t: t["masc"]["macro_f1"] if t.get("masc") else None)):
            row[name] = _stat([v for v in (get(t) for _, t in tests) if v is not None])
        row["dev_jmasa_f1"] = _stat([r["dev"]["jmasa"]["f1"] for _, r in results if r.get("dev")])
        row["epochs"] = [r["epochs_run"] for _, r in results]
        row["train_seconds"] = [r["train_seconds"] for _, r in results]
        rows.append(row)
    return rows


def _fmt(s: dict[str, float | None]) -> str:
    if s["mean"] is None:
        return "–"
    if s["std"] is None:
        return f"{s['mean']:.1f}"
    return f"{s['mean']:.1f} ± {s['std']:.1f}"


def write_report(profile: Profile, runs: Path, results: Path, dataset: str, specs: list[RunSpec],
                 data_dir: str | Path | None = None, base: dict[str, Any] | None = None) -> Path:
    from lrsa.data import data_checksums

    rows = collect(profile, runs, dataset, specs)
    cfg_example = None
    for s in specs:
        if s.dataset == dataset:
            cfg_example = run_config(profile, s, base).model_dump()
            break
    from lrsa.rationales.bundle import read_manifest

    src = (cfg_example or {}).get("train", {}).get("rationale_source", "lexicon")
    bundle = read_manifest(dataset).get("sources", {}).get(src, {})
    report = {"commit": _git_commit(), "profile": profile.name,
              "rationale_bundle": {"source": src, "sha256": bundle.get("sha256"),
                                   "provenance": bundle.get("provenance")},
              "config": {"profile_train_overrides": profile.train, "profile_model_overrides": profile.model,
                         "profile_host_train_overrides": profile.host_train,
                         "seeds": profile.seeds,
                         "base_run_config": cfg_example},
              "data_sha256": data_checksums(dataset, data_dir), "rows": rows}
    out = results / dataset
    out.mkdir(parents=True, exist_ok=True)
    from lrsa.io import atomic_write_text
    from lrsa.training.loop import write_json

    write_json(out / "report.json", report)
    lines = [f"# {dataset}: LRSA ablation table ({profile.name} profile)", "",
             "Generated by `lrsa reproduce --profile " + profile.name + f" --datasets {dataset}`; "
             "test scores of the dev-best checkpoint (selection on dev JMASA F1 only), mean ± std over the "
             "seeds listed (a single number: one seed). MASC is on gold aspects. Offline default: MiniLM (all-MiniLM-L6-v2) backbone, "
             "image as text (MDCA captions), lexicon rationales.", "",
             f"commit `{report['commit']}`", "",
             "| host | variant | seeds | JMASA P | JMASA R | JMASA F1 | MATE F1 | MASC acc | MASC macro-F1 | dev JMASA F1 | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['host']} | {r['variant']} | {','.join(map(str, r['seeds'])) or '–'} | "
                     f"{_fmt(r['jmasa_p'])} | {_fmt(r['jmasa_r'])} | {_fmt(r['jmasa_f1'])} | {_fmt(r['mate_f1'])} | "
                     f"{_fmt(r['masc_acc'])} | {_fmt(r['masc_f1'])} | {_fmt(r['dev_jmasa_f1'])} | "
                     f"{r['status'] if r['status'] == 'done' else r['status'] + ' (planned seeds ' + ','.join(map(str, r['planned_seeds'])) + ')'} |")
    # LRSA vs its own text host
    lines += ["", "## LRSA against its own text-only host (same seeds)", ""]
    for host in HOSTS:
        by = {r["variant"]: r for r in rows if r["host"] == host}
        if "text" in by and "lrsa" in by and by["text"]["jmasa_f1"]["mean"] is not None \
                and by["lrsa"]["jmasa_f1"]["mean"] is not None:
            d = by["lrsa"]["jmasa_f1"]["mean"] - by["text"]["jmasa_f1"]["mean"]
            lines.append(f"- {host}: lrsa − text = {d:+.2f} JMASA F1 "
                         f"(seeds text {by['text']['seeds']}, lrsa {by['lrsa']['seeds']})")
    if dataset in PUBLISHED:
        lines += ["", "## Published (JMASA P / R / F1, from ../shared/METHOD.md; BART-base or larger, real images)",
                  "", "| system | JMASA P / R / F1 |", "|---|---|"]
        lines += [f"| {name} | {v} |" for name, v in PUBLISHED[dataset]]
        lines += ["", PUBLISHED_OTHER[dataset]]
    lines += ["", "Data sha256: " + ", ".join(f"`{k}` {v[:12]}…" for k, v in report["data_sha256"].items()), ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return out / "report.md"
