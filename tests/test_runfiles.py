"""A run folder's files read back typed (harness.runfiles): every older folder still loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from harness.errors import UsageError
from harness.runfiles import MANIFEST_VERSION, RunManifest, read_manifest

DATA = Path(__file__).resolve().parent / "data"


def test_the_milestone1_manifest_loads_as_version_1_typed():
    m = read_manifest(DATA / "milestone1-run")
    assert m.version == 1 and m.run_id == "20261201-201111-bio-needle"
    assert m.config.lengths == [400, 800] and m.config.seed == 7
    assert m.endpoint.model == "gemma-3-270m" and m.endpoint.max_model_len == 8192
    assert m.endpoint.hardware is None  # --endpoint: no launch of its own
    assert [s.label for s in m.strategies] == ["full-context", "rag-dense:top_k=2", "rag-bm25:top_k=2"]
    assert m.null_answer["nationality"] == "unknown" and m.model == "gemma-3-270m"


def test_a_manifest_round_trips_through_config_yaml_with_its_version(tmp_path):
    raw = yaml.safe_load((DATA / "milestone1-run" / "config.yaml").read_text())
    m = RunManifest.model_validate(raw | {"version": MANIFEST_VERSION, "later_key": {"kept": True}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(m.dump(), sort_keys=False))
    back = read_manifest(tmp_path)
    assert back == m and back.version == MANIFEST_VERSION
    assert back.dump()["later_key"] == {"kept": True}  # a later version's keys are kept, not refused
    assert back.dump()["config"] == m.config.dump()


@pytest.mark.parametrize(
    "text, needle",
    [(None, "no config.yaml"), ("- a list\n", "expected a mapping"), ("run_id: x\nconfig: {needles: 0}\n", "needles")],
)
def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, text, needle):
    if text is not None:
        (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(UsageError, match=needle) as e:
        read_manifest(tmp_path)
    assert "\n" not in str(e.value)


def test_open_run_gives_the_manifest(tmp_path):
    from harness.runs import open_run

    run = tmp_path / "run"
    shutil.copytree(DATA / "milestone1-run", run)
    store, scen, manifest = open_run(run)
    assert isinstance(manifest, RunManifest) and scen.name == "bio-needle" and store.path == run


def test_load_run_reads_an_old_folder_and_a_new_summary_typed(tmp_path):
    from test_report_html import make_run

    from harness.report.summary import summarize_run, write_summary
    from harness.runfiles import SUMMARY_VERSION, load_run
    from harness.store import RunStore
    from scenarios.bio_needle import BioNeedle

    old = load_run(DATA / "milestone1-run")
    assert old.summary.version == 1 and old.manifest.version == 1
    assert [v.length for v in old.summary.verdict] == [400, 800]
    assert old.summary.verdict_at(800).comparisons[0].status in ("better", "worse", "equivalent", "undecided")
    run = make_run(tmp_path)
    assert load_run(run).summary is None  # no report yet
    summary, _, _ = summarize_run(RunStore(run), BioNeedle())
    write_summary(summary, run)
    new = load_run(run)
    assert new.summary.version == SUMMARY_VERSION and new.summary.fields == summary["fields"]
    assert [v.choice for v in new.summary.verdict] == [v["choice"] for v in summary["verdict"]]
    assert new.summary.by_strategy == summary["by_strategy"]  # rows keyed by the scenario's fields, as written


def test_a_verdict_of_the_confidence_sequences_reads_typed(tmp_path):
    """A summary written now: every comparison says its rule, its pairs and its adjusted p."""
    from test_adaptive import adaptive_folder
    from toy_scenario import TwoFieldScenario

    from harness.report.summary import summarize_run, write_summary
    from harness.runfiles import load_run
    from harness.store import RunStore

    run = adaptive_folder(tmp_path, adaptive=False)
    summary, _, _ = summarize_run(RunStore(run), TwoFieldScenario())
    write_summary(summary, run)
    v = load_run(run).summary.verdict[0]
    c = v.comparisons[0]
    assert c.rule and c.pairs == v.pairs >= 1 and c.p_adjusted is not None and c.p_adjusted >= c.p
    assert c.status == summary["verdict"][0]["comparisons"][0]["status"]
