"""The tables' reports, rebuilt from the records of finished runs: ``<results>/<dataset>/report.{json,md}``
with missing rows marked, each non-``text`` row with its paired comparison against ``text`` of the same task
and host (``lrsa.training.stats``), and the README's summary table (``summary_markdown``, ``insert_summary``).
Nothing is chosen on test.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrsa.io import git_commit
from lrsa.training.records import counts, read_record
from lrsa.training.stats import paired, summary
from lrsa.training.tables.plan import DATASETS, Profile, Row, run_config

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


def _verdict(p: dict[str, Any]) -> str:
    """": helps" / ": hurts" when both seed-level intervals (the t-interval over seeds and, where the runs have
    per-item counts, the two-level bootstrap) lie above / below zero, else ": no effect detected"; "" with
    fewer than two seeds. Three identical seed differences give a t-interval of zero width: the two-level
    bootstrap, which adds the test items' noise, then decides."""
    ci, two = p.get("seed_ci95"), p.get("two_level")
    if not ci:
        return ""
    if ci["lo"] > 0 and (two is None or two["lo"] > 0):
        return ": helps"
    if ci["hi"] < 0 and (two is None or two["hi"] < 0):
        return ": hurts"
    return ": no effect detected"


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
    if short:  # the README table: the t-interval over seeds, and the verdict of both seed-level intervals
        return f"{d['mean']:+.1f} seeds {_interval(p['seed_ci95'])}{_verdict(p)}"
    # a legacy run (recorded before per-item counts) is in the seed-paired differences but in no bootstrap
    subset = "" if not ci or ci["seeds"] == p["seeds"] else f" (seeds {','.join(map(str, ci['seeds']))})"
    items = _interval(ci) + subset if ci else "[no item counts]"
    return (f"{d['mean']:+.1f}{spread}; seeds (t) {_interval(p['seed_ci95'])}; seeds×items "
            f"{_interval(p.get('two_level'))}{subset if p.get('two_level') else ''}; items {items}")


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
    cpus = Counter(p["cpu"] for r in rows for p in r["per_seed"] if p.get("cpu"))
    if cpus:
        mixed = [f"{r['host']} {r['variant']} ({r['rationales']}) seeds "
                 + ", ".join(f"{p['seed']}" + (f" {p['cpu'].split(',')[0]}" if p.get("cpu") else "")
                             for p in r["per_seed"])
                 for r in rows if len({p.get("cpu") for p in r["per_seed"]}) > 1]
        lines += ["", "Machines of the runs: " + "; ".join(f"{c} ({n} run{'s' if n > 1 else ''})"
                                                           for c, n in sorted(cpus.items()))
                  + " (per seed in report.json)."
                  + (" Rows whose seeds ran on more than one machine: " + "; ".join(mixed) + "." if mixed else "")]
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
