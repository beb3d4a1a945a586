"""Fine-tuning data: a training split disjoint from every test split, held-out forms kept out of it,
prompts exactly as compare builds them, and the chat-format export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.finetune.config import DataConfig, ExportConfig
from harness.finetune.data import ExampleBuilder, build_scenario, build_strategies
from harness.prompting import build_prompt
from harness.scoring.answers import ANSWERABLE_NOTE, answerable_schema, parse_answer, read_answer
from scenarios.bio_needle import vocabulary as V
from scenarios.bio_needle.generator import (
    ALL,
    HELD_OUT,
    HELD_OUT_DEMONYMS,
    HELD_OUT_ROLES,
    HELD_OUT_TEMPLATES,
    SPLITS,
    TRAIN_LETTERS,
    TRAIN_SHAPES,
    TRAIN_SPLITS,
    BioGenerator,
    surname_split,
    wikify,
)
from scenarios.bio_needle.scenario import BioNeedle


def count_words(texts):  # a stand-in for the served tokenizer: the data's shape does not depend on it
    return [max(1, int(len(t.split()) * 1.4)) for t in texts]


# ------------------------------------------------------------------------------ the training split
def test_no_test_surname_can_hold_a_training_letter():
    """Test surnames are built from these parts only, so the training name space is disjoint by construction."""
    parts = "".join(V.SYLLABLES + V.SURNAME_ENDINGS).lower()
    assert not TRAIN_LETTERS & set(parts)


def test_training_people_never_appear_in_any_test_split():
    train_names, test_names = set(), set()
    for seed in (0, 1, 7):
        g = BioGenerator(seed)
        for split in TRAIN_SPLITS:
            for p in g.people(split, 300):
                assert surname_split(p.surname) == "train" and TRAIN_LETTERS & set(p.surname.lower())
                train_names.add(p.name.lower())
        for split in SPLITS:
            for p in g.people(split, 300):
                assert surname_split(p.surname) == split
                test_names.add(p.name.lower())
    assert len(train_names) > 1500 and not train_names & test_names
    test_surnames = {n.split()[-1] for n in test_names}
    assert not {n.split()[-1] for n in train_names} & test_surnames


def test_train_split_samples_hold_only_training_people():
    sc = BioNeedle().split("train", seed=11)
    samples = sc.samples([600, 1200], [0, 100], 2, count_words)
    gen = sc.generator
    bios = {p.record.bio: p for split in TRAIN_SPLITS for p in gen.people(split, len(gen._people[split]))}
    assert not any(gen._people[s] for s in SPLITS)  # no test stream was even drawn
    for s in samples:
        assert all(d.text in bios for d in s.documents)
        assert TRAIN_LETTERS & set(s.subject.split()[-1].lower())
    assert BioNeedle().split("test", seed=3).samples([600], [50], 1, count_words) == BioNeedle(seed=3).samples(
        [600], [50], 1, count_words
    )


def test_test_split_unchanged_by_the_training_split():
    """Drawing training people first changes nothing in the test splits (the saved runs replay)."""
    a = BioGenerator(5)
    before = {s: a.records(s, 40) for s in SPLITS}
    b = BioGenerator(5)
    for s in TRAIN_SPLITS:
        b.records(s, 100)
    assert {s: b.records(s, 40) for s in SPLITS} == before


def test_training_split_refuses_files_and_held_out_forms(tmp_path):
    with pytest.raises(UsageError, match="held-out"):
        BioNeedle(BioNeedle.Params(split="train", forms="held-out"))
    data = tmp_path / "d.jsonl"
    data.write_text("")
    with pytest.raises(UsageError, match="synthetic"):
        BioNeedle(BioNeedle.Params(split="train", haystack_file=data, needles_file=data))


# ------------------------------------------------------------------------------ held-out forms
_ORDINAL = re.compile(r"\b\d{1,2}(st|nd|rd|th) of ", re.I)


# A distinctive phrase of each held-out occupation's defining sentence.
HELD_OUT_ROLE_PHRASES = {
    "fencer": "title at the world championships",
    "skier": "winter olympics",
    "governor": "was governor of the",
    "senator": "served in the senate",
    "boxer_mp": "retiring from the ring",
    "stadium_architect": "olympic stadium",
    "pollster": "polling firm",
    "botanist": "species of flowering plants",
    "chef": "first restaurant",
}


@pytest.fixture(scope="module")
def training_people():
    out = []
    for seed in (0, 1):
        g = BioGenerator(seed)
        out += g.people("train-needles", 500) + g.people("train-haystack", 500)
    return out


def test_held_out_forms_are_absent_from_training_text(training_people):
    held_words = (
        set(HELD_OUT_DEMONYMS)
        | {V.NATIONALITIES[d][0].lower() for d in HELD_OUT_DEMONYMS}
        | {c.lower() for d in HELD_OUT_DEMONYMS for c in V.NATIONALITIES[d][1]}
    )
    for p in training_people:
        text = p.record.bio.lower()
        assert p.role.key not in HELD_OUT_ROLES and p.labels.nationality not in HELD_OUT_DEMONYMS
        words = set(re.findall(r"[a-zà-ž]+", text))
        assert not words & {w for w in held_words if " " not in w}, text
        assert not any(w in text for w in held_words if " " in w), text
        assert not _ORDINAL.search(text), text
        assert not text.startswith(("born ", "the ")), text  # the held-out opening shapes
        assert "citizenship" not in text and not re.search(r"at the age of \d", text), text
        assert not any(phrase in text for phrase in HELD_OUT_ROLE_PHRASES.values()), text
    # the filler templates held out: their fixed words never occur in training text
    joined = "\n".join(p.record.bio.lower() for p in training_people)
    assert "grew up in" not in joined and "several times" not in joined and "wrote a memoir" not in joined
    assert "still gives lectures" not in joined and "papers are held" not in joined
    assert "well-known cyclist" not in joined and "mayor of a small town" not in joined  # relatives: held out
    assert set(HELD_OUT_ROLE_PHRASES) == HELD_OUT_ROLES and len(HELD_OUT_TEMPLATES) == 5


def test_training_only_nationalities_and_shapes_are_trained_on_and_never_tested(training_people):
    """A nationality is something to copy, wherever the sentence puts it: training also uses
    demonyms and opening shapes that no test text has."""
    assert not set(TRAIN_SHAPES) & set(ALL.shapes + HELD_OUT.shapes)
    openings = [p.record.bio.lower() for p in training_people]
    assert sum(t.startswith("described as ") for t in openings) > 50
    assert sum(bool(re.match(r"[^.(]+ \([^)]*\) , an? ", wikify(t))) for t in openings) > 50
    extra = set(V.TRAIN_NATIONALITIES)
    assert not extra & set(V.DEMONYMS)
    assert not {c for _, cs in V.TRAIN_NATIONALITIES.values() for c in cs} & set(V.ALL_CITIES)
    trained = Counter(p.labels.nationality for p in training_people)
    assert len(extra & set(trained)) >= 35  # nearly all of the 40 are drawn in 2,000 people
    assert sum(trained[d] for d in extra) > sum(trained[d] for d in V.DEMONYMS) * 0.9
    extra_words = extra | {V.TRAIN_NATIONALITIES[d][0].lower() for d in extra}
    for seed in (0, 1):
        for split in SPLITS:
            for p in BioGenerator(seed).people(split, 300):
                assert p.labels.nationality not in extra
                assert not p.record.bio.lower().startswith("described as "), p.record.bio
                assert not set(re.findall(r"[a-z]+", p.record.bio.lower())) & extra_words, p.record.bio


def test_held_out_needles_are_written_with_held_out_forms():
    people = BioGenerator(0, needle_forms="held-out").people("needles", 200)
    assert {p.role.key for p in people} <= HELD_OUT_ROLES
    known = [p for p in people if p.labels.nationality != "unknown"]
    assert known and {p.labels.nationality for p in known} <= set(HELD_OUT_DEMONYMS)
    full = [p for p in people if p.labels.date_of_birth.day]
    assert full and all(_ORDINAL.search(p.record.bio) for p in full)
    assert all(p.record.bio.lower().startswith(("born ", "the ")) for p in people)
    assert all(HELD_OUT_ROLE_PHRASES[p.role.key] in p.record.bio.lower() for p in people)
    assert HELD_OUT.shapes == ("born_first", "the_desc")


def test_seen_needles_avoid_every_held_out_form():
    for p in BioGenerator(0, needle_forms="seen").people("needles", 200):
        text = p.record.bio.lower()
        assert p.role.key not in HELD_OUT_ROLES and not _ORDINAL.search(text) and "citizenship" not in text


# ------------------------------------------------------------------------------ examples
DATA = DataConfig(lengths=[300, 900], answerable_share=0.4, balance=1.0, questions=4, seed=3)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    data = DATA
    scen = build_scenario(data)
    strategies = build_strategies(data.strategies, tmp_path_factory.mktemp("cache"), count_words)
    builder = ExampleBuilder(scen, data, count_words, strategies)
    return scen, builder.build(60, "train"), builder.build(12, "test")


def test_prompts_are_compares_zero_shot_prompts(examples):
    scen, train, _ = examples
    for e in train:
        context = e.prompt.split("Documents:\n", 1)[1].rsplit("\n\nQuestion: ", 1)[0]
        question = e.prompt.rsplit("Question: ", 1)[1].removesuffix("\nAnswer:")
        instructions = scen.instructions if e.form == "answer" else scen.instructions.rstrip() + "\n" + ANSWERABLE_NOTE
        expected = build_prompt(instructions, [], context, question)
        assert e.prompt == expected.text and e.messages == expected.messages
        assert "### Example" not in e.prompt and e.prompt.endswith("Answer:")
        assert json.dumps(json.loads(e.target), ensure_ascii=False, separators=(",", ":")) == e.target  # compact


def test_targets_are_the_wire_answers(examples):
    scen, train, _ = examples
    for e in train:
        scored = {k: v for k, v in e.gold.items() if k in scen.fields} if e.gold else None
        if e.form == "answer":
            answer, reason = read_answer(e.target, scen)
            assert reason is None and answer == scored
            assert json.loads(e.target)["occupation"] == e.gold["occupation"]  # unscored, but learned
        else:
            value, reason = parse_answer(e.target, answerable_schema(scen))
            assert reason is None and value["answerable"] == e.needle_shown
            if e.needle_shown:
                assert read_answer(json.dumps(value["answer"]), scen)[0] == scored


def test_absent_needle_is_really_absent(examples):
    _, train, _ = examples
    absent = [e for e in train if not e.needle_shown]
    assert absent and all(e.form == "answerable" for e in absent)
    for e in absent:
        docs = e.prompt.split("Documents:\n", 1)[1].rsplit("\n\nQuestion:", 1)[0]
        assert e.subject.lower() not in docs.lower()
    shown = [e for e in train if e.needle_shown]
    assert all(e.subject.split()[-1].lower() in e.prompt.split("Question:")[0].lower() for e in shown)


def test_answerable_share(examples):
    _, train, _ = examples
    groups = {e.group: e.form for e in train}
    assert len(groups) == 60 and 10 <= sum(f == "answerable" for f in groups.values()) <= 38  # 40% of 60
    answerable = [e for e in train if e.form == "answerable"]
    assert abs(sum(e.needle_shown for e in answerable) - len(answerable) / 2) <= len(answerable) / 4  # about half


def test_booleans_are_balanced(tmp_path):
    """About 29% (sportsperson) and 25% (politician) are true in the population; balanced (every
    combination as often as the rarest), 38-39% measured over 400 contexts. 200 contexts keep the
    share's sd near 0.03 (60, the shared fixture's, drew 0.32 once)."""
    builder = ExampleBuilder(
        build_scenario(DATA), DATA, count_words, build_strategies(DATA.strategies, tmp_path, count_words)
    )
    golds = [e.gold for e in builder.build(200, "train") if e.gold]
    for f in ("sportsperson", "politician"):
        share = sum(g[f] for g in golds) / len(golds)
        assert 0.33 <= share <= 0.6, (f, share)


def test_full_contexts_are_asked_several_questions(examples):
    """A group shares its context: the prompts differ only in the question; the needle and other people."""
    _, train, _ = examples
    groups: dict[int, list] = {}
    for e in train:
        groups.setdefault(e.group, []).append(e)
    assert max(len(g) for g in groups.values()) == DATA.questions and len(train) > 1.5 * len(groups)
    for g in groups.values():
        assert len({e.prompt.rsplit("Question:", 1)[0] for e in g}) == 1
        assert len({e.subject for e in g}) == len(g)
        assert {e.form for e in g} == {g[0].form}
    depths = [e.depth for e in train if e.depth is not None]
    assert min(depths) == 0 and max(depths) == 100  # people asked about sit anywhere in the context


def test_a_retriever_is_asked_one_question_per_context(tmp_path):
    data = DataConfig(lengths=[500, 900], strategies=["rag-dense"], answerable_share=0.0, seed=4)
    scen = build_scenario(data)
    builder = ExampleBuilder(scen, data, count_words, build_strategies(data.strategies, tmp_path, count_words))
    train = builder.build(6, "train")
    assert len(train) == 6 and len({e.group for e in train}) == 6
    for e in train:  # the retrieved chunks hold the asked-about person
        assert e.strategy == "rag-dense" and e.subject.lower() in e.prompt.split("Question:")[0].lower()


def _route_examples(tmp_path, n: int, strategy: str, **data):
    """Answerable-form examples over a retriever's views (small chunks: views that cut a biography are common)."""
    config = DataConfig(lengths=[900, 1400], strategies=[strategy], answerable_share=1.0, **data)
    builder = ExampleBuilder(
        build_scenario(config), config, count_words, build_strategies(config.strategies, tmp_path, count_words)
    )
    return builder.build(n, "train")


