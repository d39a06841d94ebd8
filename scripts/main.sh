#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the offline default:
#  1. data stats and integrity checks of every named dataset;
#  2. the span host `text` and `lrsa` (MiniGPT-4 image descriptions as L_i) trained on the full Twitter-2015
#     train split, one seed, a short schedule (`lrsa reproduce --profile main`), scored on test
#     with the majority class, published figures and a note on seed noise beside them;
#  3. the trained lrsa model on three example posts (text only, a real photo, a photo with a description).
# The model lands at runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0 (the README's examples use it).
# Resumable: finished runs are kept, an interrupted one resumes from its last epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stage() { echo "== main: $1 after $(( $(date +%s) - start )) s"; }
bash scripts/setup.sh
stage "set up"
if [ -z "${LRSA_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export LRSA_DATA_DIR=../shared/data
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -z "${LRSA_DATA_DIR:-}" ]; then
  for name in $(.venv/bin/lrsa data list | cut -d' ' -f1); do .venv/bin/lrsa data fetch "$name"; done
fi
.venv/bin/lrsa data stats
.venv/bin/lrsa data check
stage "data checked"
# The lrsa row's frozen side states (the caption, L_t and L_i texts of train, dev and test) are computed once,
# on every core (runs/reproduce/cache); then the two rows train side by side, each on half of the cores: a
# second thread makes an epoch of these small models barely faster (AMD EPYC: lrsa 60 s on 2 threads, 65 s on
# 1), a second run beside it nearly doubles the work done.
.venv/bin/lrsa reproduce --profile main --variants lrsa --encode-only --threads "$(nproc)" 2>&1 \
  | sed -u 's/^/[lrsa side states] /'
stage "lrsa side states encoded"
half=$(( ($(nproc) + 1) / 2 ))
.venv/bin/lrsa reproduce --profile main --variants text --threads "$half" 2>&1 \
  | grep --line-buffered -E '^(\[|  )' | sed -u 's/^/[text row] /' &
text=$!
.venv/bin/lrsa reproduce --profile main --variants lrsa --threads "$half" 2>&1 \
  | grep --line-buffered -E '^(\[|  )' | sed -u 's/^/[lrsa row] /'
wait "$text"
for row in text lrsa-arkmsa; do
  [ -f "runs/reproduce/main/twitter2015/span/$row/seed0/result.json" ] \
    || { echo "main: the $row row did not finish (its log is above)" >&2; exit 1; }
done
stage "text and lrsa rows trained"
.venv/bin/lrsa reproduce --profile main --max-runs 0  # the report of both rows (nothing left to train)
model=runs/reproduce/main/twitter2015/span/lrsa-arkmsa/seed0
images="${LRSA_DATA_DIR:-$HOME/.cache/lrsa/data}/twitter2015/images"   # real Twitter-2015 test photos
# The three examples run side by side (each loads the model once); their outputs are printed in order.
ex=$(mktemp -d)
trap 'rm -rf "$ex"' EXIT
.venv/bin/lrsa predict --checkpoint "$model" --text "Loving the new Star Wars trailer , J.J. Abrams nailed it !" \
  >"$ex/1" 2>&1 &
p1=$!
.venv/bin/lrsa predict --checkpoint "$model" --image "$images/1295130.jpg" \
  --text "Congrats @ TylerKehoe1 , # SnowJam champ in MOD ! A class act , he split his win w buds Aaron Rudderham amp Travis Sabin" \
  >"$ex/2" 2>&1 &
p2=$!
.venv/bin/lrsa predict --checkpoint "$model" --image "$images/2058555.jpg" \
  --image-text "kids playing street hockey on a snowy backyard rink, shown on a TV sports broadcast" \
  --text "Happy New Year ! Watching San Jose - Anaheim replay . . . believe it or not , this was the scene in Riverside County today" \
  >"$ex/3" 2>&1 &
p3=$!
titles=("" "a text-only post" "a real photo, no description" "a real photo with a description of it")
pids=("" "$p1" "$p2" "$p3")
status=0
for i in 1 2 3; do
  wait "${pids[$i]}" || status=1
  echo "== $i. ${titles[$i]}"
  cat "$ex/$i"
done
[ "$status" = 0 ] || { echo "main: an example failed (its output is above)" >&2; exit 1; }
stage "done"
