"""Serving settings chosen from the CPU the harness runs on (the CPU build of vLLM).

    plan = detect()                    # /proc/cpuinfo, the allowed cores, the environment
    plan.dtype, plan.env(), plan.args(), plan.describe()   # describe() goes into config.yaml

Why it matters: torch computes bfloat16 natively only with AVX512-BF16 or AMX. On every other
x86 CPU (AVX2, plain AVX-512) it converts to float32 and back around each operation, which made
the embedded model ~4x slower than serving it in float32 (a 2-core EPYC without AVX-512: 1k-token
prefill 31-59 s in bf16, 2.5 s in float32). The converted folder stays bf16 on disk; vLLM casts
at load ("Upcasting torch.bfloat16 to torch.float32").

ATEN_CPU_CAPABILITY (below avx512) or ONEDNN_MAX_CPU_ISA (below AVX512_CORE_BF16) in the
environment restrict torch/oneDNN to fewer instructions than the hardware has; the harness then
treats the CPU as one without native bf16, so a restricted run on an AVX-512 machine behaves like
an ordinary CPU (see bench/serving.py). vLLM's own kernels (attention) still pick their ISA from
the hardware, so that emulation is close, not exact.

Overrides: --dtype (ServerOptions.dtype) wins over the decided dtype; VLLM_CPU_OMP_THREADS_BIND,
HARNESS_VLLM_EAGER=0|1 and HARNESS_EMBEDDED_CONCURRENCY=N from the environment win over the rest.
Numbers behind each choice: docs/vllm-cpu-notes.md, section 8.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UsageError

CPUINFO = Path("/proc/cpuinfo")
# The flags that decide anything here (all of them are recorded, present or not).
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
# oneDNN ISA names below native bf16 compute (oneDNN's own order).
_ONEDNN_BELOW_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
_ATEN_BELOW_AVX512 = {"DEFAULT", "AVX", "AVX2"}

EAGER_ENV = "HARNESS_VLLM_EAGER"
CONCURRENCY_ENV = "HARNESS_EMBEDDED_CONCURRENCY"
BUSY_LOOP_ENV = "HARNESS_VLLM_SHM_BUSY_LOOP_S"  # read by harness/endpoints/vllm_plugin.py in vLLM's processes


@dataclass(frozen=True)
class CpuFacts:
    """What the machine and the environment say (parsed, no decisions)."""

    model: str
    flags: frozenset[str]
    cpus: tuple[int, ...]
    restrictions: dict[str, str] = field(default_factory=dict)  # env var -> value that restricts the ISA

    @property
    def native_bf16(self) -> bool:
        """bf16 computed by the hardware, and not switched off by the environment."""
        hardware = "avx512_bf16" in self.flags or "amx_bf16" in self.flags
        return hardware and not self.restrictions

    @property
    def kind(self) -> str:
        """The instruction set torch may use: amx, avx512_bf16, avx512, avx2 or baseline."""
        if self.restrictions:
            aten = self.restrictions.get("ATEN_CPU_CAPABILITY", "").upper()
            onednn = self.restrictions.get("ONEDNN_MAX_CPU_ISA", "").upper()
            if aten in ("DEFAULT", "AVX") or onednn in ("SSE41", "AVX"):
                return "baseline"
            if aten == "AVX2" or onednn.startswith("AVX2"):
                return "avx2" if "avx2" in self.flags else "baseline"
            return "avx512" if "avx512f" in self.flags else ("avx2" if "avx2" in self.flags else "baseline")
        if "amx_bf16" in self.flags and "amx_tile" in self.flags:
            return "amx"
        if "avx512_bf16" in self.flags:
            return "avx512_bf16"
        if "avx512f" in self.flags:
            return "avx512"
        return "avx2" if "avx2" in self.flags else "baseline"


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo text. Flags of x86 ('flags')
    or Arm ('Features'); empty when the text has neither."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model, flags


def isa_restrictions(env: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that keep torch/oneDNN below native bf16, with their values."""
    out: dict[str, str] = {}
    aten = env.get("ATEN_CPU_CAPABILITY", "").strip()
    if aten and aten.upper() in _ATEN_BELOW_AVX512:
        out["ATEN_CPU_CAPABILITY"] = aten
    onednn = env.get("ONEDNN_MAX_CPU_ISA", "").strip()
    if onednn and onednn.upper() in _ONEDNN_BELOW_BF16:
        out["ONEDNN_MAX_CPU_ISA"] = onednn
    return out


def allowed_cpus() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return tuple(range(os.cpu_count() or 1))


def cpu_list_str(cpus: Iterable[int]) -> str:
    """[0,1,2,5] -> '0-2,5'"""
    cpus = sorted(set(cpus))
    parts: list[str] = []
    start = prev = None
    for c in cpus:
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = c
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(parts)


