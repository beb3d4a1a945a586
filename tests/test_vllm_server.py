"""The vLLM launcher and the embedded model.

Unmarked tests need no vLLM: build_args, the CPU environment, log parsing, the atomic/locked
model preparation (with a fake converter) and the process lifecycle (with a fake server that
answers /health and forks an "engine core" child, like vLLM does).
Tests marked `server` use the real vLLM server (the session fixture, or a second one they start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from process_group import wait_gone

from harness.endpoints import embedded
from harness.endpoints.embedded import cache_dir, prepare_embedded_model
from harness.endpoints.vllm_server import (
    EMBEDDED_SERVER_ARGS,
    VLLMServer,
    _cpu_list_str,
    build_args,
    cpu_env,
    group_members,
    last_log_line,
    port_is_open,
)
from harness.errors import EndpointError

ROOT = Path(__file__).resolve().parents[1]

SCHEMA = {
    "type": "object",
    "properties": {
        "nationality": {"type": "string", "maxLength": 40},
        "date_of_birth": {
            "type": "object",
            "properties": {
                "day": {"type": "integer", "minimum": 0, "maximum": 31},
                "month": {"type": "integer", "minimum": 0, "maximum": 12},
                "year": {"type": "integer", "minimum": 0, "maximum": 2100},
            },
            "required": ["day", "month", "year"],
            "additionalProperties": False,
        },
        "sportsperson": {"type": "boolean"},
    },
    "required": ["nationality", "date_of_birth", "sportsperson"],
    "additionalProperties": False,
}


# --------------------------------------------------------------------------------- build_args


def test_build_args_binds_localhost_and_names_the_model():
    args = build_args("/m/gemma", "gemma-3-270m", 8123, 8192, [])
    assert args[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(args[2::2], args[3::2]))
    assert pairs["--model"] == "/m/gemma"
    assert pairs["--served-model-name"] == "gemma-3-270m"
    assert pairs["--host"] == "127.0.0.1"
    assert pairs["--port"] == "8123"
    assert pairs["--max-model-len"] == "8192"
    assert "0.0.0.0" not in args


def test_build_args_without_max_model_len_leaves_the_models_default():
    args = build_args("m", "s", 1234, None, [])
    assert "--max-model-len" not in args


def test_build_args_appends_extra_args_last_and_is_pure():
    extra = ["--max-model-len", "4096", "--enforce-eager"]
    before = list(extra)
    a1 = build_args("m", "s", 1234, 8192, extra)
    a2 = build_args("m", "s", 1234, 8192, extra)
    assert a1 == a2 and extra == before
    assert a1[-3:] == extra  # argparse: the last --max-model-len wins
    assert all(isinstance(a, str) for a in a1)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(model="", served_name="s", port=1, max_model_len=None),
        dict(model="m", served_name="", port=1, max_model_len=None),
        dict(model="m", served_name="s", port=0, max_model_len=None),
        dict(model="m", served_name="s", port=70000, max_model_len=None),
        dict(model="m", served_name="s", port=1, max_model_len=0),
    ],
)
def test_build_args_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        build_args(extra_args=[], **kwargs)


def test_embedded_server_args_parse_as_json():
    i = EMBEDDED_SERVER_ARGS.index("--structured-outputs-config")
    cfg = json.loads(EMBEDDED_SERVER_ARGS[i + 1])
    assert cfg == {"backend": "xgrammar", "disable_any_whitespace": True}


# ----------------------------------------------------------------------- environment, caching


def test_cpu_list_str():
    assert _cpu_list_str([0, 1]) == "0-1"
    assert _cpu_list_str([3, 0, 1, 2, 7]) == "0-3,7"
    assert _cpu_list_str([5]) == "5"


def test_cpu_env_uses_every_core_and_lets_the_user_override():
    env = cpu_env({"PATH": "/bin"})
    allowed = sorted(os.sched_getaffinity(0))
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == _cpu_list_str(allowed)
    assert int(env["VLLM_CPU_KVCACHE_SPACE"]) >= 1
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    env = cpu_env({"VLLM_CPU_OMP_THREADS_BIND": "auto", "VLLM_CPU_KVCACHE_SPACE": "7", "LD_PRELOAD": ""})
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "auto"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "7"
    assert env["LD_PRELOAD"] == ""


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("HARNESS_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == Path.home() / ".cache" / "harness"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "harness"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h"


def _fake_conversion(monkeypatch, calls, fail=False, delay=0.3):
    def assemble(workdir):
        p = Path(workdir) / "model.gguf"
        p.write_bytes(b"GGUF")
        return p

    def convert(gguf, out):
        calls.append(out)
        out.mkdir()
        (out / "config.json").write_text("{}")
        time.sleep(delay)
        if fail:
            raise EndpointError("converting the embedded model failed: boom")
        (out / "model.safetensors").write_bytes(b"x")
        return {"has_chat_template": False}

    monkeypatch.setattr(embedded, "_assemble_gguf", assemble)
    monkeypatch.setattr(embedded, "_run_conversion", convert)


def test_prepare_converts_once_even_when_called_concurrently(monkeypatch, tmp_path):
    calls: list = []
    _fake_conversion(monkeypatch, calls)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(prepare_embedded_model(tmp_path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    target = tmp_path / "models" / "gemma-3-270m-hf"
    assert results == [target] * 4
    assert len(calls) == 1
    assert (target / "model.safetensors").exists()
    marker = json.loads((target / ".harness-complete.json").read_text())
    assert marker["dtype"] == "bfloat16" and marker["has_chat_template"] is False
    t0 = time.monotonic()
    assert prepare_embedded_model(tmp_path) == target  # idempotent, immediate
    assert time.monotonic() - t0 < 0.5 and len(calls) == 1
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".gemma-3-270m-hf.tmp")] == []


def test_prepare_failure_leaves_no_half_folder(monkeypatch, tmp_path):
    calls: list = []
    _fake_conversion(monkeypatch, calls, fail=True, delay=0)
    with pytest.raises(EndpointError, match="boom"):
        prepare_embedded_model(tmp_path)
    models = tmp_path / "models"
    assert not (models / "gemma-3-270m-hf").exists()
    assert [p for p in models.iterdir() if p.is_dir()] == []
    # a folder without the completion marker (crash after a copy by hand) is redone
    (models / "gemma-3-270m-hf").mkdir()
    (models / "gemma-3-270m-hf" / "config.json").write_text("{}")
    calls.clear()
    _fake_conversion(monkeypatch, calls, delay=0)
    assert prepare_embedded_model(tmp_path) == models / "gemma-3-270m-hf"
    assert len(calls) == 1 and (models / "gemma-3-270m-hf" / "model.safetensors").exists()


def test_last_log_line_finds_the_root_cause(tmp_path):
    log = tmp_path / "v.log"
    log.write_text(
        textwrap.dedent(
            """\
            (APIServer pid=1) INFO 11-22 03:21:05 [api_utils.py:286] non-default args: {}
            Traceback (most recent call last):
              File "x.py", line 1, in <module>
                raise ValueError("no")
            pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig
              Value error, Invalid repository ID or local directory specified: '/nope'.
            Please verify the following requirements:
            1. Provide a valid Hugging Face repository ID.
            (EngineCore pid=2) ERROR 11-22 03:21:06 [core.py:1] RuntimeError: Engine core initialization failed. See root cause above.

            """
        )
    )
    line = last_log_line(log)
    assert "\n" not in line
    assert line.startswith("pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig")
    assert "Invalid repository ID or local directory specified: '/nope'" in line
    log.write_text("(APIServer pid=1) INFO 11-22 03:21:05 [x.py:1] \x1b[1mjust info\x1b[0m\n")
    assert last_log_line(log) == "just info"
    assert last_log_line(tmp_path / "missing.log") == ""


# ------------------------------------------------------------------ lifecycle with a fake server

FAKE_SERVER = r"""
import http.server, signal, subprocess, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
print("(APIServer pid=1) INFO 01-01 00:00:00 [fake.py:1] fake vllm starting", flush=True)
# the stand-in for vLLM's engine-core process: same process group, lives until killed
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
print(f"CHILD {child.pid}", flush=True)
if mode == "crash":   # dies during startup and leaves its child behind (an orphan in the group)
    print("(EngineCore pid=2) ERROR 01-01 00:00:01 [core.py:1] RuntimeError: fake engine exploded", flush=True)
    sys.exit(1)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "hang":
    time.sleep(3600)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


