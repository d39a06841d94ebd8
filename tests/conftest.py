"""Shared test setup: the benchmark data directory.

Tests that read the benchmark files use the ``data_dir`` fixture. Without ``$LRSA_DATA_DIR`` they are
skipped locally; with ``LRSA_REQUIRE_DATA=1`` (set by scripts/test.sh and CI) they fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    env = os.environ.get("LRSA_DATA_DIR")
    path = Path(env) if env else None
    if path is None or not (path / "twitter2015" / "jmasa" / "train.json").exists():
        msg = f"benchmark data not found (LRSA_DATA_DIR={env!r})"
        if os.environ.get("LRSA_REQUIRE_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path.resolve()
