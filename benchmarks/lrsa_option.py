"""Experiment: one model option of the full LRSA (span host) against the committed table, per seed.

Trains the span host's ``lrsa`` variant with the given overrides on the full profile's settings
(resumable runs under ``runs/exp/<name>/``), then pairs each seed with the committed full-profile runs of
the same seed (``runs/reproduce/full/``): ``text`` (no side input) and ``lrsa`` with the defaults.
Writes results/experiments/<name>.{md,json}: dev (the selection split) and test JMASA F1, the paired
differences, training time per epoch, and which setting dev selects. Test takes no part in the choice.

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/lrsa_option.py --name fusion_gate \
        --set model.fusion_gate=zero --seeds 3 --threads 1
    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/lrsa_option.py --name side_encoder \
        --set model.side_encoder=shared --datasets twitter2015 --seeds 1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

NAMES = ("text", "lrsa_default", "lrsa_option")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True, help="experiment name: runs/exp/<name>, results/experiments/<name>")
    ap.add_argument("--set", dest="sets", action="append", required=True, metavar="KEY=VALUE",
                    help="model/train override of the lrsa runs, e.g. model.fusion_gate=zero")
    ap.add_argument("--datasets", nargs="+", default=["twitter2015", "twitter2017"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--table-runs", default="runs/reproduce", help="where the full-profile runs are")
    ap.add_argument("--rationales", default="arkmsa", help="rationale source of the lrsa rows compared")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    from lrsa.config import apply_overrides
    from lrsa.data import data_checksums
    from lrsa.io import atomic_write_json, atomic_write_text, git_commit
    from lrsa.training.reproduce import PROFILES, RunSpec, _fmt, reproduce, run_config, run_dir
    from lrsa.training.stats import summary

    overrides = {}
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    full = PROFILES["full"]
    base = apply_overrides({}, overrides)
    runs = Path("runs/exp") / args.name
    reproduce("full", runs=runs, results=runs / "report", datasets=args.datasets, hosts=["span"],
              variants=["lrsa"], tasks=["jmasa"], rationales=[args.rationales], seeds=args.seeds, data_dir=args.data_dir,
              cache_dir=Path(args.table_runs) / "cache", threads=args.threads, base=base)

    def result(root: Path, spec: RunSpec) -> dict | None:
        f = run_dir(root, full, spec) / "result.json"
        return json.loads(f.read_text()) if f.exists() else None

    rows = []
    for ds in args.datasets:
        per_seed = []
        for seed in range(args.seeds):
            lrsa = RunSpec(ds, "span", "lrsa", seed, args.rationales)
            got = {"text": result(Path(args.table_runs), RunSpec(ds, "span", "text", seed)),
                   "lrsa_default": result(Path(args.table_runs), lrsa),
                   "lrsa_option": result(runs, lrsa)}
            if not all(got.values()):
                continue
            per_seed.append({"seed": seed, **{name: {"test_jmasa_f1": r["test"]["jmasa"]["f1"],
                                                     "dev_jmasa_f1": r["dev"]["jmasa"]["f1"],
                                                     "epochs": r["epochs_run"],
                                                     "train_seconds": r["train_seconds"]}
                                              for name, r in got.items()}})

        def stat(key: str, name: str) -> dict:
            return summary([s[name][key] for s in per_seed])

        rows.append({"dataset": ds, "host": "span", "seeds": [s["seed"] for s in per_seed], "per_seed": per_seed,
                     "dev_jmasa_f1": {n: stat("dev_jmasa_f1", n) for n in NAMES},
                     "test_jmasa_f1": {n: stat("test_jmasa_f1", n) for n in NAMES},
                     "train_seconds_per_epoch": {n: summary([s[n]["train_seconds"] / s[n]["epochs"]
                                                           for s in per_seed]) for n in NAMES},
                     "option_minus_text": summary([s["lrsa_option"]["test_jmasa_f1"] - s["text"]["test_jmasa_f1"]
                                                 for s in per_seed]),
                     "option_minus_default": summary([s["lrsa_option"]["test_jmasa_f1"]
                                                    - s["lrsa_default"]["test_jmasa_f1"] for s in per_seed]),
                     "data_sha256": data_checksums(ds, args.data_dir)})

    def fmt_delta(s: dict) -> str:
        if s["mean"] is None:
            return "–"
        return f"{s['mean']:+.1f}" + ("" if s["std"] is None else f" ± {s['std']:.1f}")

    option = ", ".join(f"{k}={v}" for k, v in overrides.items())
    report = {"commit": git_commit(), "experiment": args.name, "overrides": overrides,
              "config": run_config(full, RunSpec(args.datasets[0], "span", "lrsa", 0, args.rationales),
                                   base).model_dump(),
              "compared_with": f"{args.table_runs}/full (defaults; the committed table)", "rows": rows}
    lines = [f"# Experiment `{args.name}`: lrsa (span host) with {option}", "",
             "Generated by `benchmarks/lrsa_option.py " + " ".join(sys.argv[1:]) + "`. JMASA F1 of the dev-best epoch on dev (the "
             "selection split) and on test, mean ± std over the seeds listed; each seed's runs share data "
             "order and initial encoder, and differences are paired per seed. Full-profile settings ("
             + full.description + f", {args.rationales} rationales, MDCA captions as the image). "
             "Seconds per training epoch depend on the load of the 2 shared cores at the time.", "",
             f"commit `{report['commit']}`", "",
             f"| dataset | seeds | measure | text | lrsa (defaults) | lrsa ({option}) | option − text | "
             "option − defaults |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        seeds = ",".join(map(str, r["seeds"])) or "–"
        for label, key in (("dev JMASA F1 (selection)", "dev_jmasa_f1"), ("test JMASA F1", "test_jmasa_f1"),
                           ("train s / epoch", "train_seconds_per_epoch")):
            v = r[key]
            extra = (f" {fmt_delta(r['option_minus_text'])} | {fmt_delta(r['option_minus_default'])} |"
                     if key == "test_jmasa_f1" else " | |")
            lines.append(f"| {r['dataset']} | {seeds} | {label} | {_fmt(v['text'])} | {_fmt(v['lrsa_default'])} | "
                         f"{_fmt(v['lrsa_option'])} |{extra}")
    dev = {n: [r["dev_jmasa_f1"][n]["mean"] for r in rows if r["dev_jmasa_f1"][n]["mean"] is not None]
           for n in ("lrsa_default", "lrsa_option")}
    if all(dev.values()):
        default, opt = (sum(v) / len(v) for v in (dev["lrsa_default"], dev["lrsa_option"]))
        chosen = option if opt > default else "the defaults"
        report["selection"] = {"dev_jmasa_f1_mean": {"defaults": round(default, 2), "option": round(opt, 2)},
                               "chosen": chosen}
        lines += ["", f"Selection on dev (mean dev JMASA F1 over the datasets and seeds above): defaults "
                  f"{default:.2f}, {option} {opt:.2f}; dev selects {chosen}."]
    out = Path("results/experiments") / args.name
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), report)
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