class FakeServer(VLLMServer):
    def __init__(self, script: Path, mode: str, **kw):
        super().__init__(script.parent, "fake", cpu_settings=False, **kw)
        self._script, self._mode = script, mode

    def command(self) -> list[str]:
        return [sys.executable, str(self._script), str(self.port), self._mode]


@pytest.fixture
def fake_script(tmp_path):
    p = tmp_path / "fake_vllm.py"
    p.write_text(FAKE_SERVER)
    return p


def _child_pid(log: Path) -> int:
    for _ in range(100):
        for line in log.read_text().splitlines():
            if line.startswith("CHILD "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError("fake server never reported its child")


def test_fake_server_start_and_stop_leave_nothing(fake_script, tmp_path):
    srv = FakeServer(fake_script, "ok", log_path=tmp_path / "ok.log", startup_timeout=30)
    with srv:
        assert srv.is_running()
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        assert port_is_open(srv.port)
        pgid = srv.pid
        assert os.getpgid(srv.pid) == srv.pid != os.getpgid(0)  # its own process group
        child = _child_pid(srv.log_path)
        assert child in group_members(pgid)
    assert wait_gone(pgid, 1)
    assert not port_is_open(srv.port)
    srv.stop()  # idempotent
    srv.stop()


def test_fake_server_crash_during_startup_is_one_line_and_leaves_nothing(fake_script, tmp_path):
    srv = FakeServer(fake_script, "crash", log_path=tmp_path / "crash.log", startup_timeout=30)
    with pytest.raises(EndpointError) as ei:
        srv.start()
    msg = str(ei.value)
    assert "\n" not in msg
    assert "RuntimeError: fake engine exploded" in msg and str(tmp_path / "crash.log") in msg
    assert wait_gone(srv.pid, 1)  # the orphaned "engine core" was killed too


def test_fake_server_ignoring_sigterm_gets_sigkilled(fake_script, tmp_path):
    srv = FakeServer(fake_script, "stubborn", log_path=tmp_path / "s.log", startup_timeout=30).start()
    t0 = time.monotonic()
    srv.stop(timeout=1)
    assert time.monotonic() - t0 < 10
    assert wait_gone(srv.pid, 1)
    assert srv.proc.returncode == -signal.SIGKILL


def test_fake_server_startup_timeout(fake_script, tmp_path):
    srv = FakeServer(fake_script, "hang", log_path=tmp_path / "h.log", startup_timeout=2)
    with pytest.raises(EndpointError, match=r"not healthy after 2s.*fake vllm starting|not healthy after 2s"):
        srv.start()
    assert wait_gone(srv.pid, 1)


def test_missing_model_folder_fails_before_spawning(tmp_path):
    srv = VLLMServer(tmp_path / "nope", "x", log_path=tmp_path / "x.log")
    with pytest.raises(EndpointError, match="model folder not found"):
        srv.start()
    assert srv.proc is None


PARENT = r"""
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from test_vllm_server import FakeServer
from pathlib import Path
srv = FakeServer(Path({script!r}), {mode!r}, log_path=Path({log!r}), startup_timeout=30).start()
print(srv.pid, flush=True)
{tail}
"""


@pytest.mark.parametrize(
    "mode,tail,expect_rc",
    [
        ("sigterm", "time.sleep(60)", 128 + signal.SIGTERM),  # SIGTERM -> SystemExit -> atexit
        ("exit", "sys.exit(0)", 0),  # forgot to stop(): atexit stops it
        ("error", "raise RuntimeError('boom')", 1),  # uncaught error: atexit stops it
    ],
)
def test_parent_exit_stops_the_server(fake_script, tmp_path, mode, tail, expect_rc):
    code = PARENT.format(
        root=str(ROOT),
        tests=str(ROOT / "tests"),
        script=str(fake_script),
        mode="ok",
        log=str(tmp_path / "p.log"),
        tail=tail,
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pgid = int(parent.stdout.readline())
        if mode == "sigterm":
            assert group_members(pgid)
            parent.send_signal(signal.SIGTERM)
        rc = parent.wait(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert rc == expect_rc, parent.stderr.read()
    assert wait_gone(pgid, 1)


def test_sigkilled_parent_takes_the_server_with_it(fake_script, tmp_path):
    """PR_SET_PDEATHSIG: even `kill -9` of the harness leaves no server behind."""
    code = PARENT.format(
        root=str(ROOT),
        tests=str(ROOT / "tests"),
        script=str(fake_script),
        mode="ok",
        log=str(tmp_path / "k.log"),
        tail="time.sleep(60)",
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pgid = int(parent.stdout.readline())
        parent.kill()
        parent.wait(timeout=10)
        # the fake server dies of PDEATHSIG; its child is a plain orphan (vLLM's engine core
        # watches its parent and exits; the fake's `sleep` does not), so only check the leader
        end = time.monotonic() + 10
        while pgid in group_members(pgid) and time.monotonic() < end:
            time.sleep(0.1)
        assert pgid not in group_members(pgid)
    finally:
        for pid in group_members(pgid):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ real vLLM server


@pytest.mark.server
def test_server_is_healthy_and_describes_itself(vllm_server):
    import httpx

    root = vllm_server.base_url.removesuffix("/v1")
    assert vllm_server.base_url.endswith("/v1")
    assert httpx.get(root + "/health", timeout=10).status_code == 200
    assert httpx.get(root + "/version", timeout=10).json()["version"]
    models = httpx.get(vllm_server.base_url + "/models", timeout=10).json()["data"]
    assert [m["id"] for m in models] == [vllm_server.model]
    assert models[0]["max_model_len"] >= 8192
    metrics = httpx.get(root + "/metrics", timeout=10).text
    for name in (
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:time_to_first_token_seconds_sum",
    ):
        assert name in metrics


@pytest.mark.server
def test_completion_with_json_schema_returns_valid_json(vllm_server):
    import jsonschema
    import openai

    client = openai.OpenAI(base_url=vllm_server.base_url, api_key="EMPTY", max_retries=0)
    prompt = (
        "Roger Federer (born 8 August 1981) is a Swiss former professional tennis player.\n"
        "Extract his nationality, date of birth and whether he is a sportsperson as JSON.\nJSON: "
    )
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    for extra in ({"response_format": fmt}, {"structured_outputs": {"json": SCHEMA}}):
        r = client.completions.create(
            model=vllm_server.model, prompt=prompt, max_tokens=120, temperature=0, extra_body=extra
        )
        choice = r.choices[0]
        assert choice.finish_reason == "stop", choice.text  # compact JSON closes well within 120
        data = json.loads(choice.text)
        jsonschema.validate(data, SCHEMA)


@pytest.mark.server
def test_tokenize_count_matches_usage_prompt_tokens(vllm_server):
    import httpx

    root = vllm_server.base_url.removesuffix("/v1")
    prompt = "The quick brown fox jumps over the lazy dog. " * 20 + "Answer:"
    tok = httpx.post(root + "/tokenize", json={"model": vllm_server.model, "prompt": prompt}, timeout=30).json()
    assert tok["count"] == len(tok["tokens"]) and tok["tokens"][0] == 2  # <bos> is added by default
    bare = httpx.post(
        root + "/tokenize", json={"model": vllm_server.model, "prompt": prompt, "add_special_tokens": False}, timeout=30
    ).json()
    assert bare["count"] == tok["count"] - 1 and bare["tokens"] == tok["tokens"][1:]
    r = httpx.post(
        vllm_server.base_url + "/completions",
        json={"model": vllm_server.model, "prompt": prompt, "max_tokens": 1, "temperature": 0},
        timeout=120,
    ).json()
    assert r["usage"]["prompt_tokens"] == tok["count"]


@pytest.mark.server
def test_bogus_model_fails_fast_with_one_line_and_no_process(tmp_path):
    bogus = tmp_path / "not-a-model"
    bogus.mkdir()
    srv = VLLMServer(bogus, "bogus", max_model_len=2048, log_path=tmp_path / "bogus.log", startup_timeout=300)
    t0 = time.monotonic()
    with pytest.raises(EndpointError) as ei:
        srv.start()
    assert time.monotonic() - t0 < 120
    msg = str(ei.value)
    assert "\n" not in msg and str(tmp_path / "bogus.log") in msg
    assert "not-a-model" in msg  # the root cause, not "Engine core initialization failed"
    assert srv.pid is not None and wait_gone(srv.pid, 1)


# Stopping a real server (port closed, process group ended, idempotent): tests/test_context_extension.py,
# on the server that module starts anyway (a second embedded server only to stop it cost a start).


@pytest.mark.server
def test_real_server_went_through_the_startup_phases_and_serves_the_decided_dtype(vllm_server):
    from harness.endpoints import startup

    if not isinstance(vllm_server, VLLMServer):
        pytest.skip("HARNESS_TEST_VLLM_URL: a server the tests did not start")
    names = [p for p, _ in vllm_server.phases]
    cpu = vllm_server.plan.cpu
    compiled = cpu is None or not cpu.eager  # an eager server (float32 CPUs) compiles nothing
    for phase in (
        startup.STARTING,
        startup.ENGINE,
        startup.LOADING,
        *([startup.COMPILING] if compiled else []),
        startup.KV_CACHE,
        startup.READY,
    ):
        assert phase in names, names
    assert names[-1] == startup.READY
    assert vllm_server.phases[-1][1] >= vllm_server.startup_seconds - 1
    assert cpu is not None and cpu.dtype in ("bfloat16", "float32")
    assert vllm_server.served_dtype == cpu.dtype  # what the engine logged it runs
    assert vllm_server.plan.describe()["cpu"]["dtype"] == cpu.dtype
    if cpu.busy_loop_s is not None:  # the no-busy-wait plugin ran where the shm queues are read
        assert "EngineCore" in vllm_server.plugin_processes, vllm_server.plugin_processes
        assert any("Worker" in p for p in vllm_server.plugin_processes), vllm_server.plugin_processes
