"""What a server the harness started says about itself, for whoever later asks at its URL.

    <cache>/served/<port>.json   {"pid", "created", "port", "model", "model_path", "tokenizer", "flavour", "device"}

A `harness serve` prints `harness compare --endpoint http://127.0.0.1:PORT/v1 ...`; that compare
talks HTTP to a vLLM server, which does not say what it runs on. The harness that started the
server does: it writes this record once the server is healthy and removes it when the server stops,
so the compare prices the server as the machine it is (a CPU run at the CPU's hourly price, never
a GPU's) and counts tokens with the served model's own tokenizer instead of a /tokenize request
per prompt. A record is believed only for a loopback URL, the same served model name, and a live
process that is the one that wrote it (pid and start time: a pid reused after kill -9 is not).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import psutil
from pydantic import BaseModel, ValidationError

from harness.endpoints.embedded import cache_dir


class Served(BaseModel):
    """One running server the harness started."""

    pid: int
    created: float  # the process's start time (psutil), which a reused pid does not share
    port: int
    model: str  # the served model name
    model_path: str  # the weights' folder (or hub id) vLLM loaded
    tokenizer: str | None = None  # a local folder with the served tokenizer (tokenizer.json), if known
    flavour: Literal["cpu", "gpu"]
    device: str = ""  # e.g. "CPU avx2, cores 0-1" or "GPU"

    def hardware(self) -> dict[str, str]:
        """What config.yaml records (endpoint.served_by) and pricing reads."""
        return {"flavour": self.flavour, "device": self.device, "source": f"harness-started server (pid {self.pid})"}


def _folder() -> Path:
    return cache_dir() / "served"


def _path(port: int) -> Path:
    return _folder() / f"{int(port)}.json"


def write(record: Served) -> None:
    """Advertise a healthy server (atomic: a reader never sees half a record)."""
    with contextlib.suppress(OSError):  # telling is a courtesy: a read-only cache must not stop a server
        _folder().mkdir(parents=True, exist_ok=True)
        tmp = _path(record.port).with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(record.model_dump_json())
        os.replace(tmp, _path(record.port))


def remove(port: int, pid: int) -> None:
    """Withdraw the record of the server `pid` on `port` (another's record on a reused port stays)."""
    p = _path(port)
    with contextlib.suppress(OSError, ValidationError, ValueError):
        if Served.model_validate_json(p.read_text()).pid == pid:
            p.unlink()


def process_created(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def lookup(base_url: str, model: str) -> Served | None:
    """The record of the live harness-started server behind `base_url` serving `model`, else None."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if not (host == "localhost" or host.startswith("127.")) or parts.port is None:
        return None
    p = _path(parts.port)
    try:
        record = Served.model_validate_json(p.read_text())
    except (OSError, ValidationError, ValueError):
        return None
    created = process_created(record.pid)
    if created is None or abs(created - record.created) > 1.0:  # gone (kill -9): a stale record
        with contextlib.suppress(OSError):
            p.unlink()
        return None
    return record if record.model == model else None
