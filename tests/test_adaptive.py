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
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reader_url():
    # Full context loses 20 points per 1k tokens: hopeless at 4k, close to retrieval at 1k.
    with sim_reader.running("--base", "1", "--decay", "0.2", "--middle", "0", "--max-needles", "24") as url:
        yield url


def adaptive_args(url: str, out: Path) -> list[str]:
    return [
        "compare",
        "--endpoint",
        url,
        "--model",
        "gemma-3-270m",
        "--api",
        "completions",
        "-s",
        "full-context,rag-bm25",
        "--lengths",
        "1k,4k",
        "--depths",
        "0,100",
        "--until-decided",
        "--needles",
        "12",
        "--max-needles",
        "24",
        "--no-cache",
        "--out",
        str(out),
    ]


def test_settled_lengths_get_no_more_needles_and_resume_takes_the_same_path(reader_url, tmp_path):
    env = dict(os.environ, HARNESS_RESPONSE_CACHE=str(tmp_path / "r.sqlite"))
    out = tmp_path / "adaptive"
    p = harness(*adaptive_args(reader_url, out), env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["needles"] == 12 and rounds[0]["alpha"] == pytest.approx(0.05)  # anytime-valid: no split
    assert 4000 in rounds[0]["settled"]  # 12 needles, every one far better with retrieval
    recs = records(out)
    needles = {L: 1 + max(r["needle_index"] for r in recs if r["length"] == L) for L in (1000, 4000)}
    assert needles[4000] == 12  # settled after round one: no more needles there
    assert needles[1000] == (12 if 1000 in rounds[0]["settled"] else 24)
    for L, n in needles.items():  # every strategy, depth and needle of the rounds it took, once
        assert len([r for r in recs if r["length"] == L]) == 2 * 2 * n
    verdict = {v["length"]: v for v in json.loads((out / "summary.json").read_text())["verdict"]}
    assert verdict[4000]["best"] == "rag-bm25" and verdict[4000]["settled"]
    assert verdict[4000]["comparisons"][0]["status"] == "worse" and verdict[4000]["n_needles"] == 12
    assert "round 1 (12 needles/cell" in p.stderr

    # An interrupted run: only round one and part of round two written. Resuming finishes it the same way.
    part = tmp_path / "part"
    part.mkdir()
    (part / "config.yaml").write_text((out / "config.yaml").read_text())
    lines = (out / "records.jsonl").read_text().splitlines()
    kept = [l for l in lines if json.loads(l)["needle_index"] < 12] + [
        l for l in lines if json.loads(l)["needle_index"] >= 12
    ][:3]
    (part / "records.jsonl").write_text("\n".join(kept) + "\n")
    p = harness("compare", "--resume", str(part), env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    key = lambda r: (r["strategy"], r["sample_id"])  # noqa: E731
    assert {key(r): r["raw"] for r in records(part)} == {key(r): r["raw"] for r in recs}
    assert (part / "rounds.jsonl").read_text() == (out / "rounds.jsonl").read_text()


def test_adaptive_flags_are_checked_before_anything_starts(tmp_path):
    for args, msg in (
        (["--max-needles", "8"], "--max-needles goes with --until-decided"),
        (["--until-decided", "--needles", "10", "--max-needles", "4"], "more than --max-needles"),
        (["--until-decided", "--alpha", "2"], "--alpha"),
    ):
        p = harness("compare", "--out", str(tmp_path / "x"), *args, timeout=120)
        assert p.returncode != 0 and msg in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.server
def test_rounds_on_the_real_server(vllm_server, tmp_path):
    """Near chance nothing settles on two needles: round two runs, with ordinary records."""
    out = tmp_path / "real"
    p = harness(
        "compare",
        "--endpoint",
        vllm_server.base_url,
        "--model",
        vllm_server.model,
        "--api",
        "completions",
        "-s",
        "full-context,rag-bm25",
        "--lengths",
        "500",
        "--depths",
        "0",
        "--until-decided",
        "--needles",
        "2",
        "--max-needles",
        "4",
        "--out",
        str(out),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["needles"] for r in rounds] == [2, 4] and rounds[0]["settled"] == []  # p >= 0.5 on two needles
    recs = records(out)
    assert sorted((r["strategy"], r["needle_index"]) for r in recs) == sorted(
        (s, i) for s in ("full-context", "rag-bm25") for i in range(4)
    )
    assert all(r["error"] is None and r["prompt_tokens"] > 0 for r in recs)
    config = (out / "config.yaml").read_text()
    assert "adaptive:" in config and "max_needles: 4" in config
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"][0]["n_needles"] == 4


# -- the final verdict of an adaptive run: at the run's alpha (anytime-valid) ------------------------------
FC, RAG = "full-context", "rag-x"
# rag-x's accuracy on each of 8 needles (2 fields x 2 depths); full context gets everything right.
RAG_ACC = [0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]


def adaptive_folder(tmp_path: Path, adaptive: bool = True) -> Path:
    """A run folder as `compare --until-decided --needles 8` (max 32: looks at 8, 16, 32) leaves it."""
    from harness.config import AdaptiveConfig, RunConfig
    from harness.store import RunStore

    run = tmp_path / ("adaptive" if adaptive else "plain")
    store = RunStore(run).create()
    config = RunConfig(
        strategies=[FC, RAG],
        lengths=[1000],
        depths=[0.0, 100.0],
        needles=8,
        adaptive=AdaptiveConfig(max_needles=32) if adaptive else None,
    )
    store.write_config({"run_id": "t", "config": config.dump(), "endpoint": {"model": "gemma-3-270m"}})
    recs = []
    for s in (FC, RAG):
        for d in (0.0, 100.0):
            for i, acc in enumerate(RAG_ACC):
                right = 4 if s == FC else round(4 * acc)  # of the needle's four marks, the first `right`
                k = 0 if d == 0.0 else 2
                marks = {"a": k < right, "b": k + 1 < right}
                recs.append(
                    {
                        "strategy": s,
                        "length": 1000,
                        "depth": d,
                        "sample_id": f"d{d:g}-n{i}",
                        "needle_index": i,
                        "score": sum(marks.values()) / 2,
                        "valid": True,
                        "error": None,
                        "prompt_tokens": 1200 if s == FC else 300,
                        "completion_tokens": 20,
                        "latency_s": 0.5 if s == FC else 0.1,
                        "gold": {"a": 1, "b": 1},
                        "answer": {k: int(v) for k, v in marks.items()},
                        "raw": "{}",
                        "marks": marks,
                        "shown": {"needle_shown": True, "retrieval": {}},
                    }
                )
    store.append_many(recs)
    return run


def test_adaptive_verdict_is_at_the_runs_alpha(tmp_path):
    """The confidence sequences are anytime-valid: the rounds' looks need no split of alpha, so an
    adaptive run's verdict is the plain run's verdict on the same needles, said at the run's alpha."""
    from toy_scenario import TwoFieldScenario

    from harness.report.summary import summarize_run
    from harness.store import RunStore

    plain, _, _ = summarize_run(RunStore(adaptive_folder(tmp_path, adaptive=False)), TwoFieldScenario())
    s, _, _ = summarize_run(RunStore(adaptive_folder(tmp_path)), TwoFieldScenario())
    c, v = plain["verdict"][0]["comparisons"][0], s["verdict"][0]
    assert v["comparisons"][0]["status"] == c["status"] == "undecided" and not v["settled"]
    assert v["comparisons"][0]["p"] == pytest.approx(c["p"])
    assert s["alpha"] == pytest.approx(0.05) and v["alpha"] == pytest.approx(0.05)
    assert (
        s["level"]["looks"] == 3 and s["level"]["text"] == "alpha 0.05 at every round (--until-decided; anytime-valid)"
    )
    s10, _, _ = summarize_run(RunStore(adaptive_folder(tmp_path)), TwoFieldScenario(), alpha=0.1)
    assert s10["alpha"] == pytest.approx(0.1) and s10["level"]["text"].startswith("alpha 0.1 at every round")


@pytest.fixture
def toy_run(tmp_path, monkeypatch):
    """An adaptive folder that `harness report` / `recommend` open with the two-field scenario."""
    from toy_scenario import TwoFieldScenario

    from harness import api
    from harness.store import RunStore

    run = adaptive_folder(tmp_path)
    monkeypatch.setattr(api, "open_run", lambda d: (RunStore(d), TwoFieldScenario(), RunStore(d).read_config()))
    return run


def invoke(*args: str) -> str:
    """The command line in this process (so the patched open_run applies), with its own defaults."""
    from typer.testing import CliRunner

    from harness import cli

    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_report_and_compare_end_say_the_adaptive_level(toy_run, capsys):
    from harness import api

    out = invoke("report", str(toy_run))
    assert "better than" not in out and f"{FC} vs {RAG}: too few samples to tell at 1,000 tokens" in out
    assert "alpha 0.05 at every round (--until-decided; anytime-valid)" in out
    page = (toy_run / "report.html").read_text()
    section = page[page.index('<section id="verdict"') : page.index('<section id="heatmaps"')]
    assert 'data-status="undecided"' in section and 'data-status="worse"' not in section and "not settled" in section
    assert "alpha 0.05 at every round (--until-decided; anytime-valid)" in section
    assert json.loads((toy_run / "summary.json").read_text())["verdict"][0]["comparisons"][0]["status"] == "undecided"
    # the end of `compare` (finish_report) for an adaptive run: the run's own alpha
    api.finish_report(*api.open_run(toy_run)[:2], api.ReportOptions(alpha=None))
    out = capsys.readouterr().out
    assert "better than" not in out and "alpha 0.05 at every round" in out


def test_recommend_on_an_adaptive_run_uses_the_rounds_level(toy_run):
    """rag-x's 95% interval over needles is above 47%, its 1 - 0.05/3 interval is not."""
    from harness.report.stats import bootstrap_ci

    lo95, lo_adj = bootstrap_ci(RAG_ACC)[0], bootstrap_ci(RAG_ACC, 1 - 0.05 / 3)[0]
    assert lo_adj < 0.47 <= lo95 < sum(RAG_ACC) / len(RAG_ACC)  # the data sits between the two levels
    out = invoke("recommend", str(toy_run), "--min-accuracy", "0.47")
    line = next(l for l in out.splitlines() if l.startswith("1,000 tokens:"))
    assert f"{RAG} (65.6%" in line and "is the cheapest that meets >= 47.0% accuracy" in line
    assert "above the target" not in line and "reaches below the target" in line
    assert "on average only: the 98.3% interval" in line
    assert "(98.3% = 1 - alpha 0.05 / 3 planned looks (--until-decided))" in line
