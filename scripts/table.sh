#!/usr/bin/env bash
# Train the all-layer table (`lrsa reproduce --profile full`) from its one code snapshot, one worker per core.
#
#   bash scripts/table.sh            # start (or resume) the workers in the background; logs in runs/table-logs/
#   bash scripts/table.sh --report   # rebuild the reports, results/summary.md and the README table (no training);
#                                    # archive the runs' test predictions beside their records
#                                    # (benchmarks/rationale_breakdown.py, which then rebuilds its breakdown)
#
# Every run of the table must come from the snapshot commit that the profile names (`snapshot` of
# PROFILES["full"] in src/lrsa/training/tables/plan.py; docs/training.md), never from the code of main: the
# workers run in a detached git worktree of that commit (../lrsa-table-<commit>), importing its src/ ahead
# of the checkout's, and write their records into this checkout's results/ (a record of another commit
# enters no row). Resumable: a finished run (a record in results/) is never retrained, an interrupted one
# resumes from its last epoch where its run directory survives. Commit results/ as records land. Each worker
# (scripts/table_worker.sh) trains the required rows, then the backbone probe and the levers
# (benchmarks/table_extras.py), then the optional rows.
set -euo pipefail
case "${1:-}" in
  "" | --report) ;;
  -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "table: unknown argument '$1' (expected nothing or --report; --help)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
repo=$PWD
[ -x .venv/bin/lrsa ] || bash scripts/setup.sh
bash scripts/setup_mpnet.sh >/dev/null  # the backbone probe (benchmarks/table_extras.py)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [ -z "${LRSA_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export LRSA_DATA_DIR=$repo/../shared/data
fi
snapshot=$(.venv/bin/python -c "from lrsa.training.reproduce import PROFILES; print(PROFILES['full'].snapshot or '')")
if [ -z "$snapshot" ]; then
  echo "table: PROFILES['full'].snapshot is not set: commit the code, then name that commit as the snapshot" >&2
  exit 1
fi
if [ "${1:-}" = "--report" ]; then  # reports are built by main's code from the records alone
  .venv/bin/lrsa reproduce --profile full --max-runs 0
  .venv/bin/python benchmarks/table_extras.py report >/dev/null  # results/table_extras/
  # archive the finished runs' test predictions beside their records (the run directories stay on this
  # machine), then rebuild the per-aspect breakdown of lrsa - text from the archives
  exec .venv/bin/python benchmarks/rationale_breakdown.py --runs "${LRSA_TABLE_WORKTREE:-$repo/../lrsa-table-${snapshot:0:12}}/runs/reproduce/full"
fi
wt=${LRSA_TABLE_WORKTREE:-$repo/../lrsa-table-${snapshot:0:12}}
[ -d "$wt" ] || git worktree add --detach "$wt" "$snapshot" >/dev/null
if [ "$(git -C "$wt" rev-parse HEAD)" != "$snapshot" ] || [ -n "$(git -C "$wt" status --porcelain --untracked-files=no)" ]; then
  echo "table: $wt is not a clean checkout of $snapshot" >&2
  exit 1
fi
mkdir -p runs/table-logs
workers=${LRSA_TABLE_WORKERS:-$(nproc)}
for i in $(seq 1 "$workers"); do
  log=$repo/runs/table-logs/worker$i.log
  (cd "$wt" && PYTHONPATH="$wt/src" nohup bash "$repo/scripts/table_worker.sh" "$repo" >>"$log" 2>&1 &)
  sleep 2  # the workers claim runs one after the other (file locks)
  echo "table: worker $i started from $snapshot in $wt (log $log)"
done
