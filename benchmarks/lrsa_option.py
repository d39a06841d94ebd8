"""Experiment: one model or training option against the committed table, per seed (JMASA or MASC).

Trains the chosen variants (default: ``lrsa``) with the given overrides on the full profile's settings
(the overrides win over the profile's schedule; resumable runs under ``runs/exp/<name>/``), then pairs
each seed with the committed run records of the same seed (``results/<dataset>/runs/``): ``text`` and the
same variant with the defaults. Writes results/experiments/<name>.{md,json}: the selection score on dev
and the headline score on test (JMASA F1, or MASC accuracy with macro-F1 beside it), paired differences
(seeds, and the paired bootstrap over test items where both records have per-item counts), training time
per epoch, and which setting dev selects. Test takes no part in the choice.

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/lrsa_option.py --name fusion_gate \
        --set model.fusion_gate=zero --seeds 3 --threads 1
    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/lrsa_option.py --name masc_all_layers \
        --task masc --set model.train_layers=null --datasets twitter2017 --seeds 1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True, help="experiment name: runs/exp/<name>, results/experiments/<name>")
    ap.add_argument("--set", dest="sets", action="append", required=True, metavar="KEY=VALUE",
                    help="override of the option's runs, e.g. model.fusion_gate=zero (YAML value; null = None)")
    ap.add_argument("--task", choices=("jmasa", "masc"), default="jmasa")
    ap.add_argument("--variants", nargs="+", default=["lrsa"], help="variants trained with the option")
    ap.add_argument("--datasets", nargs="+", default=["twitter2015", "twitter2017"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--table", default="results/top2", help="the committed table's run records")
    ap.add_argument("--cache-dir", default="runs/reproduce/cache", help="frozen side-state cache to share")
    ap.add_argument("--rationales", default=None,
                    help="rationale source of the compared rows (default: arkmsa, arkmsa-aspect for MASC)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    from lrsa.data import data_checksums
    from lrsa.io import atomic_write_json, atomic_write_text, git_commit
    from lrsa.training.records import counts, read_record
    from lrsa.training.reproduce import HEADLINE, METRICS, PROFILES, _fmt, _fmt_paired, plan, reproduce, run_config
    from lrsa.training.stats import paired, summary

    overrides = {}
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    task = args.task
    host = "aspect" if task == "masc" else "span"
    source = args.rationales or ("arkmsa-aspect" if task == "masc" else "arkmsa")
    full = PROFILES["top2"]  # the experiments of the top-2 table pair with its records
    head = HEADLINE[task]
    metrics = {n: METRICS[task][n] for n in ([head, "masc_f1"] if task == "masc" else [head])}
    runs = Path("runs/exp") / args.name
    reproduce("top2", runs=runs, results=runs / "report", datasets=args.datasets, hosts=[host],
              variants=args.variants, tasks=[task], rationales=[source, "none"], seeds=args.seeds,
              data_dir=args.data_dir, cache_dir=Path(args.cache_dir), threads=args.threads, overrides=overrides)

    # the runs compared are the profile's own (its rows say which rationale source and image side each has)
    specs = {(s.dataset, s.variant, s.seed): s for s in plan(full, args.datasets, [host], ["text", *args.variants],
                                                             args.seeds, [task], [source, "none"])}

    # columns: text (committed), then per trained variant its committed defaults and the option
    columns = [("text", "text", Path(args.table))]
    for v in args.variants:
        if v != "text":
            columns.append((f"{v} (defaults)", v, Path(args.table)))
        columns.append((f"{v} (option)", v, runs / "report"))
    rows = []
    for ds in args.datasets:
        per_seed = []
        for seed in range(args.seeds):
            if not all((ds, v, seed) in specs for _, v, _ in columns):
                continue
            recs = {label: read_record(root, specs[(ds, v, seed)].key) for label, v, root in columns}
            if not all(recs.values()):
                continue
            per_seed.append({"seed": seed, "records": recs})

        def values(label: str, split: str, name: str) -> dict[int, float]:
            return {s["seed"]: metrics[name](s["records"][label]["result"][split]) for s in per_seed}

        def items(label: str) -> dict:
            return {s["seed"]: c for s in per_seed if (c := counts(s["records"][label])) is not None}

        row = {"dataset": ds, "task": task, "host": host, "seeds": [s["seed"] for s in per_seed], "columns": {}}
        for label, _, _ in columns:
            res = [s["records"][label]["result"] for s in per_seed]
            row["columns"][label] = {
                f"dev_{head}": summary(list(values(label, "dev", head).values())),
                **{f"test_{n}": summary(list(values(label, "test", n).values())) for n in metrics},
                "per_seed_dev": values(label, "dev", head), "per_seed_test": values(label, "test", head),
                "train_seconds_per_epoch": summary([r["train_seconds"] / r["epochs_run"] for r in res
                                                    if r.get("epochs_run")])}
        comparisons = {}
        for v in args.variants:
            option = f"{v} (option)"
            pairs = [("text", "option − text")] if v != "text" else []
            pairs.append((f"{v} (defaults)" if v != "text" else "text", "option − defaults"))
            for base, name in pairs:
                comparisons[f"{v}: {name}"] = paired(task, values(option, "test", head), values(base, "test", head),
                                                     items(option), items(base))
        row["paired_test"] = comparisons
        row["data_sha256"] = data_checksums(ds, args.data_dir)
        rows.append(row)

    option = ", ".join(f"{k}={v}" for k, v in overrides.items())
    label = {"jmasa": "JMASA F1", "masc": "MASC acc"}[task]
    report = {"commit": git_commit(), "experiment": args.name, "task": task, "overrides": overrides,
              "config": {v: run_config(full, next(s for s in specs.values() if s.variant == v),
                                       overrides).model_dump() for v in args.variants},
              "compared_with": f"{args.table}/<dataset>/runs (the committed table's records)", "rows": rows}
    lines = [f"# Experiment `{args.name}`: {', '.join(args.variants)} ({host} host, {task}) with {option}", "",
             "Generated by `benchmarks/lrsa_option.py " + " ".join(sys.argv[1:]) + f"`. {label} of the dev-best "
             "epoch on dev (the selection split) and on test, mean ± std over the seeds listed; the committed "
             "columns are the table's run records of the same seeds (same data order and initial encoder), and "
             "differences are paired per seed, with the paired bootstrap 95 % interval over test items where "
             f"both runs kept per-item counts. Full-profile settings ({full.description}, {source} rationales) "
             "plus the option. Seconds per training epoch depend on the load of the 2 shared cores.", "",
             f"commit `{report['commit']}`", "",
             "| dataset | seeds | measure | " + " | ".join(c[0] for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    measures = [(f"dev {label} (selection)", f"dev_{head}"), (f"test {label}", f"test_{head}")]
    if task == "masc":
        measures.append(("test MASC macro-F1", "test_masc_f1"))
    measures.append(("train s / epoch", "train_seconds_per_epoch"))
    for r in rows:
        seeds = ",".join(map(str, r["seeds"])) or "–"
        for name, key in measures:
            lines.append(f"| {r['dataset']} | {seeds} | {name} | "
                         + " | ".join(_fmt(r["columns"][c[0]][key]) for c in columns) + " |")
    lines += ["", f"Paired differences on test ({label}; seed-paired mean ± std [paired bootstrap 95 % over test "
              "items, over the seeds named after it where fewer]):", ""]
    for r in rows:
        for name, p in r["paired_test"].items():
            if p["seed_diff"]["mean"] is not None:
                lines.append(f"- {r['dataset']}, {name} (seeds {','.join(map(str, p['seeds']))}): {_fmt_paired(p)}")
    selection = {}
    for v in args.variants:
        default = f"{v} (defaults)" if v != "text" else "text"
        dev = {c: [r["columns"][c][f"dev_{head}"]["mean"] for r in rows
                   if r["columns"][c][f"dev_{head}"]["mean"] is not None] for c in (default, f"{v} (option)")}
        if all(dev.values()):
            d, o = (sum(x) / len(x) for x in dev.values())
            selection[v] = {f"dev_{head}_mean": {"defaults": round(d, 2), "option": round(o, 2)},
                            "chosen": option if o > d else "the defaults"}
            lines += ["", f"Selection on dev for `{v}` (mean dev {label} over the datasets and seeds above): "
                      f"defaults {d:.2f}, {option} {o:.2f}; dev selects {selection[v]['chosen']}."]
    report["selection"] = selection
    out = Path("results/experiments") / args.name
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), report)
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
