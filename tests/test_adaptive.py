"""`harness compare --until-decided`: rounds of needles per length, stopping where the verdict is settled.

The stopping rule is checked against bench/sim_reader.py (a stand-in reader whose accuracy
depends on what the prompt holds: the only model here is near chance, so nothing would ever
settle on it) with the real BM25 arm; the rounds themselves run against the real vLLM server in
`test_rounds_on_the_real_server`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import sim_reader  # noqa: E402


def harness(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reader_url():
    # Full context loses 20 points per 1k tokens: hopeless at 4k, close to retrieval at 1k.
    with sim_reader.running("--base", "1", "--decay", "0.2", "--middle", "0", "--max-needles", "16") as url:
        yield url


def adaptive_args(url: str, out: Path) -> list[str]:
    return ["compare", "--endpoint", url, "--model", "gemma-3-270m", "--api", "completions",
            "-s", "full-context,rag-bm25", "--lengths", "1k,4k", "--depths", "0,100", "--until-decided",
            "--needles", "8", "--max-needles", "16", "--no-cache", "--out", str(out)]


def test_settled_lengths_get_no_more_needles_and_resume_takes_the_same_path(reader_url, tmp_path):
    env = dict(os.environ, HARNESS_RESPONSE_CACHE=str(tmp_path / "r.sqlite"))
    out = tmp_path / "adaptive"
    p = harness(*adaptive_args(reader_url, out), env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["needles"] == 8 and rounds[0]["alpha"] == pytest.approx(0.025)  # two planned looks
    assert 4000 in rounds[0]["settled"]  # 8 needles, every one far better with retrieval
    recs = records(out)
    needles = {L: 1 + max(r["needle_index"] for r in recs if r["length"] == L) for L in (1000, 4000)}
    assert needles[4000] == 8  # settled after round one: no more needles there
    assert needles[1000] == (8 if 1000 in rounds[0]["settled"] else 16)
    for L, n in needles.items():  # every strategy, depth and needle of the rounds it took, once
        assert len([r for r in recs if r["length"] == L]) == 2 * 2 * n
    verdict = {v["length"]: v for v in json.loads((out / "summary.json").read_text())["verdict"]}
    assert verdict[4000]["best"] == "rag-bm25" and verdict[4000]["settled"]
    assert verdict[4000]["comparisons"][0]["status"] == "worse" and verdict[4000]["n_needles"] == 8
    assert "round 1 (8 needles/cell" in p.stderr

    # An interrupted run: only round one and part of round two written. Resuming finishes it the same way.
    part = tmp_path / "part"
    part.mkdir()
    (part / "config.yaml").write_text((out / "config.yaml").read_text())
    lines = (out / "records.jsonl").read_text().splitlines()
    kept = [l for l in lines if json.loads(l)["needle_index"] < 8] + \
        [l for l in lines if json.loads(l)["needle_index"] >= 8][:3]
    (part / "records.jsonl").write_text("\n".join(kept) + "\n")
    p = harness("compare", "--resume", str(part), env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    key = lambda r: (r["strategy"], r["sample_id"])  # noqa: E731
    assert {key(r): r["raw"] for r in records(part)} == {key(r): r["raw"] for r in recs}
    assert (part / "rounds.jsonl").read_text() == (out / "rounds.jsonl").read_text()


def test_adaptive_flags_are_checked_before_anything_starts(tmp_path):
    for args, msg in ((["--max-needles", "8"], "--max-needles goes with --until-decided"),
                      (["--until-decided", "--needles", "10", "--max-needles", "4"], "more than --max-needles"),
                      (["--until-decided", "--alpha", "2"], "--alpha")):
        p = harness("compare", "--out", str(tmp_path / "x"), *args, timeout=120)
        assert p.returncode != 0 and msg in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.server
def test_rounds_on_the_real_server(vllm_server, tmp_path):
    """Near chance nothing settles on two needles: round two runs, with ordinary records."""
    out = tmp_path / "real"
    p = harness("compare", "--endpoint", vllm_server.base_url, "--model", vllm_server.model, "--api", "completions",
                "-s", "full-context,rag-bm25", "--lengths", "500", "--depths", "0", "--until-decided",
                "--needles", "2", "--max-needles", "4", "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["needles"] for r in rounds] == [2, 4] and rounds[0]["settled"] == []  # p >= 0.5 on two needles
    recs = records(out)
    assert sorted((r["strategy"], r["needle_index"]) for r in recs) == sorted(
        (s, i) for s in ("full-context", "rag-bm25") for i in range(4))
    assert all(r["error"] is None and r["prompt_tokens"] > 0 for r in recs)
    config = (out / "config.yaml").read_text()
    assert "adaptive:" in config and "max_needles: 4" in config
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"][0]["n_needles"] == 4
