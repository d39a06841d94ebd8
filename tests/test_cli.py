"""Every `lrsa` command answers --help (through `python -m lrsa`, as users call it)."""

from __future__ import annotations

import subprocess
import sys

import typer.main

from lrsa.cli import app


def _paths(cmd, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, sub in getattr(cmd, "commands", {}).items():
        out += _paths(sub, prefix + (name,))
    return out


def test_every_command_has_help() -> None:
    paths = _paths(typer.main.get_command(app))
    names = {" ".join(p) for p in paths}
    assert {"data stats", "data check", "data fetch", "score"} <= names
    for path in paths:
        out = subprocess.run([sys.executable, "-m", "lrsa", *path, "--help"], capture_output=True, text=True)
        assert out.returncode == 0, (path, out.stderr)
        assert "Usage:" in out.stdout, path
