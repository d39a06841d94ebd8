"""The runs after the all-layer table's required rows (benchmarks/table_extras.py, scripts/table_worker.sh): each
is the table's seed-0 run of its row with only its extra's settings changed (levers: dev only); the workers
reach them exactly after the required rows; the report reads committed records, checks their commit and
settings, and pairs them with the table's seed 0."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import table_extras as tx  # noqa: E402

from lrsa.training import reproduce as rp  # noqa: E402


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("name", [e.name for e in tx.EXTRAS])
def test_an_extra_is_its_tables_seed0_run_with_only_its_settings_changed(name):
    e = tx.BY_NAME[name]
    full = rp.PROFILES["full"]
    spec = tx.table_spec(e, "twitter2017")
    assert spec.seed == 0 and spec.host == e.host and spec.variant == e.variant and spec.rationales == e.rationales
    table = _flat(rp.run_config(full, spec, threads=1).model_dump())
    extra = _flat(tx.config(e, "twitter2017").model_dump())
    changed = {k for k in table if table[k] != extra[k]} - {"name"}
    assert changed == set(e.overrides()), changed
    assert all(extra[k] == v for k, v in e.overrides().items())
    assert extra["train.eval_test"] is (e.kind == "probe")  # levers never produce a test number
    assert extra["model.train_layers"] is None and extra["train.precision"] == "fp32"


def test_the_workers_train_the_required_rows_first_then_the_extras():
    worker = (REPO / "scripts" / "table_worker.sh").read_text()
    first = re.search(r'"\$lrsa" reproduce "\$\{table\[@\]\}"(.*?)\\\n(.*?)\\\n', worker, re.S)
    args = shlex.split(first.group(1) + " " + first.group(2))
    variants = [args[i + 1] for i, a in enumerate(args) if a == "--variants"]
    sources = [args[i + 1] for i, a in enumerate(args) if a == "--rationales"]
    full = rp.PROFILES["full"]
    required = sum(r.seeds * len(r.datasets) for r in full.rows if r.required)
    assert [s.key for s in rp.plan(full, variants=variants, rationales=sources)] == \
        [s.key for s in rp.plan(full)[:required]]
    assert first.start() < worker.index('"$extras" list') < worker.rindex('"$lrsa" reproduce')
    assert "table_worker.sh" in (REPO / "scripts" / "table.sh").read_text()
    assert [e.kind for e in tx.EXTRAS] == ["probe"] + ["lever"] * (len(tx.EXTRAS) - 1)  # the probe first


def test_the_report_pairs_records_with_the_tables_seed0_and_rejects_other_code_or_settings(tmp_path):
    # real all-layer records stand in for finished runs: seed 1 of span text as the MPNet probe, seed 1 of MASC
    # lrsa as a lever (relabelled with the extra's settings)
    def stand_in(key: str, extra: tx.Extra) -> dict:
        rec = json.loads((REPO / "results" / "twitter2015" / "runs" / f"{key}.json").read_text())["result"]
        for dotted, v in extra.overrides().items():
            section, k = dotted.split(".", 1)
            rec["config"][section][k] = v
        return rec

    runs = tmp_path / "runs"
    probe, lever = tx.BY_NAME["mpnet"], tx.BY_NAME["masc-gate-zero"]
    for extra, key in ((probe, "span/text/seed1"), (lever, "masc/aspect/lrsa-arkmsa-aspect/seed1")):
        d = tx.run_dir(runs, extra, "twitter2015")
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(stand_in(key, extra)))
    assert tx.sync_records(runs, tmp_path / "records") == ["mpnet/twitter2015", "masc-gate-zero/twitter2015"]
    summary = tx.build(tmp_path / "records")
    p15 = summary["extras"]["mpnet"]["datasets"]["twitter2015"]
    seed0 = json.loads((REPO / "results/twitter2015/runs/span/text/seed0.json").read_text())["result"]
    seed1 = json.loads((REPO / "results/twitter2015/runs/span/text/seed1.json").read_text())["result"]
    assert p15["status"] == "done" and p15["table_test_seeds"] >= 3
    assert p15["minus_table_seed0"]["test"] == pytest.approx(
        seed1["test"]["jmasa"]["f1"] - seed0["test"]["jmasa"]["f1"], abs=0.011)
    l15 = summary["extras"]["masc-gate-zero"]["datasets"]["twitter2015"]
    text0 = json.loads((REPO / "results/twitter2015/runs/masc/aspect/text/seed0.json").read_text())["result"]
    assert l15["dev_minus_text_seed0"] == pytest.approx(l15["run"]["dev"] - text0["dev"]["masc"]["acc"], abs=0.011)
    assert summary["extras"]["masc-gate-zero"]["candidate"] is None  # not run on Twitter-2017: no verdict
    assert summary["extras"]["mpnet"]["datasets"]["twitter2017"]["status"].startswith("not run yet")
    md = tx.render(summary)
    assert "| twitter2015 |" in md and "not run yet" in md and "without an interval" in md
    bad = json.loads((tmp_path / "records/masc-gate-zero/twitter2015.json").read_text())
    bad["config"]["model"]["fusion_gate"] = "content"  # a record without the lever's setting is refused
    (tmp_path / "records/masc-gate-zero/twitter2015.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="fusion_gate"):
        tx.build(tmp_path / "records")
    bad["config"]["model"]["fusion_gate"], bad["commit"] = "zero", "0" * 40  # so is a run of other code
    (tmp_path / "records/masc-gate-zero/twitter2015.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="snapshot"):
        tx.build(tmp_path / "records")


def test_table_sh_starts_no_worker_on_an_argument_it_does_not_know(tmp_path):
    # `bash scripts/table.sh --help` once started two more workers; now only "" and --report act
    out = subprocess.run(["bash", str(REPO / "scripts" / "table.sh"), "--bogus"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2 and "unknown argument '--bogus'" in out.stderr
    usage = subprocess.run(["bash", str(REPO / "scripts" / "table.sh"), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--report" in usage.stdout and "table:" not in usage.stdout