def read_facts(
    env: Mapping[str, str] | None = None, cpuinfo: str | None = None, cpus: Iterable[int] | None = None
) -> CpuFacts:
    """Facts of this machine; cpuinfo text and cpus can be given (tests, other machines)."""
    env = os.environ if env is None else env
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = parse_cpuinfo(cpuinfo)
    return CpuFacts(model, flags, tuple(sorted(cpus)) if cpus is not None else allowed_cpus(), isa_restrictions(env))


@dataclass
class CpuPlan:
    """The decided settings and why; `describe()` is the `cpu` section of config.yaml."""

    facts: CpuFacts
    dtype: str | None  # what --dtype the server gets; None: the model's own (vLLM's auto)
    dtype_why: str
    bind: str  # VLLM_CPU_OMP_THREADS_BIND
    bind_why: str
    eager: bool
    eager_why: str
    omp_env: dict[str, str]
    omp_why: str
    busy_loop_s: float | None  # vLLM's shm-queue busy loop (None: vLLM's own 1 s)
    busy_loop_why: str
    concurrency: int
    concurrency_why: str

    @property
    def threads(self) -> int:
        return len(_parse_cpu_list(self.bind)) if self.bind not in ("auto", "nobind") else len(self.facts.cpus)

    def env(self) -> dict[str, str]:
        """Variables the server gets (the caller's own environment still wins: setdefault)."""
        env = {"VLLM_CPU_OMP_THREADS_BIND": self.bind, **self.omp_env}
        if self.busy_loop_s is not None:
            env[BUSY_LOOP_ENV] = f"{self.busy_loop_s:g}"
        return env

    def args(self, with_dtype: bool = True) -> list[str]:
        """Server flags: --dtype (left out when the user's --dtype is passed on its own) and
        --enforce-eager."""
        args = ["--dtype", self.dtype] if self.dtype and with_dtype else []
        return args + (["--enforce-eager"] if self.eager else [])

    def describe(self) -> dict:
        f = self.facts
        return {
            "model": f.model,
            "flags": {flag: flag in f.flags for flag in FLAGS},
            "isa_restricted_by": dict(f.restrictions) or None,
            "kind": f.kind,
            "native_bf16": f.native_bf16,
            "allowed_cpus": cpu_list_str(f.cpus),
            "dtype": self.dtype,
            "dtype_why": self.dtype_why,
            "threads": self.threads,
            "threads_bind": self.bind,
            "threads_why": self.bind_why,
            "enforce_eager": self.eager,
            "eager_why": self.eager_why,
            "omp_env": dict(self.omp_env),
            "omp_why": self.omp_why,
            "shm_busy_loop_s": self.busy_loop_s,
            "shm_busy_loop_why": self.busy_loop_why,
            "concurrency": self.concurrency,
            "concurrency_why": self.concurrency_why,
        }


def _parse_cpu_list(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            return []
    return out


def _bool_env(env: Mapping[str, str], name: str) -> bool | None:
    value = env.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name} must be 0 or 1, not {env[name]!r}")


def decide(
    facts: CpuFacts, *, dtype: str | None = None, embedded: bool = True, env: Mapping[str, str] | None = None
) -> CpuPlan:
    """Settings for serving on this CPU (pure). `dtype` is the user's --dtype (it wins);
    `embedded` limits the dtype choice to the embedded model (another model's memory may not
    allow float32)."""
    env = os.environ if env is None else env
    native = facts.native_bf16
    what = (
        ("restricted by " + ", ".join(f"{k}={v}" for k, v in facts.restrictions.items()))
        if facts.restrictions
        else f"{facts.kind} CPU"
    )
    if dtype is not None:
        chosen, dtype_why = dtype, "--dtype given"
    elif not embedded:
        chosen = None
        dtype_why = "the model's own dtype (vLLM auto)" + (
            ""
            if native
            else f"; no native bf16 here ({what}): --dtype float32 is several times faster if memory allows"
        )
    elif native:
        chosen, dtype_why = "bfloat16", f"native bf16 ({facts.kind}): bf16 matmuls run in hardware"
    else:
        chosen, dtype_why = "float32", f"no native bf16 ({what}): torch emulates bf16, float32 is ~4x faster"

    if env.get("VLLM_CPU_OMP_THREADS_BIND"):
        bind, bind_why = env["VLLM_CPU_OMP_THREADS_BIND"], "VLLM_CPU_OMP_THREADS_BIND from the environment"
    else:
        bind = cpu_list_str(facts.cpus)
        bind_why = (
            "every allowed core for the model: vLLM's 'auto' reserves one for the frontend, which is "
            "idle while the model computes (2 cores: 4.4k prefill 5.05 s -> 2.1 s)"
        )

    eager_env = _bool_env(env, EAGER_ENV)
    if eager_env is not None:
        eager, eager_why = eager_env, f"{EAGER_ENV} from the environment"
    else:
        eager, eager_why = _default_eager(facts, chosen)

    omp_env, omp_why = _omp_settings(facts)

    raw = env.get(BUSY_LOOP_ENV, "").strip()
    if raw:
        try:
            busy_loop_s: float | None = float(raw)
        except ValueError:
            raise UsageError(f"{BUSY_LOOP_ENV} must be a number of seconds, not {raw!r}") from None
        busy_loop_why = f"{BUSY_LOOP_ENV} from the environment"
    else:
        busy_loop_s, busy_loop_why = _default_busy_loop(facts)

    raw = env.get(CONCURRENCY_ENV, "").strip()
    if raw:
        try:
            concurrency = int(raw)
        except ValueError:
            concurrency = 0
        if concurrency < 1:
            raise UsageError(f"{CONCURRENCY_ENV} must be a positive integer, not {raw!r}")
        concurrency_why = f"{CONCURRENCY_ENV} from the environment"
    else:
        concurrency, concurrency_why = _default_concurrency(facts, chosen)
    return CpuPlan(
        facts,
        chosen,
        dtype_why,
        bind,
        bind_why,
        eager,
        eager_why,
        omp_env,
        omp_why,
        busy_loop_s,
        busy_loop_why,
        concurrency,
        concurrency_why,
    )


