"""File helpers every stage shares: atomic writes and checksums."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def atomic_write_bytes(dest: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``dest`` so that readers see either the old file or the whole new one."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(dest: str | Path, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | Path, obj: Any) -> None:
    atomic_write_text(dest, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def default_cache_dir() -> Path:
    """The user cache of assembled model files: ``$LRSA_CACHE_DIR``, else the platform's user cache dir."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get("LRSA_CACHE_DIR") or user_cache_dir("lrsa"))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file (``.gz`` read as gzip).

    Raises ``DataError`` naming the file and line for bad JSON, a line that is not an object, or
    invalid UTF-8.
    """
    import gzip

    from lrsa.data.schema import DataError

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(str(path), f"line {n}", f"bad JSON: {err.msg}") from None
                if not isinstance(rec, dict):
                    raise DataError(str(path), f"line {n}", "line is not a JSON object")
                yield n, rec
    except UnicodeDecodeError:
        raise DataError(str(path), f"line {n + 1}", "invalid UTF-8") from None


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (``+dirty`` when its code, configs or pins have
    uncommitted changes; outputs such as results/ or the README table do not count), or None outside a git
    checkout."""
    import subprocess

    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=here).stdout.strip()
        code = [":(top)src", ":(top)configs", ":(top)pyproject.toml", ":(top)constraints.txt"]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *code],
                               capture_output=True, text=True, check=True, cwd=here).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")
