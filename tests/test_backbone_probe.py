"""The all-layer table's backbone probe (benchmarks/backbone_probe.py, scripts/table_worker.sh): its run is the
table's span `text` seed-0 run with MPNet and nothing else changed; the workers reach it exactly after the
required rows; its report reads committed records, checks their commit and backbone, and pairs them with
MiniLM's seed 0."""

from __future__ import annotations

import json
import re
import shlex
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import backbone_probe as bp  # noqa: E402

from lrsa.training import reproduce as rp  # noqa: E402


def test_the_probe_is_the_tables_span_text_seed0_run_with_mpnet():
    full = rp.PROFILES["full"]
    [spec] = [s for s in rp.plan(full, datasets=["twitter2017"], hosts=["span"], variants=["text"]) if s.seed == 0]
    table = rp.run_config(full, spec, threads=1).model_dump()
    probe = bp.probe_config("twitter2017").model_dump()
    assert probe["model"].pop("backbone") == "mpnet" and table["model"].pop("backbone") == "minilm"
    assert probe.pop("name") != table.pop("name")
    assert probe == table  # the schedule, seed, dataset and every other switch are the table's
    assert probe["model"]["train_layers"] is None and probe["train"]["precision"] == "fp32"


def test_the_workers_train_the_required_rows_first_then_the_probe():
    worker = (REPO / "scripts" / "table_worker.sh").read_text()
    first = re.search(r'"\$lrsa" reproduce "\$\{table\[@\]\}"(.*?)\\\n(.*?)\\\n', worker, re.S)
    args = shlex.split(first.group(1) + " " + first.group(2))
    variants = [args[i + 1] for i, a in enumerate(args) if a == "--variants"]
    sources = [args[i + 1] for i, a in enumerate(args) if a == "--rationales"]
    full = rp.PROFILES["full"]
    required = sum(r.seeds * len(r.datasets) for r in full.rows if r.required)
    assert [s.key for s in rp.plan(full, variants=variants, rationales=sources)] == \
        [s.key for s in rp.plan(full)[:required]]
    assert worker.index("benchmarks/backbone_probe.py\" config") > worker.index("--rationales gpt4")  # after them
    assert "table_worker.sh" in (REPO / "scripts" / "table.sh").read_text()


def test_the_report_pairs_a_probe_record_with_minilm_seed0_and_rejects_another_commit(tmp_path):
    # a real all-layer record stands in for a finished probe run (seed 1 of MiniLM, relabelled as MPNet)
    stand_in = json.loads((REPO / "results/twitter2015/runs/span/text/seed1.json").read_text())["result"]
    stand_in["config"]["model"]["backbone"] = "mpnet"
    run = bp.probe_dir(tmp_path / "runs", "twitter2015")
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps(stand_in))
    assert bp.sync_records(tmp_path / "runs", tmp_path / "records") == ["twitter2015"]
    summary = bp.build(tmp_path / "records")
    t15, t17 = summary["datasets"]["twitter2015"], summary["datasets"]["twitter2017"]
    seed0 = json.loads((REPO / "results/twitter2015/runs/span/text/seed0.json").read_text())["result"]
    assert t15["status"] == "done" and t15["minilm_seeds"][:3] == [0, 1, 2]
    assert t15["mpnet_minus_minilm_seed0"]["test"] == pytest.approx(
        stand_in["test"]["jmasa"]["f1"] - seed0["test"]["jmasa"]["f1"], abs=0.011)
    assert t17["mpnet"] is None and t17["status"].startswith("not run yet")
    md = bp.render(summary)
    assert "| twitter2015 |" in md and "not run yet" in md and "without an interval" in md
    stand_in["commit"] = "0" * 40  # a run of other code never enters the probe's report
    (tmp_path / "records" / "twitter2015.json").write_text(json.dumps(stand_in))
    with pytest.raises(ValueError, match="snapshot"):
        bp.build(tmp_path / "records")
