"""Runs of the all-layer table's code after its required rows: the backbone probe and the levers, each one run
per Twitter dataset at seed 0, every one a table run with a few settings changed (``EXTRAS``).

- **Backbone probe** (``mpnet``; issue 26): the span `text` run with MPNet (``all-mpnet-base-v2``, 110 M
  parameters, from the pip parts in ../shared/OFFLINE_MODELS.md) in place of MiniLM (22 M), scored on dev and
  test: what a bigger backbone is worth, and what it costs per epoch.
- **Levers** for the target `lrsa` − `text` >= +1.5 (issue 26), chosen before any of them ran and scored **on
  dev only** (``train.eval_test: false``: no test number exists for them): the fusion's zero gates (the fused
  states start equal to the text host's, ``model.fusion_gate: zero``) and one cross-attention over
  [V; L_t; L_i] instead of two (``model.fusion: single``), each on the span host (`lrsa`, arkmsa) and on the
  MASC aspect host (`lrsa`, arkmsa-aspect). The rule, fixed here: a lever whose dev gain over the same seed's
  `text` run, averaged over the two datasets, reaches the target's +1.5 is the candidate for seeds with test
  scores; otherwise none is, and the report says so.

Commands:
- ``list``: the runs in the order the workers take them (``NAME DATASET RUN_DIR`` per line, the run directory
  relative to the snapshot's worktree: the probe, then levers);
- ``config``: a run's config, i.e. the table's seed-0 run of its row with the extra's settings (nothing else
  changed), from whatever ``lrsa`` is importable. scripts/table_worker.sh calls it with the table snapshot's
  ``src/`` first on ``PYTHONPATH`` and trains it with that snapshot's ``lrsa train``, so the record names the
  table's commit;
- ``report``: copies each finished run's ``result.json`` to its record,
  ``results/table_extras/<name>/<dataset>.json`` (committed, so a checkout without the runs rebuilds the same
  report), then writes results/table_extras/summary.{json,md} from those records and the table's records of
  the same rows (seed 0; MiniLM's mean over seeds for the probe). A record of another commit, or with other
  settings than its extra's, stops the report. One seed each: differences carry no interval, and the report
  says so.

    .venv/bin/python benchmarks/table_extras.py list
    PYTHONPATH=<snapshot>/src .venv/bin/python benchmarks/table_extras.py config --name mpnet \
        --dataset twitter2015 --out F
    .venv/bin/python benchmarks/table_extras.py report [--runs ../lrsa-table-<commit>/runs/extras]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = ("twitter2015", "twitter2017")
RECORDS = REPO / "results" / "table_extras"
RUNS = Path("runs") / "extras"  # the extras' runs, inside the snapshot's worktree (scripts/table_worker.sh)
TARGET = 1.5  # the lrsa - text target (JMASA F1 or MASC accuracy points, mean over the datasets)


@dataclass(frozen=True)
class Extra:
    name: str
    kind: str  # "probe": dev and test | "lever": dev only
    host: str  # span | aspect
    variant: str
    rationales: str | None
    settings: dict = field(default_factory=dict)
    about: str = ""

    def overrides(self) -> dict:
        return {**self.settings, **({"train.eval_test": False} if self.kind == "lever" else {})}


EXTRAS = (
    Extra("mpnet", "probe", "span", "text", None, {"model.backbone": "mpnet"},
          "MPNet (110 M) as the span text host"),
    Extra("span-gate-zero", "lever", "span", "lrsa", "arkmsa", {"model.fusion_gate": "zero"},
          "span lrsa, zero gates: the fused states start as the text host's"),
    Extra("span-fusion-single", "lever", "span", "lrsa", "arkmsa", {"model.fusion": "single"},
          "span lrsa, one cross-attention over [V; L_t; L_i]"),
    Extra("masc-gate-zero", "lever", "aspect", "lrsa", "arkmsa-aspect", {"model.fusion_gate": "zero"},
          "MASC lrsa, zero gates"),
    Extra("masc-fusion-single", "lever", "aspect", "lrsa", "arkmsa-aspect", {"model.fusion": "single"},
          "MASC lrsa, one cross-attention"),
)
BY_NAME = {e.name: e for e in EXTRAS}


def table_specs(dataset: str, host: str, variant: str, rationales: str | None) -> list:
    """The table's ``RunSpec``s of one row on ``dataset``, one per seed (seed 0 first)."""
    from lrsa.training.reproduce import PROFILES, plan

    return plan(PROFILES["full"], datasets=[dataset], hosts=[host], variants=[variant],
                rationales=[rationales or "none"])


