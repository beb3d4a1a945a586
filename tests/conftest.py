"""Shared fixtures.

`vllm_server` (session scope): the embedded Gemma 3 270M on a real vLLM server, started once per
test session through harness.endpoints.vllm_server and stopped at the end. It yields the
VLLMServer object:

    vllm_server.base_url   "http://127.0.0.1:PORT/v1"  (includes /v1: give it to the OpenAI client)
    vllm_server.root_url   "http://127.0.0.1:PORT"     (/health, /tokenize, /metrics, /version)
    vllm_server.model      "gemma-3-270m"              (the `model` of every request)

HARNESS_TEST_VLLM_URL=http://127.0.0.1:8000 reuses a server that is already running (with the
embedded model served as gemma-3-270m, or set HARNESS_TEST_VLLM_MODEL) instead of starting one;
start it with VLLM_SERVER_DEV_MODE=1 for the reproducibility test (it resets the prefix cache).

Two kinds of tests (pyproject.toml markers): `server` tests run a real vLLM server, `browser` tests
a real Chromium; everything else is a unit test (no server, no browser, no network), so

    .venv/bin/python -m pytest -m "not server and not browser"     # the fast ones, about 10 minutes on 2 cores
    .venv/bin/python -m pytest                                      # all of them (what .ci/run runs)

A test that asks for the `vllm_server` or `browser` fixture is marked automatically; tests that start
servers of their own say `@pytest.mark.server`.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import pytest

pytest_plugins = ["pytester"]


def pytest_configure(config):
    """Ctrl-C tests send SIGINT to the harness. A shell starts a background job (`cmd &`, as a CI
    script may) with SIGINT ignored, every child inherits that, and Python then never raises
    KeyboardInterrupt. A handler is reset to the default on exec, so installing one here gives the
    harness processes the tests start the SIGINT a terminal would."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_FIXTURE_MARKS = {"vllm_server": "server", "browser": "browser"}


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a server or browser fixture, so `-m "not server"` can never start one."""
    for item in items:
        for fixture, marker in _FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


# Big enough for the long-context tests, small enough to start fast.
TEST_MAX_MODEL_LEN = 8192


@dataclass(frozen=True)
class _ExternalServer:
    root_url: str
    model: str

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"


@pytest.fixture(scope="session")
def vllm_server():
    url = os.environ.get("HARNESS_TEST_VLLM_URL")
    if url:
        from harness.endpoints.embedded import EMBEDDED_MODEL

        root = url.rstrip("/").removesuffix("/v1")
        yield _ExternalServer(root, os.environ.get("HARNESS_TEST_VLLM_MODEL", EMBEDDED_MODEL))
        return

    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    from harness.endpoints.vllm_server import start_embedded

    # Development endpoints on for the tests only (loopback): /reset_prefix_cache gives the
    # reproducibility test two runs from the same cold prefix cache on one server.
    old = os.environ.get("VLLM_SERVER_DEV_MODE")
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"
    try:
        srv = start_embedded(max_model_len=TEST_MAX_MODEL_LEN)
    finally:
        if old is None:
            os.environ.pop("VLLM_SERVER_DEV_MODE", None)
        else:
            os.environ["VLLM_SERVER_DEV_MODE"] = old
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    """monkeypatch for a module-scoped fixture (pytest's own is function-scoped)."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
