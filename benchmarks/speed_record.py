"""One section of results/benchmarks/speed.json, written in place (the other sections are kept)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lrsa.io import atomic_write_text

SPEED = Path(__file__).resolve().parent.parent / "results" / "benchmarks" / "speed.json"


def read(path: Path = SPEED) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def record(section: str, figures: dict[str, Any], path: Path = SPEED) -> None:
    data = read(path)
    data[section] = figures
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
