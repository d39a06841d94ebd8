#!/usr/bin/env bash
# One worker of the all-layer table, started by scripts/table.sh inside the snapshot's worktree (its src/ first
# on PYTHONPATH), with this checkout as $1. In order:
#  1. the table's required rows (`lrsa reproduce --profile full` filtered to them: the `text` and `lrsa` rows
#     with the rationale sources none, arkmsa, arkmsa-aspect and gpt4 — exactly the plan's required runs);
#  2. the backbone probe (benchmarks/backbone_probe.py): MPNet as the span `text` host, seed 0, one run per
#     dataset, each claimed with a lock that the OS releases if its worker dies, and resumed like any run;
#  3. the optional rows (the rest of the plan).
# A phase that fails is logged and the next one starts; rerunning the worker skips what is finished.
set -uo pipefail
repo=$1
lrsa=$repo/.venv/bin/lrsa
table=(--profile full --threads 1 --results "$repo/results")
"$lrsa" reproduce "${table[@]}" --variants text --variants lrsa \
  --rationales none --rationales arkmsa --rationales arkmsa-aspect --rationales gpt4 \
  || echo "table worker: the required rows stopped with status $?"
for ds in twitter2015 twitter2017; do
  out=runs/probe/$ds/span/text-mpnet/seed0
  mkdir -p "$out"
  (
    flock -n 9 || { echo "probe $ds: being trained by another worker; skipped"; exit 0; }
    [ -f "$out/result.json" ] && exit 0
    echo "run probe $ds/span/text-mpnet/seed0 (benchmarks/backbone_probe.py)"
    "$repo/.venv/bin/python" "$repo/benchmarks/backbone_probe.py" config --dataset "$ds" \
      --out "runs/probe/$ds.config.json" \
      && "$lrsa" train --config "runs/probe/$ds.config.json" --out "$out" --cache-dir runs/reproduce/cache
  ) 9>"runs/probe/$ds.lock" || echo "table worker: the probe of $ds stopped with status $?"
done
"$lrsa" reproduce "${table[@]}" || echo "table worker: the optional rows stopped with status $?"