def _partial(e) -> bool:
    """Not answerable, yet the person asked about is in the retrieved chunks."""
    context = e.prompt.split("Documents:\n", 1)[1].rsplit("\n\nQuestion:", 1)[0].lower()
    return not e.needle_shown and e.subject.split()[-1].lower() in context


def test_retrieved_answerable_keeps_partial_views_as_not_answerable(tmp_path):
    """With retrieved_answerable, a retriever's view that cut part of the needle is a not-answerable example
    (the asked-about person is in the chunks, the whole biography is not); off, such views are drawn again."""
    strategy = "rag-dense:top_k=1,chunk_size=48"
    cut = [e for e in _route_examples(tmp_path, 8, strategy, retrieved_answerable=True, seed=3) if _partial(e)]
    assert cut and all(json.loads(e.target) == {"answerable": False, "answer": None} for e in cut)
    assert not any(_partial(e) for e in _route_examples(tmp_path, 4, strategy, retrieved_answerable=False, seed=3))


def test_partial_share_draws_views_the_retriever_cut(tmp_path):
    """partial_share: that share of answerable contexts is drawn until the retriever cut someone's gold documents,
    each such view a not-answerable example about a person the chunks show; it needs retrieved_answerable."""
    strategy = "rag-dense:top_k=2,chunk_size=64"
    made = _route_examples(tmp_path, 4, strategy, retrieved_answerable=True, partial_share=1.0, seed=4)
    assert len({e.group for e in made}) == 4
    assert all(_partial(e) and json.loads(e.target) == {"answerable": False, "answer": None} for e in made)
    with pytest.raises(ValueError, match="retrieved_answerable"):
        DataConfig(partial_share=0.5)


