"""The response cache: keyed by model identity, exact request and generation parameters; an identical
compare makes zero model calls; --no-cache turns it off; failures are never cached."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.endpoints.cache import ResponseCache, request_key
from harness.endpoints.client import Endpoint
from harness.prompting import build_prompt
from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def _ep(url="http://127.0.0.1:8000/v1", model="m", api="completions", root=None) -> Endpoint:
    ep = Endpoint(url, model, api, "HARNESS_TEST_KEY")
    ep.info = {"root": root} if root else {}
    return ep


def _key(ep: Endpoint, prompt=None, schema=SCHEMA, max_tokens=100) -> str:
    prompt = prompt or build_prompt("instructions", [], "context", "question?")
    return request_key(ep.identity(), *ep.request(prompt, schema, max_tokens))


def test_key_is_model_identity_exact_request_and_generation_parameters(monkeypatch):
    base = _key(_ep(root="/models/a"))
    assert _key(_ep(root="/models/a")) == base
    assert _key(_ep("http://localhost:9999/v1", root="/models/a")) == base  # a local server's port changes
    assert _key(_ep(root="/models/b")) != base  # other weights under the same name
    assert _key(_ep(model="other", root="/models/a")) != base
    assert _key(_ep("https://api.example.com/v1", root="/models/a")) != base
    assert _key(_ep(api="chat", root="/models/a")) != base
    assert _key(_ep(root="/models/a"), prompt=build_prompt("instructions", [], "context", "question!")) != base
    assert _key(_ep(root="/models/a"), max_tokens=101) != base
    assert _key(_ep(root="/models/a"), schema={"type": "object"}) != base
    assert _key(_ep(root="/models/a"), schema=None) != base
    monkeypatch.setenv("HARNESS_TEST_KEY", "sk-one")
    one = _key(_ep(root="/models/a"))
    monkeypatch.setenv("HARNESS_TEST_KEY", "sk-two")
    assert _key(_ep(root="/models/a")) == one == base  # the key is no part of it


def test_store_and_read_back_across_connections(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as c:
        c.put_many([("k1", {"completion": {"text": "x", "latency_s": 1.0}}), ("k2", {"v": 2})])
        assert len(c) == 2
    with ResponseCache(tmp_path / "c.sqlite") as c:
        assert c.get_many(["k1", "k2", "k3"]) == {"k1": {"completion": {"text": "x", "latency_s": 1.0}}, "k2": {"v": 2}}
        assert c.get("nope") is None


def test_a_directory_gets_the_default_file_name(tmp_path):
    with ResponseCache(tmp_path / "dir") as c:
        assert c.path == tmp_path / "dir" / "responses.sqlite"


def test_an_unusable_cache_is_a_one_line_error(tmp_path):
    from harness.errors import UsageError

    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UsageError, match="--no-cache"):
        ResponseCache(bad)


# -- through the CLI, against the stand-in server (it counts the requests it answers) -----------------
def _compare(url, out, *args):
    # 9 queries with 9 different prompts (a haystack long enough for the depths to differ)
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
        "3",
        "-s",
        "full-context",
        "--out",
        str(out),
        *args,
    ]


def _stats(url):
    return httpx.get(url.removesuffix("/v1") + "/__stats").json()


@pytest.fixture
def standin():
    with fake_openai.running() as url:
        yield url


def _env(cache):
    env = dict(os.environ, HARNESS_RESPONSE_CACHE=str(cache), TOKENIZERS_PARALLELISM="false")
    env.pop("OPENAI_API_KEY", None)
    return env


def test_identical_compare_makes_zero_model_calls_and_no_cache_turns_it_off(standin, tmp_path):
    env = _env(tmp_path / "responses.sqlite")
    p = subprocess.run(_compare(standin, tmp_path / "a"), env=env, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    first = _stats(standin)
    assert first["generations"] == 9
    p = subprocess.run(_compare(standin, tmp_path / "b"), env=env, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    second = _stats(standin)
    assert second["generations"] == first["generations"]  # zero model calls
    a, b = RunStore(tmp_path / "a").rows(), RunStore(tmp_path / "b").rows()
    assert all(r["from_cache"] and r["attempts"] == 0 for r in b) and not any(r["from_cache"] for r in a)
    key = lambda r: (r["strategy"], r["sample_id"])  # noqa: E731
    for ra, rb in zip(sorted(a, key=key), sorted(b, key=key)):
        for f in ("raw", "answer", "score", "marks", "prompt_tokens", "prompt_tokens_counted"):
            assert ra[f] == rb[f]
    p = subprocess.run(
        _compare(standin, tmp_path / "c", "--no-cache"), env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert p.returncode == 0, p.stderr
    assert _stats(standin)["generations"] == first["generations"] + 9
    assert not any(r["from_cache"] for r in RunStore(tmp_path / "c").rows())


def test_failures_are_not_cached(tmp_path):
    proc, url = fake_openai.start_subprocess("--echo-auth")  # every 5th generation: HTTP 500
    try:
        env = _env(tmp_path / "responses.sqlite")
        p = subprocess.run(
            _compare(url, tmp_path / "a", "--max-retries", "0", "--concurrency", "1"),
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert p.returncode == 0, p.stderr
        recs = RunStore(tmp_path / "a").rows()
        failed = [r for r in recs if r["error"]]
        assert len(failed) == 1 and "HTTP 500" in failed[0]["error"]
        with sqlite3.connect(tmp_path / "responses.sqlite") as db:
            (n,) = db.execute("SELECT COUNT(*) FROM responses").fetchone()
        assert n == 8  # the 8 answers, not the failure
        # the rerun asks the failed query again (the stand-in answers it now) and nothing else
        before = _stats(url)["generations"]
        p = subprocess.run(_compare(url, tmp_path / "a"), env=env, capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        assert _stats(url)["generations"] == before + 2  # request 10 is a 500 again, its retry succeeds
        assert not any(r.error for r in RunStore(tmp_path / "a").latest_records())
    finally:
        proc.kill()
        proc.wait()


# -- the real server -------------------------------------------------------------------------------
@pytest.mark.server
def test_identical_compare_on_the_real_server_is_free(vllm_server, tmp_path, monkeypatch):
    from harness.api import compare as run_compare
    from harness.config import EndpointConfig, RunConfig
    from harness.endpoints import client as client_mod

    sent = []
    real_send = client_mod.Session.send

    async def counting(self, path, body):
        sent.append(path)
        return await real_send(self, path, body)

    monkeypatch.setattr(client_mod.Session, "send", counting)
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "responses.sqlite"))
    for out in ("first", "second"):
        config = RunConfig(
            strategies=["full-context", "rag-dense"],
            lengths=[400, 800],
            depths=[0.0, 100.0],
            needles=1,
            shots=1,
            out=tmp_path / out,
            endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
        )
        run_compare(config)
        if out == "first":
            n_first = len(sent)
    assert n_first > 0 and len(sent) == n_first  # the identical rerun: zero model calls
    first, second = RunStore(tmp_path / "first").rows(), RunStore(tmp_path / "second").rows()
    assert len(second) == len(first) == 8 and all(r["from_cache"] for r in second)
    assert sorted(r["score"] for r in first) == sorted(r["score"] for r in second)
    # How much faster the rerun is belongs to the bench (bench/overhead.py): timed here,
    # a first run that found a warm prefix cache on the shared server made a 4x rerun fail a 5x bound.


def test_identical_requests_in_one_run_are_asked_once_and_share_the_answer(tmp_path):
    """At 300 tokens several depths give the very same prompt. vLLM may answer the same temperature-0
    request differently from one time to the next (its prefix cache changes the arithmetic), so the
    harness asks once and records that answer for each: the cache then holds what every record says."""
    out = tmp_path / "run"
    with fake_openai.running("--latency", "0.2") as url:
        p = subprocess.run(
            [
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
                "300",
                "--depths",
                "0,25,50,75,100",
                "--needles",
                "1",
                "-s",
                "full-context",
                "--shots",
                "0",
                "--concurrency",
                "4",
                "--out",
                str(out),
            ],
            env=_env(tmp_path / "responses.sqlite"),
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert p.returncode == 0, p.stderr
        asked = _stats(url)["generations"]
    rows = RunStore(out).rows()
    assert len(rows) == 5 and asked < 5  # some depths coincide at this length; all 5 were in flight at once
    assert sum(not r["from_cache"] for r in rows) == asked  # each distinct request asked once
