"""Which reader answers a compare: the scenario's tuned reader by default, the base on request, and the
shots default that goes with each (an explicit, recorded choice). No server: the decision comes first."""

from __future__ import annotations

import json

import pytest

from harness.api import resolve_reader, shipped_reader
from harness.config import BASE_SHOTS, EndpointConfig
from harness.errors import UsageError
from harness.finetune.data import prompt_form
from scenarios.bio_needle.scenario import BioNeedle


def _adapter(folder, scen, **info):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    info = {
        "served_name": "gemma-3-270m-bio-needle",
        "scenario": "bio-needle",
        "shots": 0,
        "prompt_form": prompt_form(scen),
        **info,
    }
    (folder / "finetune.json").write_text(json.dumps(info))
    return folder


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    folder = _adapter(tmp_path / "reader", BioNeedle())
    monkeypatch.setattr(BioNeedle, "reader", lambda self: folder)
    return folder


def test_default_is_the_scenarios_tuned_reader_with_zero_shots(shipped):
    reader = resolve_reader(EndpointConfig(), BioNeedle())
    assert reader.tuned and reader.endpoint.adapter == str(shipped) and reader.endpoint.model is None
    assert reader.default_shots() == 0
    rec = reader.record(0)
    assert rec["adapter"]["served_name"] == "gemma-3-270m-bio-needle" and rec["adapter"]["adapter_sha256"]
    assert rec["shots"] == 0 and "zero-shot" in rec["shots_reason"]


def test_model_gemma_3_270m_is_the_base_with_its_shots(shipped):
    reader = resolve_reader(EndpointConfig(model="gemma-3-270m"), BioNeedle())
    assert not reader.tuned and reader.endpoint.adapter is None and reader.default_shots() == BASE_SHOTS == 2


def test_the_tuned_reader_by_name(shipped):
    assert shipped_reader("gemma-3-270m-bio-needle") == shipped
    assert shipped_reader("gemma-3-270m") is None and shipped_reader("gemma-3-270m-nope") is None
    reader = resolve_reader(EndpointConfig(model="gemma-3-270m-bio-needle"), BioNeedle())
    assert reader.tuned and reader.endpoint.adapter == str(shipped) and reader.endpoint.model is None
    # at another server, the name says which reader it is (for the shots default and the record)
    reader = resolve_reader(EndpointConfig(url="http://127.0.0.1:9/v1", model="gemma-3-270m-bio-needle"), BioNeedle())
    assert reader.tuned and reader.endpoint.adapter is None and reader.default_shots() == 0


def test_another_answer_form_falls_back_to_the_base(shipped):
    nested = BioNeedle(BioNeedle.Params(answer_form="nested"))
    reader = resolve_reader(EndpointConfig(), nested)
    assert not reader.tuned and reader.endpoint.adapter is None and "base model" in reader.note
    # held-out forms and real-data files keep the prompt: the tuned reader still answers
    assert resolve_reader(EndpointConfig(), BioNeedle(BioNeedle.Params(forms="held-out"))).tuned


def test_an_explicit_adapter_and_its_mistakes(shipped, tmp_path):
    mine = _adapter(tmp_path / "mine", BioNeedle(), served_name="my-reader")
    reader = resolve_reader(EndpointConfig(adapter=str(mine)), BioNeedle())
    assert reader.tuned and reader.provenance["served_name"] == "my-reader"
    with pytest.raises(UsageError, match="not --endpoint"):
        resolve_reader(EndpointConfig(url="http://127.0.0.1:9/v1", model="m", adapter=str(mine)), BioNeedle())
    with pytest.raises(UsageError, match="tunes the embedded model"):
        resolve_reader(EndpointConfig(model="Qwen/Qwen2.5-0.5B", adapter=str(mine)), BioNeedle())
    with pytest.raises(UsageError, match="not an adapter"):
        resolve_reader(EndpointConfig(adapter=str(tmp_path)), BioNeedle())


def test_without_a_shipped_reader_the_base_answers(monkeypatch):
    monkeypatch.setattr(BioNeedle, "reader", lambda self: None)
    reader = resolve_reader(EndpointConfig(), BioNeedle())
    assert not reader.tuned and reader.endpoint.adapter is None and reader.default_shots() == 2


def test_the_shipped_adapter_is_where_the_interface_says():
    """scenarios/bio_needle/reader/ is found by the default Scenario.reader(), and is small."""
    folder = BioNeedle().reader()
    assert folder is not None and folder.name == "reader" and folder.parent.name == "bio_needle"
    info = json.loads((folder / "finetune.json").read_text())
    assert info["served_name"] == "gemma-3-270m-bio-needle" and info["shots"] == 0
    assert info["command"].startswith("harness finetune") and len(info["data_hash"]) == 64
    assert info["prompt_form"] == prompt_form(BioNeedle())
    assert (folder / "adapter_model.safetensors").stat().st_size < 20e6


def test_the_shipped_reader_of_every_other_scenario_is_one_adapter():
    """scenarios/reader/ (a multi-task adapter) is the default reader of every other built-in scenario, found
    by the default Scenario.reader() and by its served name; it learned bio-needle too (for `--model`)."""
    from harness import registry

    folder = registry.get("scenario", "kv-retrieval")().reader()
    assert folder is not None and folder.name == "reader" and folder.parent.name == "scenarios"
    info = json.loads((folder / "finetune.json").read_text())
    assert info["served_name"] == "gemma-3-270m-reader" and info["shots"] == 0
    assert info["command"].startswith("harness finetune --config scenarios/reader/recipe.yaml")
    trained = {t["scenario"] for t in info["trained_on"]}
    assert {"bio-needle", "kv-retrieval", "bio-mdqa", "bio-aggregate", "bio-multihop"} <= trained
    for name in trained - {"bio-needle"}:
        scen = registry.get("scenario", name)()
        assert scen.reader() == folder and resolve_reader(EndpointConfig(), scen).tuned, name
    assert shipped_reader("gemma-3-270m-reader") == folder
    assert resolve_reader(EndpointConfig(model="gemma-3-270m-reader"), BioNeedle()).tuned
    assert (folder / "adapter_model.safetensors").stat().st_size < 20e6


def test_an_agent_or_a_route_in_the_run_picks_the_shipped_reader_trained_on_it():
    """bio-needle's own reader learned extraction only; the multi-task reader also learned the agent's
    protocol and the route on retrieved chunks on bio-needle, so a run with those arms gets it (every arm)."""
    from harness.build import reader_skills
    from harness.config import RunConfig

    own = BioNeedle().reader()
    plain = resolve_reader(
        EndpointConfig(), BioNeedle(), reader_skills(RunConfig(strategies=["full-context", "rag-dense"]))
    )
    assert plain.endpoint.adapter == str(own) and plain.note is None
    needs = reader_skills(RunConfig(strategies=["rag-dense", "self-route", "agentic"]))
    assert needs == {"answer", "route", "agent"}
    other = resolve_reader(EndpointConfig(), BioNeedle(), needs)
    assert other.provenance["served_name"] == "gemma-3-270m-reader" != BioNeedle().reader().name
    assert other.endpoint.adapter != str(own) and "action protocol" in other.note and "route" in other.note


def test_no_reader_trained_on_a_needed_skill_keeps_the_own_one_and_says_so(shipped, monkeypatch):
    import harness.reader

    monkeypatch.setattr(harness.reader, "shipped_readers", lambda: [shipped])
    reader = resolve_reader(EndpointConfig(), BioNeedle(), {"answer", "agent"})
    assert reader.endpoint.adapter == str(shipped) and "no shipped reader was trained on" in reader.note
