#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the offline default:
#  1. data stats and integrity checks of every named dataset;
#  2. the span host `text` and `lrsa` (MiniGPT-4 image descriptions as L_i) trained on the full Twitter-2015
#     train split, one seed, 3 epochs, one worker per core (`lrsa reproduce --profile main`), scored on test
#     with the majority class, published figures and a note on seed noise beside them;
#  3. the trained lrsa model on three example posts (text only, a real photo, a photo with a description).
# The model lands at runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0 (the README's examples use it).
# Resumable: finished runs are kept, an interrupted one resumes from its last epoch.
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
mkdir -p runs
# one worker per core; each takes the next run not held by the other
.venv/bin/lrsa reproduce --profile main --threads 1 --max-runs 1 > runs/main-worker.log 2>&1 &
worker=$!
.venv/bin/lrsa reproduce --profile main --threads 1 --max-runs 1 > runs/main-worker2.log 2>&1 || { cat runs/main-worker2.log; exit 1; }
wait "$worker" || { cat runs/main-worker.log; exit 1; }
.venv/bin/lrsa reproduce --profile main --max-runs 0        # every run finished: print the table
model=runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0
photo="${LRSA_DATA_DIR:-$HOME/.cache/lrsa/data}/twitter2015/images/1087206.jpg"
echo "== 1. a text-only post"
.venv/bin/lrsa predict --checkpoint "$model" --text "Loving the new Star Wars trailer , J.J. Abrams nailed it !"
echo "== 2. a real Twitter-2015 test photo, no description (this model reads images as text: it says so)"
.venv/bin/lrsa predict --checkpoint "$model" --image "$photo" \
  --text "Had an awesome time at # SDCC and finally got to meet this gorgeous girl @ Milloux"
echo "== 3. the same photo with a description of it"
.venv/bin/lrsa predict --checkpoint "$model" --image "$photo" --image-text "a smiling woman with pink hair in a costume at a comic convention" \
  --text "Had an awesome time at # SDCC and finally got to meet this gorgeous girl @ Milloux"