def table_spec(extra: Extra, dataset: str, text: bool = False):
    """The table's seed-0 ``RunSpec`` of the extra's row, or (``text``) of the `text` row of its host."""
    row = (extra.host, "text", None) if text else (extra.host, extra.variant, extra.rationales)
    [spec] = [s for s in table_specs(dataset, *row) if s.seed == 0]
    return spec


def config(extra: Extra, dataset: str):
    """The run's ``RunConfig``: the table's seed-0 run of the extra's row with the extra's settings."""
    from lrsa.training.reproduce import PROFILES, run_config

    run = run_config(PROFILES["full"], table_spec(extra, dataset), extra.overrides(), threads=1)
    return run.model_copy(update={"name": f"extra-{extra.name}-{dataset}-seed0"})


def run_dir(runs: Path, extra: Extra, dataset: str) -> Path:
    return runs / extra.name / dataset / "seed0"


def default_runs() -> Path:
    """Where scripts/table_worker.sh trains them: the snapshot's worktree, beside the table's own runs."""
    from lrsa.training.reproduce import PROFILES

    return REPO.parent / f"lrsa-table-{PROFILES['full'].snapshot[:12]}" / RUNS


def sync_records(runs: Path, records: Path = RECORDS) -> list[str]:
    """Copy the finished runs' ``result.json`` to ``records/<name>/<dataset>.json``; the runs copied."""
    copied = []
    for e in EXTRAS:
        for ds in DATASETS:
            src = run_dir(runs, e, ds) / "result.json"
            if src.is_file():
                (records / e.name).mkdir(parents=True, exist_ok=True)
                tmp = records / e.name / f".{ds}.json.part"
                tmp.write_text(src.read_text())
                tmp.replace(records / e.name / f"{ds}.json")
                copied.append(f"{e.name}/{ds}")
    return copied


def _metric(result: dict, host: str, split: str) -> float | None:
    scores = result.get(split)
    if not scores:
        return None
    return round(scores["masc"]["acc"] if host == "aspect" else scores["jmasa"]["f1"], 2)


def _summary(result: dict, host: str) -> dict:
    return {"dev": _metric(result, host, "dev"), "test": _metric(result, host, "test"),
            "epochs_run": result["epochs_run"], "best_epoch": result["best_epoch"],
            "median_epoch_seconds": round(statistics.median(h["train_seconds"] for h in result["history"]), 1),
            "commit": result["commit"], "cpu_model": result["machine"]["cpu_model"],
            "threads": result["machine"]["threads"]}


def _table_result(results: Path, spec) -> dict | None:
    """The result in the table's record of ``spec`` (``lrsa.training.records``), or None before it exists."""
    from lrsa.training.records import read_record

    rec = read_record(results, spec.key)
    return rec["result"] if rec else None


def _check(path: Path, result: dict, extra: Extra, snapshot: str) -> None:
    """A record must be the extra's run at the table's commit: its settings in force, nothing else changed."""
    if result["commit"] != snapshot:
        raise ValueError(f"{path}: commit {result['commit']}, expected the table's snapshot {snapshot}")
    for dotted, want in extra.overrides().items():
        section, key = dotted.split(".", 1)
        if result["config"][section][key] != want:
            raise ValueError(f"{path}: {dotted} = {result['config'][section][key]!r}, expected {want!r}")


