"""A small persistent key/value cache on SQLite, shared by LLM calls and embeddings.

SQLite in WAL mode lets several processes (workers) share one cache directory; a
crash mid-run loses at most the entry being written. Keys are SHA-256 hashes of the
whole request, so a cache directory can be moved between machines.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError, stop_deferred


def default_cache_dir() -> Path:
    """``$PROMPTOPT_CACHE_DIR``, else ``~/.cache/promptopt``."""
    env = os.environ.get("PROMPTOPT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "promptopt"


def request_key(request: dict[str, Any]) -> str:
    """Hash a request (a JSON-able dict) into a cache key."""
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class DiskCache:
    """A thread-safe SQLite key/value store with one table per namespace.

    Args:
        directory: Folder of the cache file (created if missing).
        namespace: Table name, e.g. ``"llm"`` or ``"embeddings"``.
    """

    def __init__(self, directory: str | Path | None = None, namespace: str = "llm") -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        if not namespace.isidentifier():
            raise ValueError(f"invalid cache namespace {namespace!r}")
        self.namespace = namespace
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self.directory / "cache.sqlite"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.namespace} "
                    "(key TEXT PRIMARY KEY, value BLOB NOT NULL)"
                )
                conn.commit()
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(
                    f"cannot open the cache at {self.path}: {exc}; set PROMPTOPT_CACHE_DIR "
                    "to a writable folder or pass --no-cache"
                ) from None
            self._conn = conn
        return self._conn

    def get(self, key: str) -> bytes | None:
        """The stored value, or None."""
        with self._lock:
            row = (
                self._connect()
                .execute(f"SELECT value FROM {self.namespace} WHERE key = ?", (key,))
                .fetchone()
            )
        return None if row is None else bytes(row[0])

    def get_json(self, key: str) -> Any:
        """The stored value decoded from JSON, or None."""
        raw = self.get(key)
        return None if raw is None else json.loads(raw)

    def set(self, key: str, value: bytes) -> None:
        """Store a value (committed immediately, so a crash keeps it; a stop signal
        waits for the commit)."""
        with stop_deferred(), self._lock:
            conn = self._connect()
            conn.execute(
                f"INSERT OR REPLACE INTO {self.namespace} (key, value) VALUES (?, ?)", (key, value)
            )
            conn.commit()

    def set_json(self, key: str, value: Any) -> None:
        """Store a JSON-able value."""
        self.set(key, json.dumps(value, ensure_ascii=False).encode("utf-8"))

    def __len__(self) -> int:
        with self._lock:
            return int(
                self._connect().execute(f"SELECT COUNT(*) FROM {self.namespace}").fetchone()[0]
            )

    def close(self) -> None:
        """Close the connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
