"""Faults: retries with backoff, kill -9 at random points, a fault-injecting proxy, the model server
dying mid-run, Ctrl-C.

Unit tests drive the client through httpx.MockTransport; the stand-in server (bench/fake_openai.py,
canned answers, a process we may kill) covers what needs a server to die; `server` tests run
against the real vLLM server. vLLM on this CPU is not batch-invariant (the same prompt can get a
different greedy answer in a different batch), so where a real-server test compares answers it
either replays the model's answers through the response cache or sends one request at a time.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness.endpoints.client import (
    Endpoint,
    RequestFailed,
    RetryPolicy,
    _retry_after,
)
from harness.errors import EndpointError
from harness.prompting import Prompt
from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402

PROMPT = Prompt(text="hello", messages=[{"role": "user", "content": "hello"}])
OK_BODY = {
    "choices": [{"text": '{"a": 1}', "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4},
}


# -- the retry policy, through a mock transport ----------------------------------------------------
def _endpoint(timeout_s: float = 5.0, max_retries: int = 3) -> Endpoint:
    ep = Endpoint("http://model.test/v1", "m", "completions", None, timeout_s=timeout_s, max_retries=max_retries)
    ep.policy = RetryPolicy(max_retries=max_retries, base_s=0.001, cap_s=0.01)
    return ep


def _complete(ep: Endpoint, handler):
    async def go():
        async with ep.session(2, transport=httpx.MockTransport(handler)) as s:
            return await s.complete(PROMPT, None, 10)

    return asyncio.run(go())


def _script(*responses):
    """A handler answering POSTs from a list (status, headers) / exceptions, then 200s."""
    seen = []

    async def handler(request: httpx.Request):
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        seen.append(request)
        r = responses[len(seen) - 1] if len(seen) <= len(responses) else 200
        if isinstance(r, Exception):
            raise r
        if r == "hang":
            await asyncio.sleep(30)
        status, headers = (r, {}) if isinstance(r, int) else r
        return httpx.Response(status, json=OK_BODY if status == 200 else {"error": "x"}, headers=headers)

    return handler, seen


@pytest.mark.parametrize(
    "fault",
    [
        429,
        500,
        502,
        503,
        504,
        408,
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("closed"),
    ],
)
def test_transient_faults_are_retried_and_counted(fault):
    handler, seen = _script(fault, fault, 200)
    c = _complete(_endpoint(), handler)
    assert c.text == '{"a": 1}' and c.attempts == 3 and len(seen) == 3


def test_timeouts_are_retried_within_a_hard_deadline():
    handler, seen = _script("hang", 200)
    t0 = time.monotonic()
    c = _complete(_endpoint(timeout_s=0.3), handler)
    assert c.attempts == 2 and time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "fault,why",
    [(500, "HTTP 500"), ("hang", "timeout after 0.2 s"), (httpx.ReadError("reset by peer"), "connection error")],
)
def test_the_final_failure_is_bounded_and_has_a_reason(fault, why):
    handler, seen = _script(*[fault] * 10)
    with pytest.raises(RequestFailed) as e:
        _complete(_endpoint(timeout_s=0.2, max_retries=2), handler)
    assert e.value.attempts == 3 and len(seen) == 3
    assert why in e.value.reason and "after 3 attempts" in e.value.reason


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_client_errors_are_not_retried(status):
    handler, seen = _script(status)
    with pytest.raises(RequestFailed) as e:
        _complete(_endpoint(), handler)
    assert e.value.attempts == 1 and e.value.status == status and len(seen) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_ends_the_run(status):
    handler, _ = _script(status)
    with pytest.raises(EndpointError, match=str(status)):
        _complete(_endpoint(), handler)


def test_a_dead_server_ends_the_run_with_one_line():
    def handler(request):
        raise httpx.ConnectError("All connection attempts failed")

    with pytest.raises(EndpointError) as e:
        _complete(_endpoint(max_retries=2), handler)
    assert "lost the endpoint http://model.test/v1" in str(e.value) and "\n" not in str(e.value)


def test_backoff_is_exponential_jittered_capped_and_honours_retry_after():
    p = RetryPolicy(max_retries=8, base_s=0.5, cap_s=8.0, max_retry_after_s=60)
    for attempt in range(1, 9):
        full = min(8.0, 0.5 * 2 ** (attempt - 1))
        ds = [p.delay(attempt) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in ds)
        assert len(set(ds)) > 100  # jitter: concurrent retries spread out
    assert p.delay(1, retry_after=5) >= 5
    assert p.delay(1, retry_after=10_000) == 60
    assert _retry_after(httpx.Headers({"retry-after": "3"})) == 3
    assert _retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert _retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0
    assert _retry_after(httpx.Headers({"retry-after": "soon"})) is None


def test_retry_after_is_waited_for(monkeypatch):
    waits = []
    real = RetryPolicy.delay
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, a, ra=None: waits.append(ra) or real(self, a, ra))
    handler, _ = _script((429, {"retry-after": "0.05"}), 200)
    _complete(_endpoint(), handler)
    assert waits == [0.05]


# -- the runner: final failures are recorded, the run goes on, resume redoes them -------------------
def _bio(tmp_path, count):
    from harness.api import build_scenario, build_strategies
    from harness.config import RunConfig

    config = RunConfig(strategies=["full-context"], lengths=[300], depths=[0.0, 50.0, 100.0], needles=2, shots=0)
    scen = build_scenario(config)
    strategies = build_strategies(config, tmp_path / "cache", count)
    samples = scen.samples(config.lengths, config.depths, config.needles, count)
    return scen, strategies, samples


def test_failed_queries_are_recorded_and_redone_on_resume(tmp_path, monkeypatch):
    from harness import runner
    from harness.endpoints import client as client_mod

    def count(texts):
        return [max(1, len(t) // 4) for t in texts]

    from harness.prompting import build_prompt

    scen, strategies, samples = _bio(tmp_path, count)
    answer = json.dumps(fake_openai.ANSWER)
    prompts = {
        s.id: build_prompt(scen.instructions, [], strategies[0].show(s).context, s.question).text for s in samples
    }
    doomed = prompts[samples[2].id]
    doomed_ids = {i for i, p in prompts.items() if p == doomed}  # short haystacks: depths can coincide
    broken = {"on": True}
    seen = collections.Counter()

    def handler(request: httpx.Request):
        prompt = json.loads(request.content)["prompt"]
        seen[prompt] += 1
        if broken["on"] and prompt == doomed:
            return httpx.Response(500, json={"error": "boom"})
        if seen[prompt] == 1:
            return httpx.Response(503, json={"error": "busy"})  # every request fails once, then succeeds
        return httpx.Response(200, json={"choices": [{"text": answer, "finish_reason": "stop"}]})

    real_session = client_mod.Endpoint.session
    monkeypatch.setattr(
        client_mod.Endpoint,
        "session",
        lambda self, n=8, transport=None: real_session(self, n, httpx.MockTransport(handler)),
    )
    ep = _endpoint(max_retries=2)
    ep._tokenize_ok = False  # a hosted API: no /tokenize
    store = RunStore(tmp_path / "run").create()
    kw = dict(
        run_id="r",
        scenario=scen,
        strategies=strategies,
        samples=samples,
        endpoint=ep,
        store=store,
        shots=[],
        concurrency=3,
        max_tokens=50,
        window=None,
    )
    assert runner.run(**kw).planned == 6
    recs = store.rows()
    assert len(recs) == 6
    failed = [r for r in recs if r["error"]]
    assert {r["sample_id"] for r in failed} == doomed_ids and len(failed) == len(doomed_ids) < 6
    assert "HTTP 500" in failed[0]["error"] and failed[0]["attempts"] == 3 and failed[0]["valid"] is False
    ok = [r for r in recs if not r["error"]]
    assert all(r["valid"] for r in ok) and {r["attempts"] for r in ok} <= {1, 2} and any(r["attempts"] == 2 for r in ok)
    broken["on"] = False
    assert runner.run(**kw).planned == len(doomed_ids)  # only the failed queries are asked again
    latest = store.latest_records()
    assert len(latest) == 6 and not any(r.error for r in latest)


# -- the store under kills --------------------------------------------------------------------------------
def test_one_run_folder_one_writer(tmp_path):
    from harness.errors import UsageError

    store = RunStore(tmp_path / "run")
    with store.lock():
        with pytest.raises(UsageError, match="in use by another harness process"):
            with RunStore(tmp_path / "run").lock():
                pass
    with RunStore(tmp_path / "run").lock():  # released with its holder
        pass


def test_a_torn_multibyte_line_mid_file_is_skipped_not_fatal(tmp_path):
    """A kill can cut a write inside a UTF-8 character; the next append starts a fresh line after it."""
    store = RunStore(tmp_path).create()
    store.append({"strategy": "a", "sample_id": "s1", "raw": "Zoë"})
    line = json.dumps({"strategy": "a", "sample_id": "s2", "raw": "Zoë"}, ensure_ascii=False).encode()
    with open(store.records_path, "ab") as f:
        f.write(line[: line.index("ë".encode()) + 1])  # half of the two-byte ë
    store.append_many(
        [
            {"strategy": "a", "sample_id": "s2", "raw": "Zoë"},
            {"strategy": "a", "sample_id": "s3", "raw": "\ud800 lone surrogate"},
        ]
    )
    assert [r["sample_id"] for r in store.rows()] == ["s1", "s2", "s3"]
    assert store.rows()[2]["raw"] == "\ud800 lone surrogate"


# -- subprocess helpers -------------------------------------------------------------------------------
def _env(cache: Path | None = None, **extra) -> dict[str, str]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", **extra)
    env.pop("OPENAI_API_KEY", None)
    if cache is not None:
        env["HARNESS_RESPONSE_CACHE"] = str(cache)
    return env


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
        "--out",
        str(out),
        *args,
    ]


def _run(cmd, env, timeout=600) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return p


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_at(cmd, env, out: Path, rng: random.Random, max_delay: float, n_records: int) -> str:
    """Start a compare, SIGKILL it at a random moment; how the moment was chosen."""
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if rng.random() < 0.5:  # a random time after start
            delay = rng.uniform(0.2, max_delay)
            how = f"after {delay:.2f} s"
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.01)
        else:  # right after the k-th record reached the file, when the next writes are in flight
            k = rng.randint(1, max(1, n_records - 1))
            how = f"at record {k}"
            deadline = time.monotonic() + 3 * max_delay + 30
            while _lines(out / "records.jsonl") < k and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
        how += " (had finished)" if p.poll() is not None else ""
    finally:
        p.kill()
        p.wait()
    return how


def _check_file_integrity(out: Path, expected_keys: set) -> dict:
    """Every line but torn ones is a complete record; one answered record per query; all queries there."""
    raw_lines = [l for l in (out / "records.jsonl").read_bytes().split(b"\n") if l.strip()]
    parsed = []
    for line in raw_lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue  # a torn line (killed mid-write); it must not have become a record
    assert len(raw_lines) - len(parsed) <= 20
    answered = collections.Counter((r["strategy"], r["sample_id"]) for r in parsed if not r.get("error"))
    dupes = {k: n for k, n in answered.items() if n > 1}
    assert not dupes, f"duplicated records: {dupes}"
    latest = {r.key: r.to_json() for r in RunStore(out).latest_records()}
    assert set(latest) == expected_keys
    assert not any(r["error"] for r in latest.values())
    return latest


SAME = (
    "raw",
    "answer",
    "valid",
    "invalid_reason",
    "marks",
    "score",
    "prompt_tokens",
    "prompt_tokens_counted",
    "completion_tokens",
    "gold",
    "shown",
    "length",
    "depth",
    "needle_index",
    "context_tokens",
)


def _assert_same(got: dict, want: dict, fields=SAME):
    for k in want:
        for f in fields:
            assert got[k][f] == want[k][f], (k, f, got[k][f], want[k][f])


# -- kill -9 at random points: the stand-in server (many kill points in the writing phase) ---------
def test_kill9_at_random_points_loses_and_duplicates_nothing_standin(tmp_path):
    proc, url = fake_openai.start_subprocess("--latency", "0.01")
    try:
        grid = [
            "--lengths",
            "300",
            "--depths",
            ",".join(str(d) for d in range(0, 101, 5)),
            "--needles",
            "5",
            "-s",
            "full-context",
            "--shots",
            "1",
            "--concurrency",
            "8",
            "--no-cache",
        ]
        t0 = time.monotonic()
        ref = _run(_compare(url, tmp_path / "ref", *grid), _env())
        t_ref = time.monotonic() - t0
        assert ref.returncode == 0, ref.stderr[-2000:]
        want = {(r["strategy"], r["sample_id"]): r for r in RunStore(tmp_path / "ref").rows()}
        assert len(want) == 105
        rng = random.Random(1)
        for trial in range(10):
            out = tmp_path / f"t{trial}"
            how = _kill_at(_compare(url, out, *grid), _env(), out, rng, t_ref, len(want))
            again = _run(_compare(url, out, *grid), _env())
            assert again.returncode == 0, (how, again.stderr[-2000:])
            _assert_same(_check_file_integrity(out, set(want)), want)
    finally:
        proc.kill()
        proc.wait()


# -- kill -9 at random points: the real server --------------------------------------------------------
def _cache_keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [k for (k,) in db.execute("SELECT key FROM responses ORDER BY key")]


def _forget(path: Path, keys: list[str]) -> None:
    with sqlite3.connect(path) as db:
        db.executemany("DELETE FROM responses WHERE key = ?", [(k,) for k in keys])


def _request_keys(config, url: str, model: str, cache_dir: Path) -> dict:
    """(strategy, sample id) -> the response-cache key of its request, computed as the runner does."""
    from harness.api import build_scenario, build_strategies
    from harness.endpoints.client import Endpoint
    from harness.query import Asker, Query

    ep = Endpoint(url, model, "completions", None)
    ep.describe()
    scen = build_scenario(config)
    strategies = build_strategies(config, cache_dir, ep.count_tokens)
    samples = scen.samples(config.lengths, config.depths, config.needles, ep.count_tokens)
    asker = Asker(ep, None, max_tokens=config.endpoint.max_tokens, window=None, concurrency=1)
    out = {}
    for st in strategies:
        st.prepare(samples)
        for s in samples:
            q = Query(asker, s, scen, scen.shots(config.shots), st.label)
            (prompt,) = st.preflight(s, q)
            out[(st.label, s.id)] = asker.key(asker.request(prompt, q.schema, asker.max_tokens))
    return out


@pytest.mark.server
def test_kill9_at_random_points_real_server(vllm_server, tmp_path, monkeypatch):
    """6 trials (the stand-in test above has the many kill points; each trial here costs two harness
    process starts and real model calls). Each starts from the reference run's response cache with a random few answers removed,
    so every trial asks the real model for some queries and the kill can land while requests are in
    flight and records are being written. After the rerun, the records equal an uninterrupted run over
    the same model answers (a replay of the trial's cache), and equal the reference wherever the answer
    came from it: nothing lost, nothing duplicated, nothing torn."""
    from harness.api import compare as run_compare
    from harness.config import EndpointConfig, RunConfig

    # full-context only: a retrieval arm adds seconds of imports to every process start, not coverage
    grid = [
        "--lengths",
        "500,800",
        "--depths",
        "0,50,100",
        "--needles",
        "2",
        "-s",
        "full-context",
        "--shots",
        "0",
        "--concurrency",
        "4",
    ]
    url = vllm_server.base_url
    ref_cache = tmp_path / "ref.sqlite"
    t0 = time.monotonic()
    ref = _run(_compare(url, tmp_path / "ref", *grid), _env(ref_cache))
    t_ref = time.monotonic() - t0
    assert ref.returncode == 0, ref.stderr[-2000:]
    want = {(r["strategy"], r["sample_id"]): r for r in RunStore(tmp_path / "ref").rows()}
    assert len(want) == 12
    all_keys = _cache_keys(ref_cache)
    assert len(all_keys) == 12  # 12 different prompts

    def config(out):
        return RunConfig(
            strategies=["full-context"],
            lengths=[500, 800],
            depths=[0.0, 50.0, 100.0],
            needles=2,
            shots=0,
            out=out,
            endpoint=EndpointConfig(url=url, model=vllm_server.model, api="completions", concurrency=4),
        )

    key_of = _request_keys(config(None), url, vllm_server.model, tmp_path / "cache")
    assert sorted(key_of.values()) == all_keys
    rng = random.Random(6)
    for trial in range(6):
        out, cache = tmp_path / f"t{trial}", tmp_path / f"t{trial}.sqlite"
        shutil.copy(ref_cache, cache)
        forgotten = rng.sample(all_keys, rng.randint(2, 4))
        _forget(cache, forgotten)
        how = _kill_at(_compare(url, out, *grid), _env(cache), out, rng, t_ref, len(want))
        again = _run(_compare(url, out, *grid), _env(cache))
        assert again.returncode == 0, (how, again.stderr[-2000:])
        got = _check_file_integrity(out, set(want))
        # An uninterrupted run over the same model answers: replayed from the trial's cache.
        monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(cache))
        replay_out = tmp_path / f"replay{trial}"
        run_compare(config(replay_out))
        replay = {(r["strategy"], r["sample_id"]): r for r in RunStore(replay_out).rows()}
        assert all(r["from_cache"] for r in replay.values())  # zero model calls
        _assert_same(got, replay)
        assert _cache_keys(cache) == all_keys, how  # the model was asked for the forgotten ones
        from_ref = [k for k in want if key_of[k] not in forgotten]
        _assert_same({k: got[k] for k in from_ref}, {k: want[k] for k in from_ref})


# -- a fault-injecting proxy in front of the real server ------------------------------------------------
def _start_proxy(target: str, *args: str):
    return fake_openai.start_subprocess("--target", target, *args, script=str(ROOT / "bench" / "fault_proxy.py"))


@pytest.mark.server
def test_fault_proxy_20_percent_errors_same_scores_as_a_clean_run(vllm_server, tmp_path, monkeypatch):
    """20% of requests (generation, /tokenize, /models) get 429, 500 or a timeout. One request at a time,
    so the server sees the same requests in the same batches as the clean run, and answers the same."""
    from harness.api import compare as run_compare
    from harness.config import EndpointConfig, RunConfig

    def config(url: str, out: str) -> RunConfig:
        return RunConfig(
            strategies=["full-context"],
            lengths=[300],
            depths=[0.0, 50.0, 100.0],
            needles=2,
            shots=0,
            endpoint=EndpointConfig(
                url=url, model=vllm_server.model, api="completions", concurrency=1, timeout_s=12, max_retries=8
            ),
            out=tmp_path / out,
        )

    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "clean.sqlite"))
    run_compare(config(vllm_server.base_url, "warm"))  # warms the server's prefix cache for both runs
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "clean2.sqlite"))
    run_compare(config(vllm_server.base_url, "clean"))
    proxy, purl = _start_proxy(vllm_server.root_url, "--rate", "0.2", "--seed", "3", "--force-first")
    try:
        monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "faulty.sqlite"))
        run_compare(config(purl, "faulty"))
        faults = httpx.get(purl.removesuffix("/v1") + "/__faults").json()
    finally:
        proxy.kill()
        proxy.wait()
    assert faults["429"] >= 1 and faults["500"] >= 1 and faults["timeout"] >= 1, faults
    clean = {(r["strategy"], r["sample_id"]): r for r in RunStore(tmp_path / "clean").rows()}
    faulty = RunStore(tmp_path / "faulty").rows()
    assert len(faulty) == len(clean) == 6  # one record each: no failed attempt was recorded
    got = {(r["strategy"], r["sample_id"]): r for r in faulty}
    assert not any(r["error"] for r in faulty)
    # retried, and counted: more attempts than requests that were sent (a query whose request repeats an
    # earlier one's shares its answer and records 0 attempts; counting those made this a roll of the dice)
    assert sum(r["attempts"] for r in faulty) > sum(1 for r in faulty if r["attempts"])
    assert not any("injected" in (r["raw"] or "") for r in faulty)
    _assert_same(got, clean, ("raw", "answer", "marks", "score", "prompt_tokens", "prompt_tokens_counted"))

    def scores(run):  # the accuracy columns (time and money columns differ, naturally)
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        keep = ["strategy", "n", "accuracy", "valid_rate", "failed", *summary["fields"]]
        return [{k: row.get(k) for k in keep} for row in summary["by_strategy"]]

    assert scores("faulty") == scores("clean")


# -- the model server dies mid-run -----------------------------------------------------------------------
def test_model_server_dying_mid_run_one_line_records_kept_resume_finishes(tmp_path):
    # --no-cache: at 300 tokens some depths give the same prompt, which the cache would answer in-run
    grid = [
        "--lengths",
        "300",
        "--depths",
        "0,25,50,75,100",
        "--needles",
        "2",
        "-s",
        "full-context",
        "--shots",
        "0",
        "--concurrency",
        "2",
        "--no-cache",
    ]
    env = _env(tmp_path / "cache.sqlite")
    proc, url = fake_openai.start_subprocess("--exit-after", "5")
    try:
        p = _run(_compare(url, tmp_path / "run", *grid), env, timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert p.returncode == 3, p.stderr[-2000:]
    err = [line for line in p.stderr.strip().splitlines() if not line.startswith("queries ")]  # progress bar
    assert len(err) == 1 and "lost the endpoint" in err[0] and "Traceback" not in p.stderr, p.stderr
    kept = RunStore(tmp_path / "run").rows()
    assert 3 <= len(kept) <= 5 and not any(r["error"] for r in kept)
    proc, url2 = fake_openai.start_subprocess()
    try:
        p = _run(
            [sys.executable, "-m", "harness.cli", "compare", "--resume", str(tmp_path / "run"), "--endpoint", url2],
            env,
            timeout=120,
        )
    finally:
        proc.kill()
        proc.wait()
    assert p.returncode == 0, p.stderr[-2000:]
    recs = RunStore(tmp_path / "run").rows()
    assert len(recs) == 10 == len({(r["strategy"], r["sample_id"]) for r in recs})
    assert [r["sample_id"] for r in recs[: len(kept)]] == [r["sample_id"] for r in kept]


# -- Ctrl-C ---------------------------------------------------------------------------------------------------
def _interrupt_when(p: subprocess.Popen, records: Path, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while _lines(records) < n and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.poll() is None, "finished before it could be interrupted"
    p.send_signal(signal.SIGINT)


def test_ctrl_c_cancels_in_flight_requests_keeps_records_and_resumes(tmp_path):
    grid = [
        "--lengths",
        "300",
        "--depths",
        ",".join(str(d) for d in range(0, 101, 10)),
        "--needles",
        "4",
        "-s",
        "full-context",
        "--shots",
        "0",
        "--concurrency",
        "4",
        "--no-cache",
    ]
    proc, url = fake_openai.start_subprocess("--latency", "0.5")
    try:
        out = tmp_path / "run"
        p = subprocess.Popen(
            _compare(url, out, *grid), env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _interrupt_when(p, out / "records.jsonl", 4)
            t0 = time.monotonic()
            _, stderr = p.communicate(timeout=30)
        finally:
            p.kill()
            p.wait()
        assert time.monotonic() - t0 < 3  # in-flight requests cancelled, not waited for (44 x 0.5 s / 4 left)
        assert p.returncode == 130, stderr
        assert "Traceback" not in stderr and f"--resume {out}" in stderr.strip().splitlines()[-1]
        kept = RunStore(out).rows()
        assert 4 <= len(kept) < 44
        again = _run([sys.executable, "-m", "harness.cli", "compare", "--resume", str(out), "--no-cache"], _env())
        assert again.returncode == 0, again.stderr[-2000:]
        recs = RunStore(out).rows()
        assert len(recs) == 44 == len({r["sample_id"] for r in recs})
    finally:
        proc.kill()
        proc.wait()


_EMBEDDED_DRIVER = r"""
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import fake_openai
from harness.endpoints import vllm_server
PIDFILE = sys.argv[2]

class Fake:
    model = "gemma-3-270m"
    model_path = "gemma-3-270m"
    plan = None
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, fake_openai.__file__, "--port", "0", "--latency", "0.5"],
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.base_url = self.proc.stdout.readline().split()[1]
        open(PIDFILE, "w").write(str(self.proc.pid))
    def is_running(self):
        return self.proc.poll() is None
    def stop(self):
        self.proc.terminate()
        self.proc.wait()

