"""The shipped tuned reader through the real path: one adapter (scenarios/reader/) merged into the embedded
model, served once on vLLM under its own name, read zero-shot by every built-in scenario it was trained on,
and recorded where it came from.

One server start for the module: `open_endpoint` with the endpoint settings `resolve_reader` gives a compare
with no model flags (the code compare itself runs to start its server); each scenario's compare then asks it
by name (`--endpoint URL --model gemma-3-270m-reader`), as `harness serve` users do."""

from __future__ import annotations

import json

import pytest
import yaml

from harness.api import compare, open_endpoint, resolve_reader
from harness.config import EndpointConfig, RunConfig
from harness.store import RunStore
from scenarios.bio_needle import BioNeedle

pytestmark = pytest.mark.server

READER = "gemma-3-270m-reader"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def reader_server(tmp_path_factory, monkeypatch_module):
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    folder = tmp_path_factory.mktemp("reader")
    monkeypatch_module.setenv("HARNESS_RESPONSE_CACHE", str(folder / "cache.sqlite"))
    reader = resolve_reader(EndpointConfig(max_model_len=4096), BioNeedle())  # what a flagless compare starts
    with open_endpoint(reader.endpoint, folder / "server.log") as (endpoint, info):
        yield endpoint, info, reader


def _run(reader_server, tmp_path_factory, scenario: str, params: dict, lengths, needles: int, strategies):
    endpoint, _, _ = reader_server
    out = tmp_path_factory.mktemp(scenario) / "run"
    compare(
        RunConfig(
            scenario=scenario,
            scenario_params=params,
            strategies=strategies,
            lengths=lengths,
            depths=[0.0, 100.0],
            needles=needles,
            endpoint=EndpointConfig(url=endpoint.base_url, model=READER, api="completions"),
            out=out,
        )
    )
    saved = yaml.safe_load((out / "config.yaml").read_text())
    rows = RunStore(out).rows()
    summary = json.loads((out / "summary.json").read_text())
    return saved, rows, summary


def test_a_flagless_compare_serves_the_shipped_reader_merged_under_its_name(reader_server):
    endpoint, info, reader = reader_server
    shipped = json.loads((BioNeedle().reader() / "finetune.json").read_text())
    assert reader.tuned and reader.endpoint.adapter and reader.endpoint.model is None
    assert endpoint.model == READER == shipped["served_name"]
    assert info["launch"]["adapter"]["data_hash"] == shipped["data_hash"]
    # the server loaded the merged folder named by the adapter's hash, not the base
    assert info["model_root"].endswith(f"{READER}-{info['launch']['adapter']['adapter_sha256'][:12]}-hf")


def test_bio_needle_reads_zero_shot_with_its_provenance_recorded(reader_server, tmp_path_factory):
    saved, rows, summary = _run(
        reader_server, tmp_path_factory, "bio-needle", {}, [700], 2, ["full-context", "rag-dense"]
    )
    assert saved["reader"]["tuned"] and saved["reader"]["shots"] == 0 and saved["config"]["shots"] == 0
    shipped = json.loads((BioNeedle().reader() / "finetune.json").read_text())
    for key in ("base", "scenario", "steps", "seed", "data_hash", "command"):
        assert saved["reader"]["adapter"][key] == shipped[key], key
    assert len(rows) == 2 * 2 * 2 and all(r["valid"] for r in rows)
    mean = sum(r["score"] for r in rows) / len(rows)
    # Against this run's own chance level (the corpus's most common answer, on these needles), not a fixed
    # number; one flipped field moves the mean by 1/40.
    assert mean >= summary["null_baseline"]["accuracy"] + 0.1, (mean, summary["null_baseline"])


@pytest.mark.parametrize(
    ("scenario", "params", "length"),
    [("kv-retrieval", {}, 600), ("bio-mdqa", {}, 700), ("bio-aggregate", {"question": "list"}, 900)],
)
def test_every_built_in_scenario_reads_zero_shot_on_the_same_server(
    reader_server, tmp_path_factory, scenario, params, length
):
    saved, rows, summary = _run(reader_server, tmp_path_factory, scenario, params, [length], 2, ["full-context"])
    assert saved["reader"]["tuned"] and saved["reader"]["shots"] == 0, saved["reader"]
    assert len(rows) == 2 * 2 and all(r["valid"] for r in rows)
    mean = sum(r["score"] for r in rows) / len(rows)
    assert mean >= summary["null_baseline"]["accuracy"] + 0.25, (scenario, mean, summary["null_baseline"])
