"""Secrets: an API key is read from the environment only and appears in no record, log, config dump,
cache or report -- even when the server echoes it back in its error bodies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402

PLANTED = "sk-planted-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def _grep(folder: Path, needle: str) -> list[str]:
    hits = []
    for p in folder.rglob("*"):
        if p.is_file() and needle.encode() in p.read_bytes():
            hits.append(str(p))
    return hits


def _compare(url: str, out: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness.cli",
        "compare",
        "--endpoint",
        url,
        "--model",
        "gemma-3-270m",
        "--api",
        "completions",
        "--lengths",
        "800",
        "--depths",
        "0,50,100",
        "--needles",
        "2",
        "-s",
        "full-context",
        "--shots",
        "0",
        "--out",
        str(out),
        *args,
    ]


def test_planted_key_is_sent_but_never_written(tmp_path):
    """The stand-in answers every 5th request with HTTP 500 and the Authorization header it got in the
    body: the error recorded for that query must carry the body without the key."""
    proc, url = fake_openai.start_subprocess("--echo-auth")
    env = dict(
        os.environ,
        MY_PROVIDER_KEY=PLANTED,
        HARNESS_RESPONSE_CACHE=str(tmp_path / "cache" / "r.sqlite"),
        TOKENIZERS_PARALLELISM="false",
    )
    try:
        out = tmp_path / "run"
        p = subprocess.run(
            _compare(url, out, "--api-key-env", "MY_PROVIDER_KEY", "--max-retries", "0", "--concurrency", "1"),
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert p.returncode == 0, p.stderr
        # a rerun finishes the failed query; then a report of the folder
        p2 = subprocess.run(
            _compare(url, out, "--api-key-env", "MY_PROVIDER_KEY", "--concurrency", "1"),
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert p2.returncode == 0, p2.stderr
    finally:
        proc.kill()
        proc.wait()
    errors = [r["error"] for r in RunStore(out).rows() if r["error"]]
    assert errors and all("Bearer ***" in e for e in errors)  # the key reached the server, and was scrubbed
    assert _grep(out, PLANTED) == []
    assert _grep(tmp_path / "cache", PLANTED) == []
    for stream in (p.stdout, p.stderr, p2.stdout, p2.stderr):
        assert PLANTED not in stream
    config = (out / "config.yaml").read_text()
    assert "MY_PROVIDER_KEY" in config  # the variable's name is kept, to replay the run


def test_a_rejected_key_is_one_line_without_the_key(tmp_path):
    """A server that rejects the key and quotes it: one line, no key."""
    from harness.endpoints.client import Endpoint
    from harness.errors import EndpointError
    from harness.prompting import build_prompt

    def handler(request: httpx.Request):
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        return httpx.Response(401, json={"error": f"invalid key {request.headers['authorization']}"})

    import asyncio

    os.environ["HARNESS_SECRET_TEST_KEY"] = PLANTED
    try:
        ep = Endpoint("http://model.test/v1", "m", "completions", "HARNESS_SECRET_TEST_KEY")

        async def go():
            async with ep.session(1, transport=httpx.MockTransport(handler)) as s:
                await s.complete(build_prompt("i", [], "c", "q"), None, 5)

        with pytest.raises(EndpointError) as e:
            asyncio.run(go())
    finally:
        del os.environ["HARNESS_SECRET_TEST_KEY"]
    msg = str(e.value)
    assert PLANTED not in msg and "***" in msg and "$HARNESS_SECRET_TEST_KEY" in msg and "\n" not in msg


@pytest.mark.server
def test_planted_key_against_the_real_server(vllm_server, tmp_path):
    env = dict(
        os.environ,
        OPENAI_API_KEY=PLANTED,
        HARNESS_RESPONSE_CACHE=str(tmp_path / "cache" / "r.sqlite"),
        TOKENIZERS_PARALLELISM="false",
    )
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "harness.cli",
        "compare",
        "--endpoint",
        vllm_server.base_url,
        "--model",
        vllm_server.model,
        "--api",
        "completions",
        "--lengths",
        "300",
        "--depths",
        "50",
        "--needles",
        "1",
        "-s",
        "full-context,rag-dense",
        "--shots",
        "0",
        "--out",
        str(out),
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    assert len(RunStore(out).rows()) == 2
    assert _grep(out, PLANTED) == [] and _grep(tmp_path / "cache", PLANTED) == []
    assert PLANTED not in p.stdout + p.stderr