def test_examples_are_deterministic_and_test_examples_disjoint(examples, tmp_path):
    scen, train, test = examples
    again = ExampleBuilder(scen, DATA, count_words, build_strategies(DATA.strategies, tmp_path, count_words))
    assert [e.model_dump() for e in again.build(10, "train")] == [e.model_dump() for e in train if e.group < 10]
    train_names = {e.subject for e in train}
    assert test and all(e.split == "test" for e in test) and not train_names & {e.subject for e in test}
    assert all(not TRAIN_LETTERS & set(e.subject.split()[-1].lower()) for e in test)


def test_a_scenario_without_a_training_split_says_so_in_one_line():
    from harness.registry import register_scenario
    from harness.scenario import Scenario

    @register_scenario("no-train-split")
    class NoTrain(Scenario):
        fields = ["x"]
        instructions = "x"

        def answer_schema(self):
            return {"type": "object"}

        def samples(self, *a):
            return []

        def shots(self, n):
            return []

        def score(self, a, g):
            return {}

    data = DataConfig(scenario="no-train-split")
    with pytest.raises(UsageError, match="no 'train' split") as e:
        ExampleBuilder(build_scenario(data), data, count_words, [])
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------ the export
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from harness import api

    out = tmp_path_factory.mktemp("export") / "train.jsonl"
    stats = api.export_finetune(ExportConfig(data=DataConfig(lengths=[300, 700], seed=1), n=12, test_n=4, out=out))
    return out, stats


