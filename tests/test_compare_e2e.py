"""`harness compare` end to end against the real vLLM server: records, scores, tokens, resume."""

import json
import subprocess
import sys

import httpx
import pytest

from harness.api import compare as run_compare
from harness.config import EndpointConfig, RunConfig
from harness.store import RunStore

pytestmark = pytest.mark.server

FIELDS = ["nationality", "date_of_birth", "date_of_death", "sportsperson", "politician"]


@pytest.fixture(scope="module")
def tiny_run(vllm_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = RunConfig(
        strategies=["full-context", "rag-dense:top_k=2"],
        lengths=[500, 1000],
        depths=[0.0, 100.0],
        needles=1,
        shots=1,
        endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
        out=out,
    )
    run_compare(config)
    return config, out


def test_every_query_has_one_complete_record(tiny_run):
    _, out = tiny_run
    records = RunStore(out).rows()
    assert len(records) == 2 * 2 * 2  # strategies x lengths x depths x needles
    assert len({(r["strategy"], r["sample_id"]) for r in records}) == len(records)
    for r in records:
        assert set(r["marks"]) == set(FIELDS)
        assert 0.0 <= r["score"] <= 1.0
        assert r["score"] == pytest.approx(sum(r["marks"].values()) / 5)
        assert r["error"] is None
        assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["latency_s"] > 0
        assert r["valid"] == (r["answer"] is not None)
        if r["valid"]:
            assert set(r["answer"]) == set(FIELDS)
        else:
            assert r["invalid_reason"]


def test_prompt_tokens_match_the_servers_tokenizer(tiny_run, vllm_server):
    _, out = tiny_run
    for r in RunStore(out).rows():
        assert r["prompt_tokens"] == r["prompt_tokens_counted"]


def test_context_lengths_are_counted_in_model_tokens(tiny_run, vllm_server):
    _, out = tiny_run
    store = RunStore(out)
    root = vllm_server.base_url.rsplit("/v1", 1)[0]
    for s in store.read_samples():
        n = httpx.post(
            f"{root}/tokenize", json={"model": vllm_server.model, "prompt": s.joined(), "add_special_tokens": False}
        ).json()["count"]
        assert n <= s.length
        # Whole biographies only: the gap is less than one biography that did not fit plus the
        # difference between the cell's largest needle and this one (a biography is < 250 tokens).
        assert s.length - n < 2 * 250
        assert abs(n - s.context_tokens) <= len(s.documents)  # separators are estimated


def test_strategies_show_what_they_should(tiny_run):
    _, out = tiny_run
    for r in RunStore(out).rows():
        if r["strategy"] == "full-context":
            assert r["shown"]["needle_shown"] is True
            assert r["prompt_tokens"] > r["context_tokens"]
        else:
            assert len(r["shown"]["pieces"]) == 2
            assert all(p["text"] for p in r["shown"]["pieces"])  # chunk text kept for grounding
            assert r["shown"]["retrieval"]["needle_retrieved"] == r["shown"]["needle_shown"]


def test_summary_files_and_null_baseline(tiny_run):
    _, out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    strategies = [s["strategy"] for s in summary["by_strategy"]]
    assert strategies == ["full-context", "rag-dense:top_k=2"]
    assert 0 <= summary["null_baseline"]["accuracy"] <= 1
    assert (out / "summary.csv").read_text().startswith("strategy,length,")
    assert (out / "config.yaml").exists() and (out / "samples.jsonl").exists()


def test_rerun_asks_nothing_and_changes_nothing(tiny_run):
    config, out = tiny_run
    before = (out / "records.jsonl").read_bytes()
    run_compare(config)
    assert (out / "records.jsonl").read_bytes() == before


def test_resume_finishes_only_missing_queries(tiny_run, tmp_path):
    config, out = tiny_run
    lines = (out / "records.jsonl").read_text().splitlines()
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.yaml",):
        (partial / name).write_text((out / name).read_text())
    (partial / "records.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])  # torn 4th line
    run_compare(config.model_copy(update={"out": partial}))
    resumed = RunStore(partial).rows()
    assert len(resumed) == len(lines)
    assert {(r["strategy"], r["sample_id"]) for r in resumed} == {
        (json.loads(l)["strategy"], json.loads(l)["sample_id"]) for l in lines
    }
    # temperature 0: the redone queries give the same answers
    by_key = {(json.loads(l)["strategy"], json.loads(l)["sample_id"]): json.loads(l) for l in lines}
    for r in resumed:
        assert r["raw"] == by_key[(r["strategy"], r["sample_id"])]["raw"]


def test_cli_prints_the_comparison_table(vllm_server, tmp_path):
    p = subprocess.run(
        [
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
            "400",
            "--depths",
            "50",
            "--needles",
            "1",
            "--out",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "full-context" in p.stdout and "rag-dense" in p.stdout and "null baseline" in p.stdout
    assert len(RunStore(tmp_path / "cli").rows()) == 2


def test_length_smaller_than_the_needle_is_refused(vllm_server, tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "compare",
            "--endpoint",
            vllm_server.base_url,
            "--model",
            vllm_server.model,
            "--lengths",
            "20",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
