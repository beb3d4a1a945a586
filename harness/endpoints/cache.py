"""A response cache: identical requests to the same model are answered from SQLite, not paid twice.

The key is a SHA-256 of the endpoint's model identity (`Endpoint.identity()`: model name, served
weights, host, API), the request path and the exact JSON body (prompt or messages, temperature,
max_tokens, response_format). Every request the harness sends is at temperature 0, so a stored
answer is the answer. Only complete responses are stored; failures never are. The API key is not
part of the key and is never stored.

One file (`<cache dir>/responses.sqlite`) is shared by runs and processes: WAL mode, a busy
timeout, one transaction per batch of writes. A kill at any moment loses at most the last
uncommitted batch, which is simply asked again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import UsageError

FILENAME = "responses.sqlite"
_SCHEMA_VERSION = 1


def request_key(identity: dict[str, Any], path: str, body: dict[str, Any]) -> str:
    blob = json.dumps([_SCHEMA_VERSION, identity, path, body], sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def entry(completion, prompt_tokens_counted: int | None) -> dict[str, Any]:
    """What is stored under a request's key: the complete answer and the prompt's counted tokens."""
    return {"completion": completion.model_dump(), "prompt_tokens_counted": prompt_tokens_counted}


def read_entry(hit: dict[str, Any] | None):
    """(Completion, prompt tokens counted) of a stored entry, or None when there is none or it is
    unreadable (an entry of another version: the request is asked again)."""
    from harness.endpoints.client import Completion

    if hit is None:
        return None
    try:
        return Completion(**hit["completion"]), hit.get("prompt_tokens_counted")
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


class ResponseCache:
    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / FILENAME
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
        except (sqlite3.Error, OSError) as e:
            raise UsageError(f"response cache {path} is unusable ({e}); remove it or run with --no-cache") from None
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = list(keys[i : i + 500])
                rows = self._db.execute(
                    f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(part))})", part
                ).fetchall()
                for k, v in rows:
                    try:
                        out[k] = json.loads(v)
                    except ValueError:
                        continue
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def put_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        rows = [(k, json.dumps(v, ensure_ascii=True), time.time()) for k, v in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.put_many([(key, value)])

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