def build(records: Path = RECORDS, results: Path = REPO / "results") -> dict:
    from lrsa.training.reproduce import PROFILES

    snapshot = PROFILES["full"].snapshot
    out: dict = {"snapshot": snapshot, "target": TARGET, "extras": {}}
    for e in EXTRAS:
        row_name = e.variant + (f" ({e.rationales})" if e.rationales else "")
        entry: dict = {"kind": e.kind, "host": e.host, "row": row_name, "settings": e.settings, "about": e.about,
                       "datasets": {}}
        for ds in DATASETS:
            row = {}
            base = _table_result(results, table_spec(e, ds))
            text = _table_result(results, table_spec(e, ds, text=True))
            row["table_seed0"] = _summary(base, e.host) if base else None
            row["text_seed0"] = _summary(text, e.host) if text else None
            if e.kind == "probe":
                found = [_table_result(results, s) for s in table_specs(ds, e.host, e.variant, e.rationales)]
                seeds = [_metric(r, e.host, "test") for r in found if r and r["commit"] == snapshot]
                row["table_test_seeds"] = len(seeds)
                row["table_test_mean"] = round(statistics.mean(seeds), 2) if seeds else None
                row["table_test_std"] = round(statistics.stdev(seeds), 2) if len(seeds) > 1 else None
            path = records / e.name / f"{ds}.json"
            if not path.is_file():
                row["run"] = None
                row["status"] = "not run yet (scripts/table_worker.sh, after the required rows)"
            else:
                result = json.loads(path.read_text())
                _check(path, result, e, snapshot)
                row["run"] = _summary(result, e.host)
                row["status"] = "done"
                ref = row["table_seed0"]
                if ref:
                    row["minus_table_seed0"] = {s: round(row["run"][s] - ref[s], 2) for s in ("dev", "test")
                                                if row["run"][s] is not None and ref[s] is not None}
                    row["epoch_seconds_ratio"] = round(row["run"]["median_epoch_seconds"]
                                                       / ref["median_epoch_seconds"], 2)
                if row["text_seed0"]:
                    row["dev_minus_text_seed0"] = round(row["run"]["dev"] - row["text_seed0"]["dev"], 2)
            entry["datasets"][ds] = row
        if e.kind == "lever":
            gains = [r.get("dev_minus_text_seed0") for r in entry["datasets"].values()]
            done = None not in gains
            entry["dev_minus_text_mean"] = round(statistics.mean(gains), 2) if done else None
            entry["candidate"] = (entry["dev_minus_text_mean"] >= TARGET) if done else None
        out["extras"][e.name] = entry
    return out


def _f(x: float | None, sign: bool = False) -> str:
    return "–" if x is None else (f"{x:+.1f}" if sign else f"{x:.1f}")


