#!/usr/bin/env bash
# One worker of the all-layer table, started by scripts/table.sh inside the snapshot's worktree (its src/ first
# on PYTHONPATH), with this checkout as $1. In order:
#  1. the table's required rows (`lrsa reproduce --profile full` filtered to them: the `text` and `lrsa` rows
#     with the rationale sources none, arkmsa, arkmsa-aspect and gpt4 — exactly the plan's required runs);
#  2. the extra runs of benchmarks/table_extras.py, seed 0 per Twitter dataset: the MPNet backbone probe, then
#     the levers for lrsa - text (dev only), each claimed with a lock that the OS releases if its worker dies,
#     and resumed like any run;
#  3. the optional rows (the rest of the plan).
# A phase that fails is logged and the next one starts; rerunning the worker skips what is finished.
set -uo pipefail
repo=$1
lrsa=$repo/.venv/bin/lrsa
table=(--profile full --threads 1 --results "$repo/results")
"$lrsa" reproduce "${table[@]}" --variants text --variants lrsa \
  --rationales none --rationales arkmsa --rationales arkmsa-aspect --rationales gpt4 \
  || echo "table worker: the required rows stopped with status $?"
extras=$repo/benchmarks/table_extras.py
"$repo/.venv/bin/python" "$extras" list | while read -r name ds out; do
  mkdir -p "$out"
  (
    flock -n 9 || { echo "extra $name/$ds: being trained by another worker; skipped"; exit 0; }
    [ -f "$out/result.json" ] && exit 0
    echo "run extra $name/$ds in $out (benchmarks/table_extras.py)"
    "$repo/.venv/bin/python" "$extras" config --name "$name" --dataset "$ds" --out "$out.config.json" \
      && "$lrsa" train --config "$out.config.json" --out "$out" --cache-dir runs/reproduce/cache </dev/null
  ) 9>"$out.lock" || echo "table worker: extra $name/$ds stopped with status $?"
done
"$lrsa" reproduce "${table[@]}" || echo "table worker: the optional rows stopped with status $?"