def test_export_is_chat_jsonl_with_a_held_out_split(exported):
    out, stats = exported
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    groups = Counter((r["split"], r["meta"]["group"]) for r in rows)
    assert Counter(split for split, _ in groups) == {"train": 12, "test": 4}  # contexts; rows: their questions
    scen = BioNeedle()
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        system, user, assistant = (m["content"] for m in r["messages"])
        assert system.startswith(scen.instructions.strip()[:60])
        assert user.startswith("Documents:\n") and "\n\nQuestion: What is known about " in user
        assert assistant == r["completion"] and r["prompt"].endswith("Answer:")
        schema_ok = (
            parse_answer(assistant, answerable_schema(scen))[0]
            if r["meta"]["form"] == "answerable"
            else read_answer(assistant, scen)[0]
        )
        assert schema_ok is not None
    train = {r["meta"]["subject"] for r in rows if r["split"] == "train"}
    assert not train & {r["meta"]["subject"] for r in rows if r["split"] == "test"}
    assert sum(s["rows"] for s in stats) == len(rows) > 16
    assert all(s["prompt_mean"] > 100 and s["answer_max"] >= s["answer_mean"] > 10 for s in stats)


def test_export_equals_the_training_data(exported, tmp_path):
    """The export's train rows are the examples harness finetune trains on, for the same settings."""
    from harness.endpoints.embedded import prepare_embedded_model
    from harness.finetune.config import FinetuneConfig
    from harness.finetune.run import build_examples

    out, _ = exported
    rows = [json.loads(line) for line in out.read_text().splitlines() if '"split": "train"' in line]
    config = FinetuneConfig(data=DataConfig(lengths=[300, 700], seed=1), steps=12, eval_n=0)
    train, _ = build_examples(config, prepare_embedded_model(), tmp_path)
    assert [(r["prompt"], r["completion"]) for r in rows] == [(e.prompt, e.target) for e in train]


