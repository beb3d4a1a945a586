"""The launch plan is pure: settings in, argv and environment out, nothing read or started."""

from __future__ import annotations

import sys

from harness.endpoints import cpu
from harness.endpoints.launch import LaunchSettings, plan_launch


def _pairs(argv: list[str]) -> dict[str, str]:
    return {a: b for a, b in zip(argv, argv[1:]) if a.startswith("--")}


def test_argv_binds_loopback_with_the_port_window_and_extra_args_last():
    s = LaunchSettings("/m/gemma", "gemma-3-270m", port=8123, max_model_len=8192, extra_args=("--dtype", "float32"))
    launch = plan_launch(s, {"PATH": "/bin"}, cpus=[0, 1], iomp=None)
    assert launch.argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    pairs = _pairs(launch.argv)
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "8123" and pairs["--max-model-len"] == "8192"
    assert pairs["--served-model-name"] == "gemma-3-270m" and launch.argv[-2:] == ["--dtype", "float32"]


def test_cpu_environment_from_the_given_cores_and_openmp_library():
    s = LaunchSettings("/m", "m", port=1)
    env = plan_launch(s, {"PATH": "/bin"}, cpus=[0, 1, 2, 5], iomp="/venv/lib/libiomp5.so").env
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-2,5" and env["LD_PRELOAD"] == "/venv/lib/libiomp5.so"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["HF_HUB_OFFLINE"] == "1" and env["PATH"] == "/bin"
    # the user's environment wins; HARNESS_VLLM_IOMP=0 keeps libgomp
    env = plan_launch(
        s, {"VLLM_CPU_KVCACHE_SPACE": "7", "HARNESS_VLLM_IOMP": "0"}, cpus=[0], iomp="/venv/lib/libiomp5.so"
    ).env
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "7" and "LD_PRELOAD" not in env and env["VLLM_CPU_OMP_THREADS_BIND"] == "0"


def test_a_cpu_plan_and_overrides_reach_the_environment_and_the_gpu_build_gets_none_of_the_cpu_settings():
    plan = cpu.decide(cpu.read_facts({}, cpuinfo="flags\t: avx2\n", cpus=[2, 3]), env={})
    s = LaunchSettings("/m", "m", port=1, cpu_plan=plan, overrides={"CUDA_VISIBLE_DEVICES": "1"})
    env = plan_launch(s, {}, cpus=[0, 1], iomp=None).env
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["VLLM_CPU_OMP_THREADS_BIND"] == "2-3"  # the plan's cores
    gpu = plan_launch(LaunchSettings("/m", "m", port=1, cpu=False), {"PATH": "/bin"}, cpus=[0, 1], iomp="/x.so").env
    assert not any(k.startswith("VLLM_CPU_") for k in gpu) and "LD_PRELOAD" not in gpu and gpu["HF_HUB_OFFLINE"] == "1"


def test_a_hub_model_may_download_unless_the_base_environment_is_offline():
    hub = LaunchSettings("org/model", "org/model", port=1, cpu=False, offline=False)
    assert "HF_HUB_OFFLINE" not in plan_launch(hub, {}, cpus=[0], iomp=None).env
    assert plan_launch(hub, {"HF_HUB_OFFLINE": "1"}, cpus=[0], iomp=None).env["HF_HUB_OFFLINE"] == "1"


def test_at_an_endpoint_auto_asks_the_embedded_model_and_its_readers_by_completion_prompts(monkeypatch):
    """`harness serve` then `compare --endpoint URL --model gemma-3-270m-reader`: the readers were trained on
    completion prompts (no chat template), so `--api auto` asks them so; any other model gets chat."""
    from harness.config import EndpointConfig
    from harness.endpoints.client import Endpoint
    from harness.launch import open_endpoint, remote_api

    monkeypatch.setattr(Endpoint, "describe", lambda self: {})  # no server here: only the API chosen is checked

    assert remote_api("gemma-3-270m") == remote_api("gemma-3-270m-reader") == "completions"
    assert remote_api("gemma-3-270m-bio-needle") == "completions"
    assert remote_api("Qwen/Qwen2.5-7B-Instruct") == remote_api("gpt-4o-mini") == remote_api(None) == "chat"
    with open_endpoint(EndpointConfig(url="http://127.0.0.1:9/v1", model="gemma-3-270m-reader"), None) as (ep, _):
        assert ep.api == "completions"
    with open_endpoint(EndpointConfig(url="http://127.0.0.1:9/v1", model="gpt-4o-mini", api="auto"), None) as (ep, _):
        assert ep.api == "chat"
    at = EndpointConfig(url="http://127.0.0.1:9/v1", model="gemma-3-270m-reader", api="chat")
    with open_endpoint(at, None) as (ep, _):
        assert ep.api == "chat"  # an explicit --api wins
