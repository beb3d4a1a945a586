"""The built-in scenarios beside bio-needle (kv-retrieval, bio-mdqa, bio-aggregate, bio-multihop), without a server:
determinism for a seed, the pairing across depths, gold answers that agree with the text, lengths
in tokens, scoring (exact, and set precision/recall), the null baseline, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import registry
from harness.errors import UsageError
from harness.scenario import Scenario
from harness.scoring.answers import mark, read_answer, set_precision_recall, wire_answer, wire_schema
from scenarios.bio_aggregate import BioAggregate
from scenarios.bio_mdqa import BioMDQA
from scenarios.bio_multihop import BioMultihop
from scenarios.bio_needle.generator import BioGenerator
from scenarios.kv_retrieval import KVRetrieval


def words(texts):
    """A deterministic stand-in for the endpoint's tokenizer (about 1.3 tokens a word)."""
    return [len(t.split()) * 4 // 3 + 1 for t in texts]


LENGTHS = [1200, 3000]
DEPTHS = [0, 25, 50, 100]
CASES = [
    ("kv-retrieval", KVRetrieval, {}),
    ("kv-retrieval", KVRetrieval, {"variant": "multi_subkey"}),
    ("bio-mdqa", BioMDQA, {}),
    ("bio-mdqa", BioMDQA, {"documents": 0}),
    ("bio-aggregate", BioAggregate, {}),
    ("bio-aggregate", BioAggregate, {"question": "list", "targets": 3}),
    ("bio-aggregate", BioAggregate, {"answer_form": "tally"}),
    ("bio-aggregate", BioAggregate, {"question": "list", "answer_form": "tally"}),
    ("bio-aggregate", BioAggregate, {"answer_form": "table"}),
    ("bio-aggregate", BioAggregate, {"question": "list", "answer_form": "table"}),
    ("bio-multihop", BioMultihop, {}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items()) or 'default'}" for n, _, p in CASES]


def build(cls, params, seed=0, needles=3, lengths=LENGTHS, depths=DEPTHS):
    sc = cls(cls.Params(**params), seed=seed)
    return sc, sc.samples(lengths, depths, needles, words)


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def grid(request):
    name, cls, params = request.param
    sc, samples = build(cls, params)
    return name, cls, params, sc, samples


def dump(samples):
    return [s.model_dump() for s in samples]


# -- the grid -----------------------------------------------------------------------------------------
def test_registered_by_entry_point():
    for name, cls, _ in CASES:
        assert registry.get("scenario", name) is cls


def test_grid_shape_ids_and_order(grid):
    name, _, _, sc, samples = grid
    assert len(samples) == len(LENGTHS) * len(DEPTHS) * 3
    assert len({s.id for s in samples}) == len(samples)
    assert [s.key for s in samples] == sorted(s.key for s in samples)
    assert samples[0].id == f"{name}/L{LENGTHS[0]}/d0/n0"
    for s in samples:
        assert s.scenario == name
        assert len({d.id for d in s.documents}) == len(s.documents)
        assert s.gold_ids and set(s.gold_ids) <= {d.id for d in s.documents}


def test_deterministic_for_a_seed(grid):
    _, cls, params, _, samples = grid
    _, again = build(cls, params)
    assert dump(again) == dump(samples)
    _, other = build(cls, params, seed=1)
    assert [s.gold for s in other] != [s.gold for s in samples]


def test_prefix_stable_in_needles(grid):
    """Asking for more needles never changes the first ones (an --until-decided run's rounds)."""
    _, cls, params, _, samples = grid
    _, fewer = build(cls, params, needles=2)
    keep = [s for s in samples if s.needle_index < 2]
    assert dump(fewer) == dump(keep)


def test_pairing_needle_i_is_the_same_item_at_every_depth(grid):
    """What the paired tests rely on: at a length, needle i has the same question, gold and gold
    text at every depth, and the background is the same documents in the same order."""
    _, _, _, _, samples = grid
    scored = lambda s: {k: v for k, v in s.gold.items() if k != "people"}  # noqa: E731 (a tally follows the order)
    for L in LENGTHS:
        for i in range(3):
            cell = [s for s in samples if s.length == L and s.needle_index == i]
            assert len(cell) == len(DEPTHS)
            first = cell[0]
            gold_texts = lambda s: sorted(d.text for d in s.documents if d.id in s.gold_ids)  # noqa: E731
            background = lambda s: [d.id for d in s.documents if d.id not in s.gold_ids]  # noqa: E731
            for s in cell[1:]:
                assert (s.question, scored(s), s.subject, s.gold_ids) == (
                    first.question,
                    scored(first),
                    first.subject,
                    first.gold_ids,
                )
                assert gold_texts(s) == gold_texts(first)
                assert background(s) == background(first)
        # and across lengths, needle i asks the same thing
        for i in range(3):
            golds = {json.dumps(scored(s)) for s in samples if s.needle_index == i}
            assert len(golds) == 1


def test_lengths_are_filled_in_tokens(grid):
    name, _, params, _, samples = grid
    for s in samples:
        assert s.context_tokens <= s.length
        if name == "bio-mdqa" and params.get("documents", 20):
            continue  # k documents: the length is a cap
        biggest = max(words([d.text for d in s.documents]))
        assert s.context_tokens >= s.length - 2 * biggest - 2, s.id


def test_depth_moves_the_gold(grid):
    name, _, _, _, samples = grid
    for s in samples:
        ids = [d.id for d in s.documents]
        pos = [ids.index(g) for g in s.gold_ids]
        if s.depth == 0:
            assert min(pos) == 0
        if s.depth == 100 and name != "bio-aggregate":
            assert pos[0] == len(ids) - 1 and (name == "bio-multihop" or len(pos) == 1)
    if name == "bio-aggregate":  # the matches sit later for a later depth
        for L in LENGTHS:
            mean = {}
            for d in (0, 100):
                s = next(x for x in samples if x.length == L and x.depth == d and x.needle_index == 0)
                ids = [x.id for x in s.documents]
                mean[d] = sum(ids.index(g) for g in s.gold_ids) / len(s.gold_ids) / len(ids)
            assert mean[0] < mean[100]


# -- gold answers agree with the text ---------------------------------------------------------------------
def test_kv_gold_is_the_named_keys_value():
    for params in ({}, {"variant": "multi_subkey"}):
        _, samples = build(KVRetrieval, params)
        for s in samples:
            pairs = {d.id: json.loads(d.text) for d in s.documents}
            (needle,) = s.gold_ids
            assert pairs[needle] == {s.subject: s.gold["value"]}
            assert s.subject in s.question
            others = [k for d, p in pairs.items() if d != needle for k in p]
            assert s.subject not in others
            assert all(s.gold["value"] not in d.text for d in s.documents if d.id != needle)


def test_kv_multi_subkey_distractors_share_parts_of_the_key():
    _, samples = build(KVRetrieval, {"variant": "multi_subkey"}, lengths=[1200], depths=[50], needles=2)
    for s in samples:
        gold = s.subject.split("-")
        for d in s.documents:
            if d.id in s.gold_ids:
                continue
            (key,) = json.loads(d.text)
            shared = sum(a == b for a, b in zip(key.split("-"), gold))
            assert 2 <= shared <= 4 and key != s.subject
    _, plain = build(KVRetrieval, {}, lengths=[1200], depths=[50], needles=1)
    gold = plain[0].subject.split("-")
    assert all(
        sum(a == b for a, b in zip(json.loads(d.text).popitem()[0].split("-"), gold)) == 0
        for d in plain[0].documents
        if d.id not in plain[0].gold_ids
    )


def _people(seed=0, n=3000):
    gen = BioGenerator(seed)
    return {r.bio: r for split in ("haystack", "needles") for r in gen.records(split, n)}


def test_mdqa_gold_is_the_named_persons_birth_year():
    people = _people(n=400)
    _, samples = build(BioMDQA, {})
    for s in samples:
        recs = [people[d.text] for d in s.documents]
        (needle,) = s.gold_ids
        gold_rec = people[next(d.text for d in s.documents if d.id == needle)]
        assert gold_rec.name == s.subject and s.question == f"In which year was {s.subject} born?"
        assert s.gold == {"year": gold_rec.labels.date_of_birth.year}
        assert str(s.gold["year"]) in gold_rec.bio
        assert sum(r.name == s.subject for r in recs) == 1
        assert s.meta["documents"] == len(s.documents) <= 20


def test_mdqa_k_documents_and_positions():
    _, samples = build(BioMDQA, {"documents": 5}, lengths=[3000], depths=[0, 50, 100], needles=1)
    assert [len(s.documents) for s in samples] == [5, 5, 5]
    assert [s.meta["gold_position"] for s in samples] == [1, 3, 5]
    with pytest.raises(UsageError):
        BioMDQA(BioMDQA.Params(documents=1))


def test_aggregate_gold_agrees_with_the_labels():
    people = _people(n=3000)
    for form in ("count", "list"):
        sc, samples = build(BioAggregate, {"question": form, "targets": 3})
        for s in samples:
            q = sc.drawn(3)[s.needle_index]
            matching = [people[d.text] for d in s.documents if q.criterion.matches(people[d.text].labels)]
            assert {d.id for d in s.documents if q.criterion.matches(people[d.text].labels)} == set(s.gold_ids)
            if form == "count":
                assert s.gold == {"count": len(matching)} and 1 <= len(matching) <= 3
            else:
                assert sorted(s.gold["names"]) == sorted(r.name for r in matching)
            assert q.criterion.phrase() in s.question


@pytest.mark.parametrize("form", ["count", "list"])
def test_aggregate_tally_decides_every_person_shown_and_is_counted(form):
    """The tally form writes a decision for each biography, in the context's order; the count is the people
    it marked and the list their names, so one wrong decision moves the count by one."""
    people = _people(n=3000)
    sc, samples = build(BioAggregate, {"question": form, "targets": 3, "answer_form": "tally"})
    for s in samples:
        q = sc.drawn(3)[s.needle_index]
        assert s.gold["people"] == [
            {"name": people[d.text].name, "match": q.criterion.matches(people[d.text].labels)} for d in s.documents
        ]
        assert sc.encode_answer(s.gold) == {"people": s.gold["people"]}
        assert sc.decode_answer(sc.encode_answer(s.gold)) == s.gold
    s = samples[0]
    flipped = [dict(p) for p in s.gold["people"]]
    wrong = next(p for p in flipped if not p["match"])
    wrong["match"] = True
    marks, score = mark(sc, sc.decode_answer({"people": flipped}), s.gold)
    if form == "count":
        assert sc.decode_answer({"people": flipped})["count"] == len(s.gold_ids) + 1 and score == 0.0
    else:
        assert marks["recall"] == 1.0 and marks["precision"] == len(s.gold_ids) / (len(s.gold_ids) + 1)
    assert "one entry for each biography" in sc.instructions
    for question in sc.questions(s)[1:]:  # fine-tuning's other questions of the context: tallies of their own
        crit = question.meta["criterion"]
        marked = [p["name"] for p in question.gold["people"] if p["match"]]
        assert len(marked) == len(question.gold_ids) and crit != s.meta["criterion"]
    shot = sc.shots(1)[0]
    assert len(shot.answer["people"]) == len(shot.documents)
    assert all(p["name"].lower() in d.text.lower() for p, d in zip(shot.answer["people"], shot.documents))


@pytest.mark.parametrize("form", ["count", "list"])
def test_aggregate_table_writes_each_persons_facts_and_the_criterion_is_applied(form):
    """The table form writes every biography's facts, in order and whatever the question; the score applies
    the question's criterion to them, so one wrong fact about a person moves the count by one."""
    people = _people(n=3000)
    sc, samples = build(BioAggregate, {"question": form, "targets": 3, "answer_form": "table"})
    for s in samples:
        q = sc.drawn(3)[s.needle_index]
        records = [people[d.text] for d in s.documents]
        assert [p["name"] for p in s.gold["people"]] == [r.name for r in records]
        assert [p["born"] for p in s.gold["people"]] == [r.labels.date_of_birth.year for r in records]
        # the occupation, in the biography's words, is written before the roles it decides (never scored)
        assert all(p["occupation"] in r.bio for p, r in zip(s.gold["people"], records) if p["occupation"] != "unknown")
        assert all(list(p).index("occupation") < list(p).index("politician") for p in s.gold["people"])
        assert [q.criterion.admits(p) for p in s.gold["people"]] == [q.criterion.matches(r.labels) for r in records]
        assert sc.encode_answer(s.gold) == {"people": s.gold["people"]}
        assert mark(sc, sc.decode_answer(sc.encode_answer(s.gold)), s.gold)[1] == 1.0
    s = next(s for s in samples if s.gold["criterion"]["kind"] == "nationality")
    wrong = [dict(p) for p in s.gold["people"]]
    other = next(p for p in wrong if p["nationality"] != s.gold["criterion"]["value"])
    other["nationality"] = s.gold["criterion"]["value"].upper()  # compared case-insensitively
    marks, score = mark(sc, sc.decode_answer({"people": wrong}), s.gold)
    if form == "count":
        assert sc.apply({"people": wrong}, s.gold)["count"] == len(s.gold_ids) + 1 and score == 0.0
    else:
        assert marks["recall"] == 1.0 and marks["precision"] == len(s.gold_ids) / (len(s.gold_ids) + 1)
    role = next(s for s in samples if s.gold["criterion"]["kind"] != "nationality")
    kind, year = role.gold["criterion"]["kind"], role.gold["criterion"]["value"]
    late = [dict(p, born=year) if p[kind] and 0 < p["born"] < year else p for p in role.gold["people"]]
    assert sc.apply({"people": late}, role.gold)[sc.answer_field] in (0, [])  # "before" the year, not in it
    for question in sc.questions(s)[1:]:  # other questions of the context: the same entries, another criterion
        assert question.gold["people"] == s.gold["people"] and question.gold["criterion"] != s.gold["criterion"]
        assert mark(sc, {"people": s.gold["people"]}, question.gold)[1] == 1.0
    shot = sc.shots(1)[0]
    assert len(shot.answer["people"]) == len(shot.documents)
    assert all(p["name"].lower() in d.text.lower() for p, d in zip(shot.answer["people"], shot.documents))


def test_aggregate_questions_vary_in_kind_and_count():
    sc = BioAggregate(seed=0)
    qs = sc.drawn(9)
    assert {q.criterion.kind for q in qs} == {"politician", "nationality", "sportsperson"}
    assert len({len(q.matches) for q in qs}) > 1  # counts vary, so the null baseline is not 100%
    names = [r.name for q in qs for r in q.matches]
    assert len(names) == len(set(names))


# -- scoring ----------------------------------------------------------------------------------------------
def test_set_precision_recall():
    assert set_precision_recall(["Ana Bo", "Cy Dee"], ["ana  bo", "Eve Fo"]) == (0.5, 0.5)
    assert set_precision_recall(["A", "a", "B"], ["A", "B", "C", "D"]) == (1.0, 0.5)
    assert set_precision_recall([], ["A"]) == (0.0, 0.0)
    assert set_precision_recall([], []) == (1.0, 1.0)
    assert set_precision_recall(["A"], []) == (0.0, 1.0)
    assert set_precision_recall("A", ["A"]) == (0.0, 0.0)
    assert set_precision_recall([1, 2], [2, 3]) == (0.5, 0.5)


@pytest.mark.parametrize("name,cls,params", CASES, ids=IDS)
def test_wire_form_round_trip_and_marks(name, cls, params):
    sc, samples = build(cls, params, lengths=[3000], depths=[50], needles=2)
    schema = wire_schema(sc)
    assert schema["type"] == "object"
    assert schema["required"] == (["answer"] if sc.answer_schema()["type"] != "object" else ["people"])
    for s in samples:
        written = wire_answer(sc, s.gold)
        answer, reason = read_answer(json.dumps(written), sc)
        # the scored form, or (table form) the entries the score applies the gold's criterion to
        assert reason is None and answer == {k: s.gold[k] for k in answer}
        marks, score = mark(sc, answer, s.gold)
        assert score == 1.0 and set(marks) == set(sc.fields)
    for shot in sc.shots(3):
        answer, reason = read_answer(json.dumps(wire_answer(sc, shot.answer)), sc)
        assert reason is None and answer == {k: shot.answer[k] for k in answer}
    bad, reason = read_answer('{"answer": "nonsense", "x": 1}', sc)
    assert bad is None and reason


def test_wrong_answers_score_zero_and_lists_score_partially():
    kv, ks = build(KVRetrieval, {}, lengths=[1200], depths=[50], needles=1)
    assert mark(kv, {"value": "00000000-0000-4000-8000-000000000000"}, ks[0].gold)[1] == 0.0
    assert mark(kv, {"value": ks[0].gold["value"].upper()}, ks[0].gold)[1] == 1.0
    md, ms = build(BioMDQA, {}, lengths=[3000], depths=[50], needles=1)
    assert mark(md, {"year": ms[0].gold["year"] + 1}, ms[0].gold)[1] == 0.0
    agg, gs = build(BioAggregate, {"question": "list", "targets": 4}, lengths=[3000], depths=[50], needles=6)
    s = next(x for x in gs if len(x.gold["names"]) >= 2)
    names = s.gold["names"]
    marks, score = mark(agg, {"names": names[:1] + ["Nobody Here"]}, s.gold)
    assert marks == {"precision": 0.5, "recall": pytest.approx(1 / len(names))}
    assert 0 < score < 1


def test_null_baselines_are_chance_level():
    kv = KVRetrieval(seed=0)
    ref = kv.reference_labels()
    assert len({r["value"] for r in ref}) == len(ref) == 1000
    md = BioMDQA(seed=0)
    null = md.null_answer(md.reference_labels())
    assert isinstance(null["year"], int)
    count = BioAggregate(seed=0)
    golds = count.reference_labels()
    assert 0.15 < sum(g == count.null_answer(golds) for g in golds) / len(golds) < 0.4
    lst = BioAggregate(BioAggregate.Params(question="list"))
    assert lst.reference_labels() == [] and lst.null_answer([{"names": ["A"]}]) == {"names": []}
    assert mark(lst, lst.null_answer([]), {"names": ["A", "B"]})[1] == 0.0


def test_grounding_rules():
    g = KVRetrieval().grounding()
    assert g.supports("value", "abc-1", '{"k": "ABC-1"}') and not g.supports("value", "abc-2", '{"k": "abc-1"}')
    assert not g.is_claim("value", "")
    y = BioMDQA().grounding()
    assert y.supports("year", 1951, "born 3 March 1951 in Lyon") and not y.supports("year", 1951, "in 19510")
    assert not y.is_claim("year", 0)
    assert BioAggregate().grounding() is None


# -- errors -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cls,params", CASES, ids=IDS)
def test_impossible_grids_are_one_line_errors(name, cls, params):
    sc = cls(cls.Params(**params))
    for lengths, depths, needles in (([], [50], 1), ([3000], [150], 1), ([3000], [50], 0), ([2], [50], 1)):
        with pytest.raises(UsageError) as e:
            sc.samples(lengths, depths, needles, words)
        assert "\n" not in str(e.value) and name in str(e.value)


def test_non_object_answers_need_a_field_to_go_under():
    class Two(Scenario):
        fields = ["a", "b"]
        instructions = ""

        def answer_schema(self):
            return {"type": "string"}

        def samples(self, *a):
            return []

        def shots(self, n):
            return []

        def score(self, answer, gold):
            return {}

    with pytest.raises(TypeError):
        Two().decode_answer("x")
    Two.answer_field = "a"
    assert Two().decode_answer("x") == {"a": "x"} and Two().encode_answer({"a": "x", "b": 1}) == "x"


def test_harness_scenarios_lists_the_built_ins():
    p = subprocess.run([sys.executable, "-m", "harness.cli", "scenarios"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for name in ("bio-needle", "kv-retrieval", "bio-mdqa", "bio-aggregate", "bio-multihop"):
        assert name in p.stdout


def test_old_file_flags_are_bio_needle_parameters(tmp_path):
    """--haystack-file/--needles-file are deprecated spellings of -P haystack_file=/needles_file=: the
    scenario checks them (here: before any server starts) and the note says what to write instead."""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "compare",
            "--haystack-file",
            str(tmp_path / "h.jsonl"),
            "--needles-file",
            str(tmp_path / "n.jsonl"),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "use -P haystack_file=PATH" in p.stderr and "use -P needles_file=PATH" in p.stderr
    assert f"{tmp_path / 'h.jsonl'}: no such file" in p.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("form", ["table", "tally"])
def test_an_answer_per_biography_raises_the_answer_limit_unless_one_was_given(form):
    """An entry per biography needs room to be written: compare raises the run's limit to what the longest
    context needs (Scenario.answer_tokens), but never over a --max-tokens the user gave."""
    from harness.compare import with_answer_room
    from harness.config import EndpointConfig, RunConfig

    scen = BioAggregate(BioAggregate.Params(answer_form=form))
    config = RunConfig(scenario="bio-aggregate", lengths=[1000, 2000])
    raised = with_answer_room(config, scen)
    assert raised.endpoint.max_tokens == scen.answer_tokens(2000) > scen.answer_tokens(1000) > 160
    assert "max_tokens" in raised.endpoint.model_fields_set  # recorded as given: a replay keeps it
    given = RunConfig(scenario="bio-aggregate", lengths=[2000], endpoint=EndpointConfig(max_tokens=100))
    assert with_answer_room(given, scen).endpoint.max_tokens == 100
    assert with_answer_room(config, BioAggregate()) is config  # the direct form: the default serves
