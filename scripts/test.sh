#!/usr/bin/env bash
# Set up (idempotent; with the local LLM writer's llama.cpp runtime and models, and MPNet, which the tests use) and run the whole
# test suite on the real benchmark data.
# Fails when any test fails or is skipped (a skipped data test means the data was not found).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
bash scripts/setup_llama.sh
bash scripts/setup_mpnet.sh
export LRSA_DATA_DIR=${LRSA_DATA_DIR:-../shared/data}
export LRSA_REQUIRE_DATA=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Debian's Chromium drives the web page test (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1; then
  echo "test: installing Debian's chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || { echo "test: could not install chromium" >&2; exit 1; }
fi
report=$(mktemp --suffix=.xml)
status=0
.venv/bin/python -m pytest -q --durations=25 --junitxml="$report" "$@" || status=$?
.venv/bin/python - "$report" <<'PY' || status=1
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
tests = sum(int(s.get("tests", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
if tests == 0:
    sys.exit("test: no test ran")
if skipped:
    sys.exit(f"test: {skipped} test(s) were skipped; every test must run (is LRSA_DATA_DIR right?)")
PY
rm -f "$report"
exit $status
