"""The serving settings chosen from the CPU (harness/endpoints/cpu.py) and where they end up:
the server's arguments and environment, and config.yaml's endpoint.launch.cpu."""

from __future__ import annotations

import pytest

from harness.endpoints import cpu
from harness.endpoints.vllm_server import ServerOptions, cpu_env, plan_server
from harness.errors import UsageError

# Real /proc/cpuinfo excerpts (first processor; flags abridged to the ones around the decision).
EPYC_ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi avx512_vnni
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu avx avx2
"""
EPYC_ZEN2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni
"""
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu avx avx2 avx512f avx512bw avx512vl avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""
SKYLAKE_X = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
flags\t\t: fpu avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl
"""
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def plan_for(cpuinfo: str, env: dict | None = None, **kw) -> cpu.CpuPlan:
    env = env or {}
    return cpu.decide(cpu.read_facts(env, cpuinfo=cpuinfo, cpus=[0, 1]), env=env, **kw)


def test_parse_cpuinfo_reads_the_first_processor():
    model, flags = cpu.parse_cpuinfo(EPYC_ZEN5)
    assert model == "AMD EPYC"
    assert {"avx2", "avx512f", "avx512_bf16"} <= flags
    assert cpu.parse_cpuinfo("") == ("", frozenset())


@pytest.mark.parametrize(
    ("cpuinfo", "kind", "dtype"),
    [
        (EPYC_ZEN5, "avx512_bf16", "bfloat16"),
        (SAPPHIRE_RAPIDS, "amx", "bfloat16"),
        (SKYLAKE_X, "avx512", "float32"),  # AVX-512 without its bf16 extension: emulated bf16
        (EPYC_ZEN2, "avx2", "float32"),  # the reporter's CPU kind
        ("", "baseline", "float32"),
    ],
)
def test_dtype_is_bf16_only_where_the_cpu_computes_it(cpuinfo, kind, dtype):
    plan = plan_for(cpuinfo)
    assert plan.facts.kind == kind
    assert plan.dtype == dtype
    assert plan.args()[:2] == ["--dtype", dtype]
    assert plan.dtype_why.startswith("native bf16" if dtype == "bfloat16" else "no native bf16")


@pytest.mark.parametrize(
    "env",
    [AVX2_ENV, {"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}],
)
def test_isa_restriction_on_an_avx512_bf16_box_means_no_native_bf16(env):
    plan = plan_for(EPYC_ZEN5, env)
    assert not plan.facts.native_bf16
    assert plan.dtype == "float32"
    assert plan.facts.restrictions == {k: v for k, v in env.items()}
    assert "restricted by" in plan.dtype_why
    assert plan.describe()["isa_restricted_by"] == env


def test_restrictions_that_keep_bf16_are_not_restrictions():
    for env in (
        {"ATEN_CPU_CAPABILITY": "avx512"},
        {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
        {"ONEDNN_MAX_CPU_ISA": "ALL"},
        {"ATEN_CPU_CAPABILITY": ""},
    ):
        plan = plan_for(EPYC_ZEN5, env)
        assert plan.dtype == "bfloat16", env
        assert plan.facts.restrictions == {}


def test_restricted_avx2_kind_matches_a_real_avx2_cpu():
    restricted, real = plan_for(EPYC_ZEN5, AVX2_ENV), plan_for(EPYC_ZEN2)
    assert restricted.facts.kind == real.facts.kind == "avx2"
    for key in ("dtype", "enforce_eager", "concurrency", "omp_env"):
        assert restricted.describe()[key] == real.describe()[key], key


def test_user_dtype_wins_and_is_not_passed_twice():
    plan = plan_for(EPYC_ZEN2, dtype="bfloat16")
    assert plan.dtype == "bfloat16" and plan.dtype_why == "--dtype given"
    p = plan_server(ServerOptions(dtype="bfloat16"), "/m", GEMMA3, cpu=plan)
    assert p.extra_args.count("--dtype") == 1
    assert p.extra_args[p.extra_args.index("--dtype") + 1] == "bfloat16"


def test_another_model_keeps_its_own_dtype_with_a_hint():
    plan = plan_for(EPYC_ZEN2, embedded=False)
    assert plan.dtype is None and "--dtype" not in plan.args()
    assert "--dtype float32" in plan.dtype_why
    assert plan_for(EPYC_ZEN5, embedded=False).dtype is None


def test_environment_overrides_binding_eager_and_concurrency():
    env = {"VLLM_CPU_OMP_THREADS_BIND": "1", cpu.EAGER_ENV: "1", cpu.CONCURRENCY_ENV: "6"}
    plan = plan_for(EPYC_ZEN5, env)
    assert plan.bind == "1" and plan.threads == 1 and "environment" in plan.bind_why
    assert plan.eager and "--enforce-eager" in plan.args()
    assert plan.concurrency == 6
    plan = plan_for(EPYC_ZEN5, {cpu.EAGER_ENV: "0"})
    assert not plan.eager and "--enforce-eager" not in plan.args()


@pytest.mark.parametrize("env", [{cpu.EAGER_ENV: "maybe"}, {cpu.CONCURRENCY_ENV: "0"}, {cpu.CONCURRENCY_ENV: "x"}])
def test_bad_overrides_are_one_line_usage_errors(env):
    with pytest.raises(UsageError) as ei:
        plan_for(EPYC_ZEN5, env)
    assert "\n" not in str(ei.value)


def test_threads_bind_every_allowed_core():
    facts = cpu.read_facts({}, cpuinfo=EPYC_ZEN5, cpus=[0, 1, 2, 3, 6])
    plan = cpu.decide(facts, env={})
    assert plan.bind == "0-3,6" and plan.threads == 5
    assert plan.env()["VLLM_CPU_OMP_THREADS_BIND"] == "0-3,6"


def test_cpu_env_applies_the_plan_but_the_callers_environment_wins():
    plan = plan_for(EPYC_ZEN5)
    plan.omp_env = {"KMP_BLOCKTIME": "0"}
    env = cpu_env({"PATH": "/bin"}, plan)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1" and env["KMP_BLOCKTIME"] == "0"
    env = cpu_env({"PATH": "/bin", "KMP_BLOCKTIME": "200", "VLLM_CPU_OMP_THREADS_BIND": "0"}, plan)
    assert env["KMP_BLOCKTIME"] == "200" and env["VLLM_CPU_OMP_THREADS_BIND"] == "0"


GEMMA3 = {
    "model_type": "gemma3_text",
    "max_position_embeddings": 32768,
    "rope_parameters": {
        "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    },
}


def test_the_plan_description_for_config_yaml_holds_the_cpu_section():
    plan = plan_for(EPYC_ZEN2)
    launch = plan_server(ServerOptions(), "/m/gemma", GEMMA3, cpu=plan).describe()
    section = launch["cpu"]
    assert section["model"] == "AMD EPYC 7B12"
    assert section["flags"] == {
        "avx2": True,
        "avx512f": False,
        "avx512_bf16": False,
        "amx_tile": False,
        "amx_bf16": False,
    }
    assert section["dtype"] == "float32" and section["dtype_why"]
    assert section["threads"] == 2 and section["threads_bind"] == "0-1"
    for key in ("enforce_eager", "eager_why", "omp_env", "omp_why", "concurrency", "concurrency_why", "kind"):
        assert key in section, key
    args = launch["server_args"]
    assert args[args.index("--dtype") + 1] == "float32"
    assert cpu.default_concurrency(launch) == section["concurrency"]


def test_the_gpu_build_has_no_cpu_section_and_default_concurrency_falls_back():
    launch = plan_server(ServerOptions(), "/m/gemma", GEMMA3, flavour="gpu").describe()
    assert launch["cpu"] is None
    assert "--dtype" not in launch["server_args"]
    assert cpu.default_concurrency(launch) == 2
    assert cpu.default_concurrency(None) == 2


def test_this_machine_is_read():
    facts = cpu.read_facts()
    assert facts.cpus and facts.kind in ("amx", "avx512_bf16", "avx512", "avx2", "baseline")


def test_the_shm_busy_loop_is_short_but_not_zero():
    """Blocking at once sometimes made 2-in-flight decode 5x slower; vLLM's own 1 s spin takes half a
    core after every request (bench/serving.py): the default lies between."""
    plan = plan_for(EPYC_ZEN5)
    assert 0 < plan.busy_loop_s < 1
    assert 0 < plan_for(EPYC_ZEN2).busy_loop_s < plan.busy_loop_s  # float32: 50 ms decoded as fast there
    assert plan.env()[cpu.BUSY_LOOP_ENV] == f"{plan.busy_loop_s:g}"
    assert plan.describe()["shm_busy_loop_why"].startswith("shared-memory queue readers busy-wait")
    assert plan_for(EPYC_ZEN5, {cpu.BUSY_LOOP_ENV: "1"}).busy_loop_s == 1.0
    with pytest.raises(UsageError):
        plan_for(EPYC_ZEN5, {cpu.BUSY_LOOP_ENV: "soon"})


def test_eager_only_where_the_model_runs_float32_for_want_of_native_bf16():
    """AVX2 (float32): eager starts without compiling and prefills as fast; native bf16: compiled
    is faster (bench/serving.py)."""
    avx2, native = plan_for(EPYC_ZEN2), plan_for(EPYC_ZEN5)
    assert avx2.dtype == "float32" and avx2.eager and "--enforce-eager" in avx2.args()
    assert "float32" in avx2.eager_why
    assert native.dtype == "bfloat16" and not native.eager and "--enforce-eager" not in native.args()
    assert not plan_for(EPYC_ZEN5, dtype="float32").eager  # the user's float32 on a bf16 CPU: still compiled
    assert not plan_for(EPYC_ZEN2, {cpu.EAGER_ENV: "0"}).eager
