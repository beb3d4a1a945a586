"""A run folder: its configuration, the samples it asked about, and one record per query.

`records.jsonl` is append-only; each record is one complete line, written (alone or with a
batch of others) with a single `write` and fsynced, so a kill at any moment leaves at most a torn *last* line, which
loading skips and a resumed run redoes. Everything a summary or report needs is in the
folder, so reports regenerate and interrupted runs resume from it alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError
from harness.record import Record
from harness.samples import Document, Sample


class RunStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records_path = self.path / "records.jsonl"
        self._lock = threading.Lock()

    def create(self) -> RunStore:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # -- configuration ------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        _atomic_write(self.path / "config.yaml", text)

    def read_config(self) -> dict[str, Any] | None:
        p = self.path / "config.yaml"
        return yaml.safe_load(p.read_text()) if p.exists() else None

    # -- samples ----------------------------------------------------------------------------
    def write_samples(self, samples: Iterable[Sample]) -> None:
        """Each unique document once (corpus.jsonl) and each sample by document ids (samples.jsonl)."""
        corpus: dict[str, str] = {}
        lines = []
        for s in samples:
            for d in s.documents:
                corpus.setdefault(d.id, d.text)
            row = s.model_dump(exclude={"documents"})
            row["doc_ids"] = [d.id for d in s.documents]
            lines.append(json.dumps(row, ensure_ascii=False))
        _atomic_write(
            self.path / "corpus.jsonl",
            "".join(json.dumps({"id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in corpus.items()),
        )
        _atomic_write(self.path / "samples.jsonl", "\n".join(lines) + "\n")

    def read_samples(self) -> list[Sample]:
        corpus = {row["id"]: row["text"] for row in _read_jsonl(self.path / "corpus.jsonl")}
        out = []
        for row in _read_jsonl(self.path / "samples.jsonl"):
            ids = row.pop("doc_ids")
            out.append(Sample(documents=[Document(id=i, text=corpus[i]) for i in ids], **row))
        return out

    # -- records ------------------------------------------------------------------------------
    def append(self, record: Record | dict[str, Any]) -> None:
        self.append_many([record])

    def append_many(self, records: Iterable[Record | dict[str, Any]]) -> None:
        """Append complete lines with one `write` and one `fsync` (a batch is one group commit)."""
        data = b"".join(_line(r) for r in records)
        if not data:
            return
        with self._lock:
            fd = os.open(self.records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _repair_tail(fd, self.records_path)
                view = memoryview(data)
                while view:  # a regular file takes it in one go; a short write is finished, never torn
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def lock(self):
        """Hold the run folder for one process: a second harness writing it would duplicate queries.

        An fcntl lock, released by the kernel when the holder dies (kill -9 included)."""
        self.create()
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"{self.path} is in use by another harness process") from None
            yield self
        finally:
            os.close(fd)

    def rows(self) -> list[dict[str, Any]]:
        """Every complete line of records.jsonl as written; a torn last line (from a kill mid-write) is skipped."""
        return list(_read_jsonl(self.records_path))

    def records(self) -> list[Record]:
        """All complete records, typed (lines written before records had calls load as one call)."""
        out = []
        for row in self.rows():
            try:
                out.append(Record.model_validate(row))
            except ValueError:  # not a record (hand-edited, or a foreign line): redone on resume
                continue
        return out

    def latest_records(self) -> list[Record]:
        """The last record of each (strategy, sample): a resumed retry supersedes a failed attempt."""
        latest: dict[tuple[str, str], Record] = {}
        for r in self.records():
            latest[r.key] = r
        return list(latest.values())

    def done_keys(self) -> set[tuple[str, str]]:
        """(strategy label, sample id) of every query answered; failed requests are asked again."""
        return {r.key for r in self.latest_records() if not r.error}


def _repair_tail(fd: int, path: Path) -> None:
    """If the file ends without a newline (a torn write), start the next record on a fresh line."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    with open(path, "rb") as f:
        f.seek(size - 1)
        if f.read(1) != b"\n":
            os.write(fd, b"\n")


def _line(record: Record | dict[str, Any]) -> bytes:
    if isinstance(record, Record):
        record = record.to_json()
    text = json.dumps(record, ensure_ascii=False, default=str)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. a model's "\\ud800"): escape, still exact
        return (json.dumps(record, ensure_ascii=True, default=str) + "\n").encode("ascii")


def _read_jsonl(path: Path):
    if not path.exists():
        return
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError:  # JSON or UTF-8 error: a torn line left by a kill; redone on resume
                continue
            if isinstance(row, dict):
                yield row


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
