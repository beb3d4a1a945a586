"""What the harness prints is what happened: one experiment per run folder, failures counted as failures.

Runs go against the zero-latency stand-in (bench/fake_openai.py) or the simulated reader
(bench/sim_reader.py), in process through harness.api, so each check is about the harness's own
bookkeeping; the real server's side is covered by the end-to-end tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness import api
from harness.config import EndpointConfig, RunConfig
from harness.errors import EndpointError, UsageError
from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402
import sim_reader  # noqa: E402


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "responses.sqlite"))


def _config(url: str, out: Path, **kw) -> RunConfig:
    return RunConfig(
        strategies=["full-context"],
        lengths=[600],
        depths=[0.0, 100.0],
        needles=1,
        shots=0,
        endpoint=EndpointConfig(url=url, model="gemma-3-270m", api="completions"),
        out=out,
        **kw,
    )


# -- a run folder holds one experiment ----------------------------------------------------------------------
def test_every_record_names_the_model_that_answered_it(tmp_path):
    with fake_openai.running() as url:
        out = api.compare(_config(url, tmp_path / "run"))
    records = RunStore(out).latest_records()
    assert records and all(r.model is not None for r in records)
    assert {(r.model.model, r.model.served, r.model.max_model_len) for r in records} == {
        ("gemma-3-270m", "fake/gemma-3-270m", 32768)
    }


def test_resuming_a_folder_with_another_model_is_refused(tmp_path):
    out = tmp_path / "run"
    with fake_openai.running() as url:
        api.compare(_config(url, out))
    before = (out / "records.jsonl").read_bytes()
    (out / "records.jsonl").write_bytes(before.splitlines(keepends=True)[0])  # one query left to ask
    with sim_reader.running() as other:  # same served name, other weights and window
        with pytest.raises(UsageError, match="answered by another model") as e:
            api.compare(_config(other, out))
    assert "served" in str(e.value) and "\n" not in str(e.value)
    assert (out / "records.jsonl").read_bytes() == before.splitlines(keepends=True)[0]  # nothing mixed in
    with fake_openai.running() as url:  # the same model finishes it
        api.compare(_config(url, out))
    assert len(RunStore(out).latest_records()) == 2


def test_resume_keeps_the_config_of_the_first_segment(tmp_path):
    out = tmp_path / "run"
    with fake_openai.running() as url:
        api.compare(_config(url, out))
        first = (out / "config.yaml").read_text()
        api.compare(_config(url, out))
    assert (out / "config.yaml").read_text() == first


def test_a_run_that_fails_before_its_first_query_leaves_no_folder(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(EndpointError, match="cannot reach"):
        api.compare(_config("http://127.0.0.1:9/v1", out))
    assert not out.exists()
    with pytest.raises(UsageError, match="no such file"):
        api.compare(
            _config(
                "http://127.0.0.1:9/v1",
                out,
                scenario_params={
                    "haystack_file": str(tmp_path / "nope.jsonl"),
                    "needles_file": str(tmp_path / "nope2.jsonl"),
                },
            )
        )
    assert not out.exists()


def test_input_files_are_checked_before_any_server_starts(tmp_path, monkeypatch):
    def no_server(*a, **k):
        raise AssertionError("a server was started before the input files were checked")

    monkeypatch.setattr(api, "launch_server", no_server)
    bad = RunConfig(
        scenario_params={
            "haystack_file": str(tmp_path / "missing.jsonl"),
            "needles_file": str(tmp_path / "missing.jsonl"),
        },
        out=tmp_path / "x",
    )
    with pytest.raises(UsageError, match="missing.jsonl: no such file"):
        api.compare(bad)
    with pytest.raises(UsageError, match="unknown strategy"):
        api.compare(RunConfig(strategies=["no-such-arm"], out=tmp_path / "y"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_input_file_error_is_one_line_and_fast_to_come(tmp_path):
    import subprocess

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "compare",
            "-P",
            f"haystack_file={tmp_path}/h.jsonl",
            "-P",
            f"needles_file={tmp_path}/n.jsonl",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 2 and "h.jsonl: no such file" in p.stderr
    assert "starting vLLM" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "r").exists()


# -- failures are counted as failures --------------------------------------------------------------------------
def test_a_scorer_that_raises_is_a_scoring_error_with_its_reason(tmp_path, monkeypatch, capsys):
    from scenarios.bio_needle import BioNeedle

    def broken(self, answer, gold):
        raise KeyError("born")

    monkeypatch.setattr(BioNeedle, "score", broken)
    with fake_openai.running() as url:
        out = api.compare(_config(url, tmp_path / "run"))
    records = RunStore(out).latest_records()
    assert all(r.valid and r.scoring_error == "KeyError: 'born'" and r.score == 0 for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_strategy"][0]["scoring_errors"] == len(records)
    assert "the scorer raised on 2 queries" in capsys.readouterr().out
    assert "the scorer raised on 2 queries" in (out / "report.html").read_text()


def test_a_failed_cache_write_is_reported_and_the_records_are_complete(tmp_path, monkeypatch, capsys):
    from harness.endpoints.cache import ResponseCache

    def full_disk(self, items):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ResponseCache, "put_many", full_disk)
    with fake_openai.running() as url:
        out = api.compare(_config(url, tmp_path / "run"))
    assert len(RunStore(out).latest_records()) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "response cache could not be written" in err and "No space left on device" in err
    assert "2 answers were not cached" in err


def test_no_stale_words_in_docs_and_docstrings():
    """The report and verdict exist: nothing calls them '(later)'; an agent's model handle is the Query, not Resources."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    texts = {
        p: p.read_text() for p in [*root.glob("harness/**/*.py"), root / "docs" / "architecture.md", root / "README.md"]
    }
    assert not [p for p, t in texts.items() if "(later)" in t]
    assert "endpoint through `Resources`" not in texts[root / "docs" / "architecture.md"]
