"""The simulated reader (bench/sim_reader.py) and the adaptive bench's bookkeeping (bench/adaptive.py).

The reader stands in for a real long-context model in bench/adaptive.py: it must answer the gold
when the needle is shown, the null answer when it is not (a name in the question or the shots does
not count), the same answer for the same prompt, and worse with length and in the middle. Reader
tests call it directly on prompts built by harness/prompting.py from real scenario samples; one
test goes through HTTP, and one runs `harness compare` against it and reads the run folder with the
bench's own functions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness import registry
from harness.prompting import build_prompt
from harness.scenario import Shot

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import adaptive  # noqa: E402
import sim_reader  # noqa: E402


def _count(texts):
    return [max(1, len(t) // 4) for t in texts]  # the reader's own measure: characters / 4


@pytest.fixture(scope="module")
def scen():
    return registry.get("scenario", "bio-needle")(seed=0)


def _samples(scen, lengths, depths=(0, 50, 100), needles=4):
    return scen.samples(list(lengths), list(depths), needles, _count)


def _prompt(scen, sample, documents=None, shots=()):
    docs = sample.documents if documents is None else documents
    return build_prompt(scen.instructions, list(shots), "\n\n".join(d.text for d in docs), sample.question)


def _accuracy(scen, reader, samples):
    marks = [m for s in samples for m in scen.score(reader.answer(_prompt(scen, s).text), s.gold).values()]
    return sum(marks) / len(marks)


def test_perfect_reader_answers_the_gold_in_both_prompt_forms(scen):
    reader = sim_reader.Reader(seed=0, max_needles=8, base=1.0, decay=0.0, middle=0.0)
    samples = _samples(scen, [600])
    assert len(samples) == 12
    for s in samples:
        p = _prompt(scen, s, shots=scen.shots(2))
        scored = {f: s.gold[f] for f in scen.fields}  # gold also holds the unscored occupation
        assert reader.answer(p.text) == scored
        assert reader.answer(p.messages) == scored


def test_absent_needle_gets_the_null_answer_even_when_named_in_question_and_shots(scen):
    reader = sim_reader.Reader(seed=0, max_needles=8, base=1.0, decay=0.0, middle=0.0)
    for s in _samples(scen, [600], depths=[50], needles=3):
        without = [d for d in s.documents if d.id not in s.gold_ids]
        assert len(without) == len(s.documents) - 1
        needle = next(d for d in s.documents if d.id in s.gold_ids)
        # The needle's biography shown only as a worked example: not the task's context.
        shot = Shot(documents=[needle], question=s.question, answer=s.gold)
        p = _prompt(scen, s, documents=without, shots=[shot])
        assert s.subject in p.text
        assert reader.answer(p.text) == sim_reader.NULL_ANSWER
        assert reader.answer(p.messages) == sim_reader.NULL_ANSWER
    # An unknown subject (beyond --max-needles) is not answered from anything either.
    far = _samples(scen, [600], depths=[0], needles=10)[-1]
    assert reader.answer(_prompt(scen, far).text) == sim_reader.NULL_ANSWER


def test_same_prompt_same_answer_and_prompts_differ(scen):
    a = sim_reader.Reader(seed=0, max_needles=8, base=0.6, decay=0.0, middle=0.0)
    b = sim_reader.Reader(seed=0, max_needles=8, base=0.6, decay=0.0, middle=0.0)
    samples = _samples(scen, [600, 1200])
    answers = []
    for s in samples:
        text = _prompt(scen, s).text
        first = a.answer(text)
        assert a.answer(text) == first == b.answer(text)  # temperature-0 semantics, across processes too
        answers.append(json.dumps(scen.score(first, s.gold), sort_keys=True))
    assert len(set(answers)) > 3  # the marks vary with needle, depth and length
    acc = _accuracy(scen, a, samples)
    assert 0.4 < acc < 0.8  # about base


def test_wrong_values_are_wrong_and_schema_valid(scen):
    from scenarios.bio_needle.loader import BioLabels

    reader = sim_reader.Reader(seed=0, max_needles=8, base=0.0, decay=0.0, middle=0.0)
    for s in _samples(scen, [600]):
        ans = reader.answer(_prompt(scen, s).text)
        BioLabels.model_validate(ans)
        assert not any(scen.score(ans, s.gold).values())
        assert ans != sim_reader.NULL_ANSWER


def test_accuracy_falls_with_decay_and_in_the_middle(scen):
    samples = _samples(scen, [2000], needles=8)
    flat = sim_reader.Reader(seed=0, max_needles=8, base=0.97, decay=0.0, middle=0.0)
    decaying = sim_reader.Reader(seed=0, max_needles=8, base=0.97, decay=0.2, middle=0.0)
    assert _accuracy(scen, flat, samples) > 0.85
    assert _accuracy(scen, decaying, samples) < _accuracy(scen, flat, samples) - 0.25
    middle = sim_reader.Reader(seed=0, max_needles=8, base=0.97, decay=0.0, middle=0.6)
    ends = [s for s in samples if s.depth in (0, 100)]
    mid = [s for s in samples if s.depth == 50]
    assert _accuracy(scen, middle, mid) < _accuracy(scen, middle, ends) - 0.3


def test_p_correct_formula():
    r = sim_reader.Reader(seed=0, max_needles=1, base=0.9, decay=0.1, middle=0.2)
    assert r.p_correct(0, 0.0) == pytest.approx(0.9)
    assert r.p_correct(0, 1.0) == pytest.approx(0.9)
    assert r.p_correct(2000, 0.5) == pytest.approx(0.9 - 0.2 - 0.2)
    assert r.p_correct(20000, 0.0) == 0.0
    assert sim_reader.Reader.locate("aaaa BIO", "x", "BIO") == 1.0
    assert sim_reader.Reader.locate("BIO aaaa", "x", "BIO") == 0.0
    assert sim_reader.Reader.locate("aaaa", "x", "BIO") is None
    assert sim_reader.Reader.locate("aa Ann Lee's chunk", "ann lee", "Ann Lee was") is not None


@pytest.fixture(scope="module")
def reader_url():
    with sim_reader.running("--base", "1", "--decay", "0.1", "--middle", "0", "--max-needles", "8") as url:
        yield url


def test_http_routes_answer_and_count(scen, reader_url):
    s = _samples(scen, [600], depths=[0], needles=1)[0]
    p = _prompt(scen, s)
    r = httpx.post(reader_url + "/completions", json={"model": "gemma-3-270m", "prompt": p.text}, timeout=30)
    assert r.status_code == 200
    body = r.json()
    ans = json.loads(body["choices"][0]["text"])
    # the route answers what the reader decides for this prompt (each field right with p ~ 0.97 here)
    same = sim_reader.Reader(seed=0, max_needles=8, base=1, decay=0.1, middle=0)
    assert ans == same.answer(p.text)
    assert sum(scen.score(ans, s.gold).values()) >= 3
    assert body["usage"]["prompt_tokens"] == len(p.text) // 4
    assert body["usage"]["completion_tokens"] == len(body["choices"][0]["text"]) // 4
    chat = httpx.post(
        reader_url + "/chat/completions", json={"model": "gemma-3-270m", "messages": p.messages}, timeout=30
    ).json()
    assert json.loads(chat["choices"][0]["message"]["content"]) == same.answer(p.messages)
    root = reader_url.removesuffix("/v1")
    assert httpx.post(root + "/tokenize", json={"prompt": "x" * 400}).json()["count"] == 100
    assert httpx.get(reader_url + "/models").json()["data"][0]["id"] == "gemma-3-270m"


def test_compare_against_the_reader_and_the_bench_reads_it(reader_url, tmp_path):
    """full-context through `harness compare`: accuracy falls with length; the bench's bookkeeping."""
    out = tmp_path / "full"
    env = dict(os.environ, HARNESS_RESPONSE_CACHE=str(tmp_path / "r.sqlite"), TOKENIZERS_PARALLELISM="false")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "compare",
            "--endpoint",
            reader_url,
            "--model",
            "gemma-3-270m",
            "--api",
            "completions",
            "-s",
            "full-context",
            "--lengths",
            "1k,4k",
            "--depths",
            "0,50,100",
            "--needles",
            "4",
            "--no-cache",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    acc = {r["length"]: r["accuracy"] for r in summary["by_strategy_length"]}
    assert acc[1000] > 0.85 and acc[4000] < acc[1000] - 0.15  # p ~ 0.9 vs ~ 0.6

    run = adaptive.read_run(out)
    assert set(run["lengths"]) == {1000, 4000}
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    for L, row in run["lengths"].items():
        mine = [r for r in recs if r["length"] == L]
        assert row["queries"] == len(mine) == 12 and row["needles"] == 4
        assert row["tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in mine)
    same = adaptive.compare_runs(run, run)
    assert same["total"]["token_ratio"] == 1.0 and same["total"]["lengths_agreeing"] == 2
    assert not same["total"]["target_met"]  # the same verdict, but not for a third of the tokens
    half = json.loads(json.dumps(run))
    half["lengths"] = {int(k): v for k, v in half["lengths"].items()}
    half["verdict"] = {int(k): v for k, v in half["verdict"].items()}
    for row in half["lengths"].values():
        row["tokens"] //= 4
    assert adaptive.compare_runs(run, half)["total"]["target_met"]
    half["verdict"][4000]["settled"] = not half["verdict"][4000]["settled"]
    res = adaptive.compare_runs(run, half)
    assert not res["total"]["target_met"] and res["total"]["lengths_agreeing"] == 1
    text = adaptive.table(res)
    assert "| 4,000" in text and "NO" in text and "NOT MET" in text