def render(summary: dict) -> str:
    snap = summary["snapshot"][:12]
    lines = ["# Runs after the all-layer table's required rows: backbone probe and levers", "",
             "Each is the table's seed-0 run of its row with the settings shown and nothing else changed, trained "
             f"from the table's snapshot {snap} (scripts/table_worker.sh). One seed each: a difference is one "
             "seed-paired number without an interval. Rebuild: `.venv/bin/python benchmarks/table_extras.py report` "
             "(also run by `bash scripts/table.sh --report`). JMASA F1 for the span host, MASC accuracy for the "
             "aspect host.", "",
             "## Backbone probe", "",
             "| dataset | MPNet dev / test | MiniLM seed 0 dev / test | MPNet − MiniLM (seed 0) dev / test | "
             "MiniLM test mean ± std (seeds) | s per epoch MPNet / MiniLM (1 thread) | epochs MPNet / MiniLM |",
             "|---|---|---|---|---|---|---|"]
    probe = summary["extras"]["mpnet"]
    for ds, r in probe["datasets"].items():
        ref, run = r["table_seed0"], r["run"]
        mini = f"{_f(ref['dev'])} / {_f(ref['test'])}" if ref else "–"
        mean = "–" if r["table_test_mean"] is None else (
            f"{r['table_test_mean']:.1f}" + ("" if r["table_test_std"] is None else f" ± {r['table_test_std']:.1f}")
            + f" ({r['table_test_seeds']})")
        ref_s = ref["median_epoch_seconds"] if ref else "–"
        if run is None:
            lines.append(f"| {ds} | {r['status']} | {mini} | – | {mean} | – / {ref_s} | – |")
            continue
        d = r.get("minus_table_seed0", {})
        lines.append(f"| {ds} | {_f(run['dev'])} / {_f(run['test'])} | {mini} | {_f(d.get('dev'), True)} / "
                     f"{_f(d.get('test'), True)} | {mean} | {run['median_epoch_seconds']} / {ref_s} | "
                     f"{run['epochs_run']} / {ref['epochs_run'] if ref else '–'} |")
    lines += ["", "## Levers for `lrsa` − `text` (dev only)", "",
              f"Chosen before any of them ran; scored on dev only (no test number exists for them). Rule: a lever "
              f"whose dev gain over the same seed's `text` run, averaged over both datasets, reaches +{TARGET} is the "
              "candidate for seeds with test scores.", ""]
    lines += [f"- `{n}`: {e['about']} (`{json.dumps(e['settings'])}`)" for n, e in summary["extras"].items()
              if e["kind"] == "lever"]
    lines += ["", "| lever | dataset | dev | table `lrsa` seed 0 dev | `text` seed 0 dev | lever − `lrsa` | "
              "lever − `text` | s per epoch lever / `lrsa` |", "|---|---|---|---|---|---|---|---|"]
    for name, e in summary["extras"].items():
        if e["kind"] != "lever":
            continue
        for ds, r in e["datasets"].items():
            ref, text, run = r["table_seed0"], r["text_seed0"], r["run"]
            ref_dev, text_dev = _f(ref["dev"]) if ref else "–", _f(text["dev"]) if text else "–"
            ref_s = ref["median_epoch_seconds"] if ref else "–"
            if run is None:
                lines.append(f"| `{name}` | {ds} | {r['status']} | {ref_dev} | {text_dev} | – | – | "
                             f"– / {ref_s} |")
                continue
            lines.append(f"| `{name}` | {ds} | {_f(run['dev'])} | {ref_dev} | {text_dev} | "
                         f"{_f(r.get('minus_table_seed0', {}).get('dev'), True)} | "
                         f"{_f(r.get('dev_minus_text_seed0'), True)} | {run['median_epoch_seconds']} / {ref_s} |")
    verdicts = [f"{n}: mean dev gain over `text` {e['dev_minus_text_mean']:+.2f}"
                + (" (candidate)" if e["candidate"] else " (below the rule)")
                for n, e in summary["extras"].items() if e["kind"] == "lever" and e["dev_minus_text_mean"] is not None]
    lines += ["", "Verdicts: " + ("; ".join(verdicts) if verdicts else "none yet (no lever has run on both datasets)")
              + ".", "", "Seconds per epoch are medians over a run's epochs on one thread, beside the table's other "
              "worker (the CPU is named in each record)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the runs (name, dataset, run directory), in the order the workers take them")
    c = sub.add_parser("config", help="write a run's config (JSON)")
    c.add_argument("--name", choices=list(BY_NAME), required=True)
    c.add_argument("--dataset", choices=DATASETS, required=True)
    c.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report", help="write results/table_extras/ (records and summary)")
    r.add_argument("--runs", type=Path, default=None, help="the runs (default: the snapshot's worktree)")
    args = ap.parse_args()
    if args.cmd == "list":
        sys.stdout.write("".join(f"{e.name} {ds} {run_dir(RUNS, e, ds)}\n" for e in EXTRAS for ds in DATASETS))
        return
    if args.cmd == "config":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".part")
        tmp.write_text(config(BY_NAME[args.name], args.dataset).model_dump_json(indent=2))
        tmp.replace(args.out)
        return
    sync_records(args.runs or default_runs())
    summary = build()
    RECORDS.mkdir(parents=True, exist_ok=True)
    (RECORDS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RECORDS / "summary.md").write_text(render(summary))
    sys.stdout.write(render(summary))


if __name__ == "__main__":
    main()