vllm_server.start_embedded = lambda *a, **kw: Fake()
vllm_server.start_server = lambda *a, **kw: Fake()
sys.argv = ["harness"] + sys.argv[3:]
from harness.cli import main
main()
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_ctrl_c_stops_the_server_the_harness_started(tmp_path):
    """Without --endpoint the harness starts the server (here a stand-in for vLLM, in its own session as
    vLLM is); Ctrl-C stops it and the run resumes."""
    out, pidfile = tmp_path / "run", tmp_path / "server.pid"
    args = [
        "compare",
        "--lengths",
        "300",
        "--depths",
        "0,50,100",
        "--needles",
        "4",
        "-s",
        "full-context",
        "--shots",
        "0",
        "--concurrency",
        "2",
        "--no-cache",
        "--out",
        str(out),
    ]
    driver = tmp_path / "driver.py"
    driver.write_text(_EMBEDDED_DRIVER)
    cmd = [sys.executable, str(driver), str(ROOT / "bench"), str(pidfile), *args]
    p = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _interrupt_when(p, out / "records.jsonl", 2, timeout=120)
        _, stderr = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
        pid = int(pidfile.read_text()) if pidfile.exists() else None
        alive = pid is not None and _pid_alive(pid)
        if alive:
            os.kill(pid, signal.SIGKILL)
    assert pid is not None, stderr
    assert p.returncode == 130, stderr
    assert not alive, "the server the harness started is still running"
    assert "--resume" in stderr.strip().splitlines()[-1]
    again = _run(cmd, _env(), timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(RunStore(out).latest_records()) == 12 == len(RunStore(out).rows())


@pytest.mark.server
def test_ctrl_c_against_the_real_server_then_resume(vllm_server, tmp_path):
    grid = [
        "--lengths",
        "300",
        "--depths",
        "0,50,100",
        "--needles",
        "2",
        "-s",
        "full-context",
        "--shots",
        "0",
        "--concurrency",
        "2",
        "--no-cache",
    ]
    out = tmp_path / "run"
    p = subprocess.Popen(
        _compare(vllm_server.base_url, out, *grid),
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _interrupt_when(p, out / "records.jsonl", 1)
        _, stderr = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 130 and "Traceback" not in stderr, stderr
    kept = RunStore(out).rows()
    assert 1 <= len(kept) < 6
    again = _run([sys.executable, "-m", "harness.cli", "compare", "--resume", str(out), "--no-cache"], _env())
    assert again.returncode == 0, again.stderr[-2000:]
    recs = RunStore(out).rows()
    assert len(recs) == 6 == len({r["sample_id"] for r in recs})
    assert recs[: len(kept)] == kept


def test_a_request_cancelled_mid_flight_does_not_wedge_its_connection():
    """httpcore can leave a connection marked busy when a request is cancelled in flight; the session
    drops that client, so the next request on the session is answered instead of waiting forever."""
    from harness.endpoints.client import Endpoint
    from harness.prompting import build_prompt

    with fake_openai.running("--latency", "0.5") as url:
        ep = Endpoint(url, "gemma-3-270m", "completions", None, timeout_s=30, max_retries=0)

        async def go():
            async with ep.session(1) as s:  # one client: a wedged connection would block everything
                req = ep.request(build_prompt("i", [], "c", "q"), None, 5)
                t = asyncio.ensure_future(s.send(*req))
                await asyncio.sleep(0.1)
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
                return await asyncio.wait_for(s.send(*req), timeout=10)

        assert asyncio.run(go()).text
