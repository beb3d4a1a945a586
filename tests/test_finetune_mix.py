"""Training splits for every built-in scenario (disjoint from the test splits by construction), and the
multi-task reader: one adapter learning several scenarios, asked zero-shot only where it was trained."""

from __future__ import annotations

import json

import pytest

from harness.config import EndpointConfig
from harness.errors import UsageError
from harness.finetune.config import DataConfig, FinetuneConfig
from harness.finetune.data import ExampleBuilder, build_scenario, build_strategies, prompt_form
from harness.finetune.run import interleave
from harness.reader import resolve_reader, shipped_reader, trained_for
from scenarios.bio_aggregate import BioAggregate, Criterion
from scenarios.bio_mdqa import BioMDQA
from scenarios.bio_needle.generator import TRAIN_LETTERS
from scenarios.bio_needle.scenario import BioNeedle
from scenarios.kv_retrieval import KVRetrieval


def count_words(texts):  # a stand-in for the served tokenizer: the data's shape does not depend on it
    return [max(1, int(len(t.split()) * 1.4)) for t in texts]


def count_chars(texts):  # UUIDs are one "word": count characters instead
    return [max(1, len(t) // 3) for t in texts]


@pytest.mark.parametrize("variant", ["uuid", "multi_subkey"])
def test_kv_training_uuids_can_never_be_test_uuids(variant):
    """Test UUIDs are version 4 (variant digit 8-b); every training key and value has a variant digit 0-7."""
    params = KVRetrieval.Params(variant=variant)
    for seed in (0, 4):
        train = KVRetrieval(params, seed=seed).split("train", seed=seed + 9)
        test = KVRetrieval(params, seed=seed)
        for scen, digits in ((train, "01234567"), (test, "89ab")):
            for s in scen.samples([400, 900], [0, 100], 3, count_chars):
                for d in s.documents:
                    ((key, value),) = json.loads(d.text).items()
                    assert value[19] in digits and (key[19] in digits or scen is test)
        for s in train.samples([400], [50], 3, count_chars):
            assert s.subject[19] in "01234567" and s.gold["value"][19] in "01234567"


def test_bio_training_splits_hold_only_training_people():
    for scen in (BioMDQA(), BioAggregate(), BioAggregate(BioAggregate.Params(question="list"))):
        train = scen.split("train", seed=3)
        for s in train.samples([1500, 2500], [0, 100], 3, count_words):
            names = [s.subject] if scen.name == "bio-mdqa" else s.gold.get("names", [])
            for name in names:
                assert TRAIN_LETTERS & set(name.split()[-1].lower()), name
        assert not any(train.generator._people[split] for split in ("needles", "haystack"))


def test_fine_tuning_asks_every_pair_and_every_person_of_a_context():
    kv = KVRetrieval().split("train", seed=1)
    s = kv.samples([500], [50], 1, count_chars)[0]
    qs = kv.questions(s)
    assert qs[0] == s and len(qs) == len(s.documents)
    for q in qs[1:]:
        ((key, value),) = json.loads(next(d.text for d in s.documents if d.id == q.gold_ids[0])).items()
        assert q.subject == key and key in q.question and q.gold == {"value": value}
    mdqa = BioMDQA().split("train", seed=1)
    s = mdqa.samples([900], [0], 1, count_words)[0]
    qs = mdqa.questions(s)
    assert len(qs) == len(s.documents) and len({q.gold_ids[0] for q in qs}) == len(qs)
    for q in qs[1:]:
        text = next(d.text for d in s.documents if d.id == q.gold_ids[0])
        assert q.subject.lower() in text.lower() and str(q.gold["year"]) in text


def test_aggregate_contexts_are_asked_a_criterion_for_every_count():
    """A count reader must not learn the planted question's odds: each context is asked one criterion for
    each count its biographies match, with golds that hold in the context (names in document order)."""
    for form in ("count", "list"):
        agg = BioAggregate(BioAggregate.Params(question=form)).split("train", seed=3)
        s = agg.samples([1500], [50], 1, count_words)[0]
        qs = agg.questions(s)
        assert qs[0] == s and len(qs) >= 3
        counts = []
        for q in qs[1:]:
            crit = Criterion(**q.meta["criterion"])
            hits = [d for d in s.documents if crit.matches(agg._people[d.text].labels)]
            assert q.gold_ids == [d.id for d in hits] and crit.phrase() in q.question
            if form == "count":
                assert q.gold == {"count": len(hits)}
            else:
                assert q.gold == {"names": [agg._people[d.text].name for d in hits]}
            counts.append(len(hits))
        assert counts == sorted(set(counts)) and counts[0] == 1  # one question a count, from 1 up


def test_judge_share_makes_groups_of_ragas_prompts_with_both_verdicts(tmp_path):
    data = DataConfig(scenario="bio-needle", judge_share=1.0, lengths=[300, 600], seed=11)
    scen = build_scenario(data)
    builder = ExampleBuilder(scen, data, count_words, build_strategies(data.strategies, tmp_path, count_words))
    examples = builder.build(10)
    assert {e.form for e in examples} == {"judge"} and len({e.group for e in examples}) == 10
    verdicts = [v["verdict"] for e in examples if '"verdict"' in e.target for v in json.loads(e.target)["statements"]]
    assert 0 in verdicts and 1 in verdicts
    assert all(e.prompt.rstrip().endswith("Output:") for e in examples)


MIX = {
    "steps": 12,
    "data": {"scenario": "bio-needle", "lengths": [300, 700]},
    "mix": [
        {"share": 0.25, "data": {"scenario": "kv-retrieval", "lengths": [300, 700], "seed": 1}},
        {"share": 0.25, "data": {"scenario": "bio-aggregate", "lengths": [400, 800], "answerable_share": 0, "seed": 2}},
    ],
}


def test_a_mixed_config_splits_its_contexts_by_share():
    config = FinetuneConfig.model_validate(MIX)
    assert [n for _, n in config.parts(config.examples)] == [6, 3, 3]
    assert "mix" in config.identity() and "mix" not in FinetuneConfig().identity()  # old adapters keep theirs
    with pytest.raises(ValueError, match="shares"):
        FinetuneConfig.model_validate(MIX | {"mix": MIX["mix"] * 2})


def test_mixed_examples_interleave_every_part_with_groups_renumbered(tmp_path):
    config = FinetuneConfig.model_validate(MIX)
    parts = []
    for data, n in config.parts(config.examples):
        strategies = build_strategies(data.strategies, tmp_path, count_words)
        parts.append(ExampleBuilder(build_scenario(data), data, count_words, strategies).build(n))
    mixed = interleave(parts, seed=0)
    assert sorted(e.model_dump_json() for e in mixed) != [] and len(mixed) == sum(map(len, parts))
    groups = list(dict.fromkeys(e.group for e in mixed))
    assert groups == list(range(config.examples))  # one group per context, numbered in training order
    scenarios = [next(e for e in mixed if e.group == g).sample_id.split("/")[0] for g in groups]
    assert set(scenarios) == {"bio-needle", "kv-retrieval", "bio-aggregate"}
    assert scenarios != sorted(scenarios, key=["bio-needle", "kv-retrieval", "bio-aggregate"].index)  # shuffled
    assert interleave(parts, seed=0) == mixed


def _reader(folder, served_name, forms, scenario="bio-needle"):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    info = {
        "served_name": served_name,
        "scenario": scenario,
        "shots": 0,
        "prompt_form": forms[0]["prompt_form"],
        "trained_on": forms,
    }
    (folder / "finetune.json").write_text(json.dumps(info))
    return folder


def _form(scen):
    return {"scenario": scen.name, "scenario_params": {}, "prompt_form": prompt_form(scen)}


def test_a_mixed_reader_reads_zero_shot_exactly_where_it_was_trained(tmp_path, monkeypatch):
    folder = _reader(tmp_path / "reader", "gemma-3-270m-reader", [_form(BioNeedle()), _form(KVRetrieval())])
    for cls in (BioNeedle, KVRetrieval, BioMDQA, BioAggregate):
        monkeypatch.setattr(cls, "reader", lambda self: folder)
    info = json.loads((folder / "finetune.json").read_text())
    assert trained_for(info, BioNeedle()) and trained_for(info, KVRetrieval(KVRetrieval.Params(variant="multi_subkey")))
    assert not trained_for(info, BioMDQA())
    # the default: the scenario's reader, zero-shot where trained; the base (and its shots) elsewhere
    assert resolve_reader(EndpointConfig(), KVRetrieval()).tuned
    base = resolve_reader(EndpointConfig(), BioMDQA())
    assert not base.tuned and base.default_shots() == 2 and "base model" in base.note
    # served by its name (harness serve gemma-3-270m-reader; compare --endpoint ... --model ...)
    assert shipped_reader("gemma-3-270m-reader") == folder
    at = EndpointConfig(url="http://127.0.0.1:9/v1", model="gemma-3-270m-reader")
    assert resolve_reader(at, KVRetrieval()).tuned
    other = resolve_reader(at, BioAggregate())
    assert not other.tuned and other.default_shots() == 2 and "not trained on bio-aggregate" in other.note


def test_a_reader_made_before_trained_on_was_recorded_reads_only_its_scenario(tmp_path, monkeypatch):
    folder = _reader(tmp_path / "old", "gemma-3-270m-bio-needle", [_form(BioNeedle())])
    info = json.loads((folder / "finetune.json").read_text())
    del info["trained_on"]
    assert trained_for(info, BioNeedle()) and not trained_for(info, KVRetrieval())
    monkeypatch.setattr(BioNeedle, "reader", lambda self: folder)
    assert not resolve_reader(EndpointConfig(model="gemma-3-270m-bio-needle"), KVRetrieval()).tuned


def test_finetune_config_file_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("mix: [{share: 1.5, data: {scenario: kv-retrieval}}]\n")
    for path, says in ((bad, "mix.0.share"), (tmp_path / "none.yaml", "--config")):
        p = subprocess.run(
            [sys.executable, "-m", "harness.cli", "finetune", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 2 and "Traceback" not in p.stderr and says in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    with pytest.raises(UsageError, match="training split"):
        ExampleBuilder(build_scenario(DataConfig(scenario="qa")), DataConfig(), count_words, [])
