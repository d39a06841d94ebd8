#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the offline default:
# data stats and integrity checks of every named dataset, then the quick LRSA reproduction.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${LRSA_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export LRSA_DATA_DIR=../shared/data
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -z "${LRSA_DATA_DIR:-}" ]; then
  for name in $(.venv/bin/lrsa data list | cut -d' ' -f1); do .venv/bin/lrsa data fetch "$name"; done
fi
.venv/bin/lrsa data stats
.venv/bin/lrsa data check
# The quick LRSA reproduction (both hosts, four variants, small subsets; ≤ 15 min on 2 cores).
# Resumable: finished runs under runs/reproduce are kept; the report lands in runs/reproduce/quick/.
.venv/bin/lrsa reproduce --profile quick