@pytest.mark.parametrize("served", ["gemma-3-270m-bio-needle", "gemma-3-270m-reader"])
def test_the_shipped_reader_was_trained_on_the_data_finetune_builds_today(served):
    """Each shipped adapter's provenance holds: its recorded settings build, from this code, the examples it
    was trained on. A reader of several scenarios records the hash of each part's first contexts (a part's
    examples are prefix-stable), so this check rebuilds those, not the whole of its data; a single-scenario
    reader is rebuilt in full. A change to a generator or the example builder that alters training data
    fails here until a reader retrained on it is shipped."""
    from harness.endpoints.embedded import prepare_embedded_model
    from harness.finetune.config import FinetuneConfig
    from harness.finetune.data import data_hash
    from harness.finetune.run import build_examples, prefix_hashes
    from harness.reader import shipped_reader

    folder = shipped_reader(served)
    assert folder is not None, served
    info = json.loads((folder / "finetune.json").read_text())
    config = FinetuneConfig(**info["config"]).model_copy(update={"eval_n": 0})
    if config.mix:
        prefix = info["data_prefix"]
        assert len(prefix["hashes"]) == len(config.mix) + 1
        assert prefix_hashes(config, prepare_embedded_model(), prefix["contexts"]) == prefix["hashes"]
        return
    train, _ = build_examples(config, prepare_embedded_model())
    assert len(train) == info["examples"] and data_hash(train) == info["data_hash"]


