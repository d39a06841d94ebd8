"""The backbone probe of the all-layer table: MPNet as the span host's backbone, one seed per dataset.

Issue 26 asks, after the table's required rows, for one span `text` run per dataset with MPNet
(``all-mpnet-base-v2``, 110 M parameters, from the pip parts in ../shared/OFFLINE_MODELS.md) in place of
MiniLM (22 M), on the table's schedule (``PROFILES["full"]``: all layers tuned, <= 20 epochs, patience 3 on
dev, fp32), scored on dev and test: what a bigger backbone is worth, and what it costs per epoch.

- ``config``: the probe's run config, i.e. the table's span `text` seed-0 run of that dataset with
  ``model.backbone: mpnet`` (nothing else changed), from whatever ``lrsa`` is importable. scripts/table.sh
  calls it with the table snapshot's ``src/`` first on ``PYTHONPATH`` and trains it with that snapshot's
  ``lrsa train``, so the probe's record names the table's commit.
- ``report``: copies each finished probe run's ``result.json`` to its record,
  ``results/backbone_probe/<dataset>.json`` (committed, so a checkout without the runs rebuilds the same
  report), then writes results/backbone_probe/summary.{json,md} from those records and the MiniLM records of
  the same row (``results/<dataset>/runs/span/text/seed*.json``, the table's commit only): dev and test JMASA
  F1, epochs, the median seconds per training epoch (one thread), MPNet minus MiniLM at the same seed, and
  MiniLM's mean +- std over its seeds. One MPNet seed: its difference carries no interval, and the report
  says so. A dataset whose probe has not run yet is listed as such.

    PYTHONPATH=<snapshot>/src .venv/bin/python benchmarks/backbone_probe.py config --dataset twitter2015 --out F
    .venv/bin/python benchmarks/backbone_probe.py report [--runs ../lrsa-table-<commit>/runs/probe]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = ("twitter2015", "twitter2017")
PROBE = {"model.backbone": "mpnet"}
RECORDS = REPO / "results" / "backbone_probe"


def probe_config(dataset: str):
    """The table's span `text` seed-0 run of ``dataset`` with MPNet as its backbone (a ``RunConfig``)."""
    from lrsa.training.reproduce import PROFILES, plan, run_config

    profile = PROFILES["full"]
    [spec] = [s for s in plan(profile, datasets=[dataset], hosts=["span"], variants=["text"]) if s.seed == 0]
    run = run_config(profile, spec, PROBE, threads=1)
    return run.model_copy(update={"name": f"probe-mpnet-{dataset}-span-text-seed0"})


def probe_dir(runs: Path, dataset: str) -> Path:
    return runs / dataset / "span" / "text-mpnet" / "seed0"


def default_runs() -> Path:
    """Where scripts/table.sh trains the probe: the snapshot's worktree, beside the table's own runs."""
    from lrsa.training.reproduce import PROFILES

    return REPO.parent / f"lrsa-table-{PROFILES['full'].snapshot[:12]}" / "runs" / "probe"


def _epoch_seconds(result: dict) -> float:
    return statistics.median(h["train_seconds"] for h in result["history"])


def _summary(result: dict) -> dict:
    return {"dev_jmasa_f1": round(result["dev"]["jmasa"]["f1"], 2),
            "test_jmasa_f1": round(result["test"]["jmasa"]["f1"], 2),
            "epochs_run": result["epochs_run"], "best_epoch": result["best_epoch"],
            "median_epoch_seconds": round(_epoch_seconds(result), 1), "commit": result["commit"],
            "backbone": result["config"]["model"]["backbone"], "cpu_model": result["machine"]["cpu_model"],
            "threads": result["machine"]["threads"]}


def sync_records(runs: Path, records: Path = RECORDS) -> list[str]:
    """Copy the finished probe runs' ``result.json`` to ``records/<dataset>.json``; the datasets copied."""
    copied = []
    for ds in DATASETS:
        src = probe_dir(runs, ds) / "result.json"
        if src.is_file():
            records.mkdir(parents=True, exist_ok=True)
            tmp = records / f".{ds}.json.part"
            tmp.write_text(src.read_text())
            tmp.replace(records / f"{ds}.json")
            copied.append(ds)
    return copied