# bench/serving.py on 2 cores (docs/vllm-cpu-notes.md section 8): readers that blocked at once
# sometimes made 2-in-flight decode 5x slower (bf16: 10.5 vs 55 tok/s). With native bf16, 200 ms
# decodes as fast as vLLM's own 1 s (35/55/117 vs 35/54/114 tok/s at 1/2/4 in flight) where 50 ms
# was ~8 % slower alone and 4 in flight; on the float32 (AVX2) path 50 ms decoded as fast as 1 s
# (17.5/32.5 vs 16/28.9) and the README demo's queries took 144 s with it, 172 s with 200 ms
# (one run each). After a request: 4 % of a core at 50 ms, 11 % at 200 ms, 50 % at 1 s.
SHM_BUSY_LOOP_S = {"native_bf16": 0.2, "float32": 0.05}


def _default_eager(facts: CpuFacts, dtype: str | None) -> tuple[bool, str]:
    if dtype == "float32" and not facts.native_bf16:
        return True, (
            "eager on a float32 CPU: no compile at the first start (~1.5 min saved), warm start 53 s "
            "vs 75 s, prefill as fast (656 vs 571 tok/s at 1k), decode 2 in flight 28 vs 33 tok/s "
            "(bench/serving.py, AVX2-restricted)"
        )
    return False, (
        "compiled (torch inductor, cached after the first start): with native bf16, eager starts "
        "~30 s sooner but prefills ~10% and decodes 2 in flight ~25% slower (bench/serving.py)"
    )


def _omp_settings(facts: CpuFacts) -> tuple[dict[str, str], str]:
    return {}, "vLLM's own: Intel OpenMP with KMP_BLOCKTIME=5 ms, so the worker's threads sleep soon after a step"


def _default_busy_loop(facts: CpuFacts) -> tuple[float | None, str]:
    kind = "native_bf16" if facts.native_bf16 else "float32"
    seconds = SHM_BUSY_LOOP_S[kind]
    return seconds, (
        f"shared-memory queue readers busy-wait {seconds * 1000:g} ms, then block (vLLM's own: 1 s, "
        f"50% of a core after every request): the shortest that decoded as fast "
        f"{'with native bf16' if facts.native_bf16 else 'on a float32 CPU'} (bench/serving.py)"
    )


def _default_concurrency(facts: CpuFacts, dtype: str | None) -> tuple[int, str]:
    return 2, (
        "2 in flight: batched decode nearly doubles the tokens per second over 1 "
        "(bf16 29 -> 55 tok/s on 2 cores) while prefill, where full-context queries spend their "
        "time, already uses every core"
    )


def detect(*, dtype: str | None = None, embedded: bool = True, env: Mapping[str, str] | None = None) -> CpuPlan:
    """decide() for this machine and environment."""
    env = os.environ if env is None else env
    return decide(read_facts(env), dtype=dtype, embedded=embedded, env=env)


def default_concurrency(launch: Mapping | None) -> int:
    """Requests in flight for a server the harness started: the CPU plan's choice (recorded in
    config.yaml under endpoint.launch.cpu), else 2."""
    cpu = (launch or {}).get("cpu") or {}
    value = cpu.get("concurrency")
    return int(value) if isinstance(value, int) and value > 0 else 2
