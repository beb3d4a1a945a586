"""The vLLM plugin that stops shared-memory queue readers from busy-waiting (harness/endpoints/vllm_plugin.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("vllm")

PROBE = r"""
import os
from harness.endpoints import vllm_plugin
from vllm.distributed.device_communicators import shm_broadcast as sb
before = sb.SpinCondition.wait
vllm_plugin.register()
vllm_plugin.register()  # vLLM may load plugins twice in a process
after = sb.SpinCondition.wait
class Reader:  # the attributes wait() reads, without zmq sockets
    is_reader, busy_loop_s, last_read = True, 1, 0.0
    poller = None
r = Reader()
if after is not before:
    try:
        after(r, timeout_ms=0)
    except AttributeError:
        pass  # the real wait went on to poll: the busy loop was skipped
print(after is not before, getattr(after, "_harness_busy_loop", None), r.busy_loop_s)
"""


def run_probe(env_value: str | None) -> list[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "HARNESS_VLLM_SHM_BUSY_LOOP_S"}
    if env_value is not None:
        env["HARNESS_VLLM_SHM_BUSY_LOOP_S"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_the_plugin_limits_the_busy_loop_only_when_the_harness_asks():
    assert run_probe("0") == ["True", "0.0", "0.0"]
    assert run_probe("0.25") == ["True", "0.25", "0.25"]
    assert run_probe(None) == ["False", "None", "1"]  # plain vLLM use of this environment: untouched
    assert run_probe("soon") == ["False", "None", "1"]  # a bad value: warned, left alone


def test_vllm_finds_the_plugin_entry_point(tmp_path):
    # from a neutral folder: a stale harness.egg-info in the project folder would hide it
    code = (
        "from importlib.metadata import entry_points;"
        "print([e.value for e in entry_points(group='vllm.general_plugins')])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "harness.endpoints.vllm_plugin:register" in out.stdout
