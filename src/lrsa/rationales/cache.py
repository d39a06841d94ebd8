"""The durable rationale cache: SQLite in WAL mode, one row per generated rationale part.

Key = sha256 of (backend, model, prompt hash, decoding settings, input hash, kind). Every ``put`` is its own
committed transaction, so a run killed at any moment (kill -9) loses at most the requests still in flight;
a rerun finds everything finished before. Several processes may share one cache file: SQLite's locking
serialises writers (``busy_timeout``), and ``INSERT OR IGNORE`` makes a duplicate result a no-op.
Raw outputs are stored; cleaning and length caps are applied when reading, so they can change freely.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1


def cache_key(backend: str, model: str, prompt_hash: str, settings: dict[str, Any], input_hash: str,
              kind: str) -> str:
    blob = json.dumps({"backend": backend, "model": model, "prompt_hash": prompt_hash, "settings": settings,
                       "input_hash": input_hash, "kind": kind}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Entry:
    key: str
    output: str
    prompt_tokens: int
    completion_tokens: int
    backend: str
    model: str
    prompt_hash: str
    kind: str
    created: float


class RationaleCache:
    """Thread-safe within a process (one connection, a lock); process-safe through SQLite locking."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        # Switching a new file to WAL takes an exclusive lock and can fail with "database is locked" at once,
        # without waiting on the busy timeout, while another process does the same: retry until timeout_s.
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against process crashes
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rationales ("
            " key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL, prompt_hash TEXT NOT NULL,"
            " settings TEXT NOT NULL, input_hash TEXT NOT NULL, kind TEXT NOT NULL, output TEXT NOT NULL,"
            " prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,"
            " item_id TEXT, created REAL NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        if row and int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: cache schema {row[0]}, this version reads {SCHEMA_VERSION}; "
                               f"use a new --cache file")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "RationaleCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM rationales").fetchone()[0]

    def get_many(self, keys: list[str]) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i: i + 500]
                q = ("SELECT key, output, prompt_tokens, completion_tokens, backend, model, prompt_hash, kind,"
                     f" created FROM rationales WHERE key IN ({','.join('?' * len(chunk))})")
                for row in self._db.execute(q, chunk):
                    out[row[0]] = Entry(*row)
        return out

    def get(self, key: str) -> Entry | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, *, backend: str, model: str, prompt_hash: str, settings: dict[str, Any],
            input_hash: str, kind: str, output: str, prompt_tokens: int = 0, completion_tokens: int = 0,
            item_id: str | None = None) -> bool:
        """Store one result in its own transaction; returns False when the key was already there."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO rationales (key, backend, model, prompt_hash, settings, input_hash, kind,"
                " output, prompt_tokens, completion_tokens, item_id, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, backend, model, prompt_hash, json.dumps(settings, sort_keys=True), input_hash, kind,
                 output, int(prompt_tokens), int(completion_tokens), item_id, time.time()))
            return cur.rowcount == 1

    def entries(self) -> Iterator[tuple[str, str, str, str]]:
        """(key, item_id, kind, output) of every row, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT key, item_id, kind, output FROM rationales ORDER BY created").fetchall()
        yield from rows