def test_export_cli_errors_are_one_line(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "data",
            "export-finetune",
            "--scenario",
            "nope",
            "--out",
            str(tmp_path / "x.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and "unknown scenario 'nope'" in p.stderr
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "data",
            "export-finetune",
            "--lengths",
            "2k..1k",
            "--out",
            str(tmp_path / "x.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and "lo < hi" in p.stderr
    assert not Path(tmp_path / "x.jsonl").exists()


def test_bf16_training_only_where_the_cpu_computes_it(monkeypatch):
    """Emulated bf16 (AVX2 CPUs) trains several times slower than float32: the default follows the CPU."""
    from harness.endpoints.cpu import read_facts
    from harness.finetune.config import FinetuneConfig

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert FinetuneConfig().bf16 is False
    assert FinetuneConfig(bf16=True).bf16 is True  # asked for: kept
    assert FinetuneConfig().model_dump()["bf16"] is False  # recorded as decided, not as "auto"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert FinetuneConfig().bf16 is read_facts().native_bf16


def test_agent_trajectories_are_optional_groups_of_steps(tmp_path):
    """agent_share makes contexts into trajectories: [a missed search,] the subject's search, the read, the answer
    action, the answer over what was read; each step an example of one group. Off (the default), nothing changes."""
    data = DataConfig(lengths=[900, 1400], agent_share=1.0, agent_recovery=1.0, seed=5)
    builder = ExampleBuilder(
        build_scenario(data), data, count_words, build_strategies(data.strategies, tmp_path, count_words)
    )
    train = builder.build(3, "train")
    groups: dict[int, list] = {}
    for e in train:
        groups.setdefault(e.group, []).append(e)
    assert len(groups) == 3 and all(e.form == "agent" and e.strategy.startswith("agentic") for e in train)
    recovered = 0
    for steps in groups.values():
        actions = [json.loads(e.target) for e in steps[:-1]]
        assert [a["action"] for a in actions][-3:] == ["search", "read", "answer"]
        assert actions[-3]["input"] == steps[0].subject
        recovered += len(actions) == 4 and actions[0]["action"] == "search" and actions[0]["input"] != steps[0].subject
        assert read_answer(steps[-1].target, builder.scenario)[0] is not None  # the answer, in the scenario's form
        assert steps[-1].prompt.endswith("Answer:") and all('"action"' in e.prompt for e in steps[:-1])
    assert recovered >= 1
    off = ExampleBuilder(
        build_scenario(DATA), DATA, count_words, build_strategies(DATA.strategies, tmp_path, count_words)
    )
    plain = DATA.model_copy(update={"agent_share": 0.0, "retrieved_answerable": False})
    again = ExampleBuilder(
        build_scenario(plain), plain, count_words, build_strategies(plain.strategies, tmp_path, count_words)
    )
    assert [e.model_dump() for e in off.build(4, "train")] == [e.model_dump() for e in again.build(4, "train")]