def build(records: Path = RECORDS, results: Path = REPO / "results") -> dict:
    from lrsa.training.reproduce import PROFILES

    snapshot = PROFILES["full"].snapshot
    out: dict = {"snapshot": snapshot, "probe": PROBE, "row": "JMASA span text, seed 0, the table's schedule",
                 "datasets": {}}
    for ds in DATASETS:
        minilm = {}
        for f in sorted((results / ds / "runs" / "span" / "text").glob("seed*.json")):
            rec = json.loads(f.read_text())["result"]
            if rec["commit"] == snapshot:
                minilm[rec["seed"]] = _summary(rec)
        entry: dict = {"minilm_seeds": sorted(minilm)}
        if minilm:
            tests = [m["test_jmasa_f1"] for m in minilm.values()]
            entry["minilm_test_mean"] = round(statistics.mean(tests), 2)
            entry["minilm_test_std"] = round(statistics.stdev(tests), 2) if len(tests) > 1 else None
            entry["minilm_seed0"] = minilm.get(0)
        path = records / f"{ds}.json"
        if not path.is_file():
            entry["mpnet"] = None
            entry["status"] = "not run yet (trained by scripts/table.sh after the required rows)"
        else:
            mp = _summary(json.loads(path.read_text()))
            if mp["commit"] != snapshot or mp["backbone"] != "mpnet":
                raise ValueError(f"{path}: commit {mp['commit']} / backbone {mp['backbone']}, expected the "
                                 f"table's snapshot {snapshot} and mpnet")
            entry["mpnet"] = mp
            entry["status"] = "done"
            if 0 in minilm:
                m0 = minilm[0]
                entry["mpnet_minus_minilm_seed0"] = {
                    "dev": round(mp["dev_jmasa_f1"] - m0["dev_jmasa_f1"], 2),
                    "test": round(mp["test_jmasa_f1"] - m0["test_jmasa_f1"], 2),
                    "epoch_seconds_ratio": round(mp["median_epoch_seconds"] / m0["median_epoch_seconds"], 2)}
        out["datasets"][ds] = entry
    return out


def render(summary: dict) -> str:
    lines = ["# Backbone probe: MPNet vs MiniLM as the span host (all layers tuned)", "",
             f"The table's span `text` row, seed 0, on its schedule, with `{json.dumps(summary['probe'])}`; trained "
             f"from the table's snapshot {summary['snapshot'][:12]} (scripts/table.sh, after the required rows). "
             "One MPNet seed per dataset: its difference to MiniLM is one seed-paired number without an interval. "
             "Rebuild: `.venv/bin/python benchmarks/backbone_probe.py report` (or `bash scripts/table.sh --report`).", "",
             "| dataset | MPNet dev / test | MiniLM seed 0 dev / test | MPNet − MiniLM (seed 0) dev / test | "
             "MiniLM test mean ± std (seeds) | s per epoch MPNet / MiniLM (1 thread) | epochs MPNet / MiniLM |",
             "|---|---|---|---|---|---|---|"]
    for ds, e in summary["datasets"].items():
        m0 = e.get("minilm_seed0")
        mini = f"{m0['dev_jmasa_f1']:.1f} / {m0['test_jmasa_f1']:.1f}" if m0 else "–"
        std = f" ± {e['minilm_test_std']:.1f}" if e.get("minilm_test_std") is not None else ""
        mean = f"{e['minilm_test_mean']:.1f}{std} ({len(e['minilm_seeds'])})" if e["minilm_seeds"] else "–"
        mp = e["mpnet"]
        if mp is None:
            lines.append(f"| {ds} | {e['status']} | {mini} | – | {mean} | – / "
                         f"{m0['median_epoch_seconds'] if m0 else '–'} | – |")
            continue
        d = e.get("mpnet_minus_minilm_seed0")
        diff = f"{d['dev']:+.1f} / {d['test']:+.1f}" if d else "–"
        lines.append(f"| {ds} | {mp['dev_jmasa_f1']:.1f} / {mp['test_jmasa_f1']:.1f} | {mini} | {diff} | {mean} | "
                     f"{mp['median_epoch_seconds']} / {m0['median_epoch_seconds'] if m0 else '–'} | "
                     f"{mp['epochs_run']} / {m0['epochs_run'] if m0 else '–'} |")
    lines += ["", "Seconds per epoch are medians over the run's epochs, on one thread beside the table's other "
              "worker (the CPU is named in each run's result.json)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config", help="write the probe's run config (JSON)")
    c.add_argument("--dataset", choices=DATASETS, required=True)
    c.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report", help="write results/backbone_probe/ (records and summary)")
    r.add_argument("--runs", type=Path, default=None, help="the probe runs (default: the snapshot's worktree)")
    args = ap.parse_args()
    if args.cmd == "config":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".part")
        tmp.write_text(probe_config(args.dataset).model_dump_json(indent=2))
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
