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
# uv (pinned, from the registry) installs the rest: it downloads and unpacks in parallel and compiles the
# bytecode on every core (with PYTHONDONTWRITEBYTECODE set, as on our machines, nothing would write it later
# and every command would recompile its imports). It reads no pip configuration: pip's find-links (where our
# machines keep their local torch wheel) are passed on; the index is PyPI unless UV_INDEX_URL says otherwise.
.venv/bin/pip install -q uv==0.13.9
if [ -n "${PIP_FIND_LINKS:-}" ]; then export UV_FIND_LINKS=${UV_FIND_LINKS:-$PIP_FIND_LINKS}; fi
uv() { .venv/bin/uv pip install --quiet --python .venv/bin/python --compile-bytecode "$@"; }
# torch is pinned (constraints.txt): 2.13.0 is a local CPU wheel on our machines; any other request pulls a CUDA build.
uv -c constraints.txt torch==2.13.0 -e ".[$extras]"
# Only what the main job needs. Weights that other commands use come with their own scripts, which those
# commands' errors name: scripts/setup_llama.sh (the local LLM writer's llama.cpp runtime, for this CPU, and its
# GGUF models: Qwen2.5-Coder-0.5B, SmolLM2-135M) and scripts/setup_mpnet.sh (the MPNet backbone);
# scripts/test.sh calls both.
echo "$want $extras" > "$stamp"
echo "setup: done ($extras)"
