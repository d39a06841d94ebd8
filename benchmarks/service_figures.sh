#!/usr/bin/env bash
# The service figures (issue 28) in one command. Run it on a quiet machine: nothing else may use the cores,
# or the figures measure the other jobs.
#
#   bash benchmarks/service_figures.sh [CHECKPOINT]      # default: the main job's lrsa checkpoint
#
# 1. benchmarks/fast_path_check.py: test JMASA F1 of the served predictions on the full Twitter-2015 test
#    split for the reference path and each fast-path setting, and how many posts' predictions differ
#    (results/serving/fast_path_check.json); a few minutes.
# 2. benchmarks/serving_bench.py --levers --record: every lever setting of its LEVERS grid behind a real
#    `lrsa serve` under wrk (20 s warm-up, 40 s measured, concurrency 16), then the best one (most
#    requests/s with 0 errors, p95 <= 400 ms and a test F1 loss <= MAX_F1_LOSS) warmed up 30 s, measured
#    60 s and soaked SOAK_S seconds (default 600) while the server's resident memory is sampled
#    (results/serving/levers.json, results/serving/bench.json and the `service` section of
#    results/benchmarks/speed.json). About 30 minutes in all with the default soak.
#
# Environment: LRSA_DATA_DIR (default ../shared/data), SOAK_S (600), MAX_F1_LOSS (1.0), SKIP_CHECK=1 keeps
# an existing fast_path_check.json of the same checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

CKPT=${1:-runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0}
SOAK_S=${SOAK_S:-600}
MAX_F1_LOSS=${MAX_F1_LOSS:-1.0}
export LRSA_DATA_DIR=${LRSA_DATA_DIR:-../shared/data}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ ! -f "$CKPT/config.json" ] && [ ! -f "$CKPT/best/config.json" ]; then
  echo "no checkpoint at $CKPT (the main job writes it: lrsa reproduce --profile main)" >&2
  exit 1
fi
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk
  else
    echo "wrk is missing: sudo apt-get install wrk (Debian's wrk 4.1.0)" >&2
    exit 1
  fi
fi
echo "$(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)): the figures need a quiet machine"

if [ "${SKIP_CHECK:-0}" != 1 ]; then
  .venv/bin/python benchmarks/fast_path_check.py --checkpoint "$CKPT"
fi
.venv/bin/python benchmarks/serving_bench.py --checkpoint "$CKPT" --levers --lever-warmup 20 --lever-duration 40 \
  --warmup 30 --duration 60 --soak "$SOAK_S" --max-f1-loss "$MAX_F1_LOSS" --record
echo "$(date -u +%FT%TZ) done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
