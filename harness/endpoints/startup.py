"""What a starting vLLM server is doing, read from its log as it grows.

A first start takes minutes on a CPU (imports in three processes, weights, torch inductor
compile, KV cache); a silent wait looks hung. `StartupWatcher.poll()` reads the new part of the
log and returns the current phase; the phases and the seconds at which each began end up on the
server object (`VLLMServer.phases`), and `on_progress(phase, elapsed_s)` shows them live.

    w = StartupWatcher(log_path)
    w.poll()          # -> "loading weights"   ("starting vLLM (imports)" until the engine starts)
    w.served_dtype    # "float32" once the engine logged its config
    w.fatal           # a line saying the engine died while the API process lives on

The patterns are vLLM 0.32's log lines (CPU and GPU builds); an unknown line changes nothing,
so a newer vLLM degrades to fewer phases, never to an error.

`last_log_line(path)` is the most telling line of a log that ended badly (the error a failed start
reports in one line).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Phases in the order they happen. "converting the model" (first use of the embedded model) and
# "ready" are set by the launcher, not read from the log.
CONVERTING = "converting the model (first use)"
STARTING = "starting vLLM (imports)"
ENGINE = "starting the engine"
LOADING = "loading weights"
COMPILING = "compiling / warming up"
KV_CACHE = "allocating the KV cache"
API = "starting the API server"
HEALTH = "waiting for /health"
READY = "ready"

PHASE_ORDER = (CONVERTING, STARTING, ENGINE, LOADING, COMPILING, KV_CACHE, API, HEALTH, READY)

# (pattern, phase): the first matching pattern of a line wins.
_PHASE_LINES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), phase)
    for p, phase in (
        (r"Initializing a V1 LLM engine", ENGINE),
        (r"Starting to load model", LOADING),
        (r"Loading safetensors checkpoint shards", LOADING),
        (r"Loading weights took", LOADING),
        (r"Warming up model for the compilation", COMPILING),
        (r"torch\.compile takes|Compiling a graph|Dynamo bytecode transform", COMPILING),
        (r"GiB for KV cache|KV cache size:|Memory profiling takes", KV_CACHE),
        (r"init engine \(profile, create kv cache, warmup model\) took", API),
        (r"Starting vLLM (API )?server on", HEALTH),
    )
)
# The engine or its worker died, while the API server may keep the port closed and never exit.
_FATAL = re.compile(r"(Worker proc \S+ died unexpectedly.*|EngineCore encountered a fatal error.*|EngineDeadError.*)")
# harness/endpoints/vllm_plugin.py in each vLLM process that loaded it: "(Worker pid=12) INFO ... harness: ..."
_PLUGIN = re.compile(r"^\((\w+)[^)]*\).*harness: shared-memory queue readers busy-loop")
_DTYPE = re.compile(r"Initializing a V1 LLM engine.*?\bdtype=(?:torch\.)?(\w+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def phase_of(line: str) -> str | None:
    """The phase a log line announces, or None."""
    for pattern, phase in _PHASE_LINES:
        if pattern.search(line):
            return phase
    return None


def fatal_of(line: str) -> str | None:
    """The message of a line saying the engine died, or None."""
    m = _FATAL.search(_ANSI.sub("", line))
    if not m:
        return None
    msg = m.group(1).strip()
    if "exit code: -9" in msg:
        msg += " (killed: out of memory?)"
    return msg


def dtype_of(line: str) -> str | None:
    """'float32' from the engine's config line ('... dtype=torch.float32, ...')."""
    m = _DTYPE.search(line)
    return m.group(1) if m else None


class StartupWatcher:
    """Follows a growing log file; remembers the latest phase, the served dtype and any fatal line."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.phase: str = STARTING
        self.history: list[str] = [STARTING]  # every phase passed through, in order
        self.served_dtype: str | None = None
        self.fatal: str | None = None
        self.plugin_processes: set[str] = set()  # "EngineCore", "Worker": where the harness's vLLM plugin ran
        self._offset = 0
        self._partial = ""

    def poll(self) -> str:
        """Read what was appended since the last call; return the current phase."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return self.phase
        self._offset += len(chunk)
        text = self._partial + chunk.decode("utf-8", "replace")
        # progress bars rewrite one line with \r: treat it as a line end
        lines = re.split(r"\r\n|\r|\n", text)
        self._partial = lines.pop()  # an unfinished last line waits for the rest
        for line in lines:
            self.feed(line)
        return self.phase

    def feed(self, line: str) -> None:
        if line.startswith("# harness"):  # the launcher's own header lines
            return
        phase = phase_of(line)
        if phase is not None and _later(phase, self.phase):
            if phase != self.phase:
                self.history.append(phase)
            self.phase = phase
        if self.served_dtype is None:
            self.served_dtype = dtype_of(line)
        if self.fatal is None:
            self.fatal = fatal_of(line)
        m = _PLUGIN.search(line)
        if m:
            self.plugin_processes.add(m.group(1))


def _later(new: str, old: str) -> bool:
    """Phases only move forward (a late line of an earlier phase changes nothing)."""
    return PHASE_ORDER.index(new) >= PHASE_ORDER.index(old)


# -- the line a failed start reports ------------------------------------------------------------
# "(APIServer pid=123) ERROR 11-22 03:17:31 [file.py:12] msg" -> "msg"
_LOG_PREFIX = re.compile(
    r"^(?:\([^)]*\)\s*)?(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+\[[^\]]*\]\s*)?"
)
_NOISE = re.compile(
    r"^(Traceback \(most recent call last\)|File \"|\^+$|~+|During handling|The above exception|"
    r"raise |return |self\.|\w+ = |\s*\|)"
)
_ERRORISH = re.compile(r"(Error|Exception|error:|Errno|failed|Failed|No such file|not found|Killed)")


def last_log_line(path: Path | str, max_bytes: int = 65536) -> str:
    """The most telling line near the end of a vLLM log: the last error-looking line, else the
    last non-empty one; prefixes, ANSI colours and traceback frames stripped."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = []
    for raw in text.splitlines():
        line = _LOG_PREFIX.sub("", _ANSI.sub("", raw)).strip()
        if line and not _NOISE.match(line):
            lines.append(line)
    if not lines:
        return ""
    generic = re.compile(r"(See root cause above|Engine core initialization failed|EngineCore failed to start)")
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if _ERRORISH.search(line) and not generic.search(line):
            # pydantic puts the message on the line after "1 validation error for ModelConfig"
            if re.search(r"validation errors? for \w+$", line):
                detail = next((ln for ln in lines[i + 1 : i + 4] if ln.startswith("Value error")), None)
                if detail:
                    line = f"{line}: {detail.removeprefix('Value error, ')}"
            return line[:400]
    return lines[-1][:400]
