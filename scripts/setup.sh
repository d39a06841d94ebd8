#!/usr/bin/env bash
# Create .venv/ and install lrsa with pinned dependencies: what the main job needs (`bash scripts/setup.sh`),
# or with the test tools too (`bash scripts/setup.sh --dev`: pytest, Playwright, scikit-image, dask; what
# scripts/test.sh calls). Idempotent: a second run on a set-up machine only compares a stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=offline
[ "${1:-}" = "--dev" ] && extras=offline,dev
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
stamp=.venv/.setup-stamp
have=$(cat "$stamp" 2>/dev/null || true)
if [ -x .venv/bin/lrsa ] && { [ "$have" = "$want $extras" ] || [ "$have" = "$want offline,dev" ]; }; then
  echo "setup: .venv is up to date ($extras)"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first: 2.13.0 is a local CPU wheel on our machines; any other request pulls a CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e ".[$extras]"
# Only what the main job needs. Weights that other commands use come with their own scripts, which those
# commands' errors name: scripts/setup_llama.sh (the local LLM writer's llama.cpp runtime, for this CPU, and its
# GGUF models: Qwen2.5-Coder-0.5B, SmolLM2-135M) and scripts/setup_mpnet.sh (the MPNet backbone);
# scripts/test.sh calls both.
echo "$want $extras" > "$stamp"
echo "setup: done ($extras)"
