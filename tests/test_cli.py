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


def test_a_missing_data_directory_names_both_settings_and_the_directory_used(tmp_path) -> None:
    """Defect: `lrsa data stats NAME` offline only hinted at `lrsa data fetch`, which cannot work here."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "LRSA_DATA_DIR"} | {"LRSA_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "lrsa", "data", "stats", "twitter2015"], capture_output=True,
                         text=True, env=env)
    assert out.returncode != 0
    msg = " ".join(out.stderr.split())
    assert f"in the data directory {tmp_path} ($LRSA_DATA_DIR)" in msg
    assert "--data-dir" in msg and "lrsa data fetch twitter2015" in msg and "Traceback" not in out.stderr
