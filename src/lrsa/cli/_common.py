"""Small helpers shared by the CLI modules: data-dir option, clean one-line errors."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

import typer

DataDirOption = typer.Option(None, "--data-dir", help="Benchmark data directory "
                             "(default: $LRSA_DATA_DIR, else the user cache dir).")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures (bad data, missing files, unknown names) into one line and exit code 2."""
    from lrsa.data.schema import DataError
    from lrsa.rationales.llamacpp import EngineError

    try:
        yield
    except (DataError, FileNotFoundError, KeyError, ValueError, EngineError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2) from None


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
