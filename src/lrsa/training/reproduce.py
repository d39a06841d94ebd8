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

The work is done in three modules, imported one way (running and reporting read the plan; the plan reads
neither): ``lrsa.training.tables.plan`` (profiles, rows, schedules, the plan of runs and their configs),
``lrsa.training.tables.run`` (training the plan's runs, with workers, locks and records) and
``lrsa.training.tables.report`` (the reports and the README's summary). This module re-exports their names,
so that ``lrsa.training.reproduce`` stays the one place to import them from; ``PROFILES`` is the plan's own
dict, so a profile added to it here is seen by the run and the reports.
"""

from __future__ import annotations

from lrsa.training.tables.plan import (
    DATASETS, HOSTS, MAIN_SCHEDULE, PROFILES, SCHEDULE, SCHEDULE_ALL, SCHEDULE_ALL_MODEL, SCHEDULE_MODEL, TWITTER,
    Profile, Row, RunSpec, _jmasa, _masc, main_precision, plan, run_config, run_dir,
)
from lrsa.training.tables.report import (
    HEADLINE, METRICS, PUBLISHED, PUBLISHED_MASC, PUBLISHED_MATE, SUMMARY_MARKERS, _cells, _finished, _fmt,
    _fmt_paired, _interval, _machine, _per_seed, _Run, _status, _tuned_layers, collect, insert_summary,
    reading_notes, render, summary_markdown, write_report,
)
from lrsa.training.tables.run import ensure_published_bundles, reproduce, sync_records

__all__ = [
    # plan
    "DATASETS", "HOSTS", "MAIN_SCHEDULE", "PROFILES", "SCHEDULE", "SCHEDULE_ALL", "SCHEDULE_ALL_MODEL",
    "SCHEDULE_MODEL", "TWITTER", "Profile", "Row", "RunSpec", "_jmasa", "_masc", "main_precision", "plan",
    "run_config", "run_dir",
    # report
    "HEADLINE", "METRICS", "PUBLISHED", "PUBLISHED_MASC", "PUBLISHED_MATE", "SUMMARY_MARKERS", "_cells",
    "_finished", "_fmt", "_fmt_paired", "_interval", "_machine", "_per_seed", "_Run", "_status", "_tuned_layers",
    "collect", "insert_summary", "reading_notes", "render", "summary_markdown", "write_report",
    # run
    "ensure_published_bundles", "reproduce", "sync_records",
]
