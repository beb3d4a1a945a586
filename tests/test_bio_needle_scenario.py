"""The bio-needle scenario: grid construction, placement, counting, scoring, loading, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.errors import UsageError
from scenarios.bio_needle import BioNeedle
from scenarios.bio_needle.generator import BioGenerator
from scenarios.bio_needle.loader import load_jsonl
from scenarios.bio_needle.scenario import BioNeedleParams, gold_of


def words(texts):
    """Deterministic stand-in for the endpoint's tokenizer (the real one is tested elsewhere)."""
    return [len(t.split()) for t in texts]


class RecordingCounter:
    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return words(texts)


LENGTHS = [400, 2000, 8000]
DEPTHS = [0, 25, 50, 75, 100]


@pytest.fixture(scope="module")
def grid():
    sc = BioNeedle(seed=0)
    return sc, sc.samples(LENGTHS, DEPTHS, 3, words)


def background(sample):
    return [d for d in sample.documents if d.id not in sample.gold_ids]


# ------------------------------------------------------------------------------ the grid
def test_grid_shape_and_ids(grid):
    _, samples = grid
    assert len(samples) == len(LENGTHS) * len(DEPTHS) * 3
    assert len({s.id for s in samples}) == len(samples)
    assert samples[0].id == "bio-needle/L400/d0/n0"
    assert {s.key for s in samples} == {(L, float(d), i) for L in LENGTHS for d in DEPTHS for i in range(3)}
    for s in samples:
        assert s.scenario == "bio-needle"
        assert len({d.id for d in s.documents}) == len(s.documents)


def test_context_fits_and_is_filled(grid):
    sc, samples = grid
    pool = sc.generator.records("haystack", 1000)
    for s in samples:
        counted = sum(words([d.text for d in s.documents])) + len(s.documents) - 1
        assert s.context_tokens == counted <= s.length
        # The next background bio would not have fitted beside the biggest needle.
        n = s.meta["haystack_documents"]
        biggest = max(x.meta["needle_tokens"] for x in samples if x.length == s.length)
        assert counted - s.meta["needle_tokens"] + biggest + words([pool[n].bio])[0] + 1 > s.length
    assert all(s.length - s.context_tokens < 200 for s in samples)


def test_same_haystack_for_every_depth_and_needle_of_a_length(grid):
    _, samples = grid
    for L in LENGTHS:
        cell = [s for s in samples if s.length == L]
        ids = {tuple(d.id for d in background(s)) for s in cell}
        assert len(ids) == 1
        assert all(i.startswith("h") for i in next(iter(ids)))
    # Longer contexts extend the shorter ones' haystack.
    short = [d.id for d in background(samples[0])]
    long = [d.id for d in background(samples[-1])]
    assert long[: len(short)] == short and len(long) > len(short)


def test_needle_is_the_same_person_everywhere(grid):
    sc, samples = grid
    needles = sc.generator.records("needles", 3)
    for s in samples:
        rec = needles[s.needle_index]
        assert s.subject == rec.name
        assert rec.name in s.question
        assert s.gold_ids == [f"n{s.needle_index}"]
        assert s.gold == rec.labels.model_dump() | {"occupation": rec.occupation}
        (needle_doc,) = [d for d in s.documents if d.id == s.gold_ids[0]]
        assert needle_doc.text == rec.bio
        # the needle person appears in no other document
        assert sum(rec.name.lower() in d.text.lower() for d in s.documents) == 1


@pytest.mark.parametrize("depth", DEPTHS)
def test_needle_at_boundary_nearest_depth(grid, depth):
    _, samples = grid
    for s in (x for x in samples if x.depth == depth):
        bg = background(s)
        k = s.meta["needle_position"]
        assert s.documents[k].id == s.gold_ids[0]
        offsets = [0]
        for t in words([d.text for d in bg]):
            offsets.append(offsets[-1] + t + 1)
        target = depth / 100 * offsets[-1]
        best = min(abs(o - target) for o in offsets)
        assert abs(offsets[k] - target) == best
        assert s.meta["needle_token_offset"] == offsets[k]
        assert abs(s.meta["actual_depth"] - 100 * offsets[k] / offsets[-1]) < 0.01
        if depth == 0:
            assert k == 0
        if depth == 100:
            assert k == len(s.documents) - 1
        if 0 < depth < 100 and s.length >= 2000:
            assert abs(s.meta["actual_depth"] - depth) < 5


def test_each_text_counted_once_in_few_calls():
    counter = RecordingCounter()
    sc = BioNeedle(seed=1)
    sc.samples([1000, 4000, 16000, 32000], DEPTHS, 3, counter)
    texts = [t for call in counter.calls for t in call]
    assert len(texts) == len(set(texts))
    assert 1 <= len(counter.calls) <= 3
    # Not wildly more than needed: the 32k haystack holds about 330 bios of ~100 words.
    assert len(texts) < 500
    # A second grid with the same counter reuses the counts.
    sc.samples([1000, 8000], [50], 2, counter)
    assert len([t for call in counter.calls for t in call]) == len(texts)


def test_grid_is_fast():
    sc = BioNeedle(seed=2)
    t0 = time.perf_counter()
    samples = sc.samples([4000, 8000, 16000, 32000], DEPTHS, 3, words)
    assert time.perf_counter() - t0 < 1.0
    assert len(samples) == 60


def test_deterministic_across_instances():
    a = BioNeedle(seed=5).samples([1500], [50], 2, words)
    b = BioNeedle(seed=5).samples([1500], [50], 2, words)
    c = BioNeedle(seed=6).samples([1500], [50], 2, words)
    assert [s.model_dump() for s in a] == [s.model_dump() for s in b]
    assert a[0].subject != c[0].subject


# ------------------------------------------------------------------------------ impossible grids
@pytest.mark.parametrize(
    "lengths, depths, needles, message",
    [
        ([20], [50], 1, "too small for needle"),
        ([2000], [120], 1, "outside 0-100"),
        ([2000], [-1], 1, "outside 0-100"),
        ([2000], [50], 0, "at least 1"),
        ([0], [50], 1, "positive integer"),
        ([], [50], 1, "no context lengths"),
    ],
)
def test_impossible_grid(lengths, depths, needles, message):
    with pytest.raises(UsageError, match=message):
        BioNeedle(seed=0).samples(lengths, depths, needles, words)


def test_length_error_is_one_line():
    with pytest.raises(UsageError) as e:
        BioNeedle(seed=0).samples([20], [50], 1, words)
    assert "\n" not in str(e.value) and "20" in str(e.value)


# ------------------------------------------------------------------------------ few-shot
def test_shots_are_small_disjoint_and_answerable(grid):
    sc, samples = grid
    shots = sc.shots(6)
    assert len(shots) == 6 and sc.shots(0) == []
    test_texts = {d.text for s in samples for d in s.documents}
    test_names = {s.subject for s in samples}
    for shot in shots:
        assert 2 <= len(shot.documents) <= 3
        assert all(d.id.startswith("s") for d in shot.documents)
        assert not {d.text for d in shot.documents} & test_texts
        named = [d for d in shot.documents if shot.question.split("about ")[1].rstrip("?").lower() in d.text.lower()]
        assert len(named) == 1
        assert set(shot.answer) == {*sc.fields, "occupation"}
        assert shot.question.split("about ")[1].rstrip("?") not in test_names
    ids = [d.id for s in shots for d in s.documents]
    assert len(ids) == len(set(ids))
    assert [s.model_dump() for s in sc.shots(3)] == [s.model_dump() for s in shots[:3]]
    assert [s.model_dump() for s in BioNeedle(seed=0).shots(3)] == [s.model_dump() for s in shots[:3]]


def test_shot_answer_matches_its_document():
    sc = BioNeedle(seed=0)
    by_name = {r.name: r for r in sc.generator.records("shots", 40)}
    for shot in sc.shots(10):
        name = shot.question.split("about ")[1].rstrip("?")
        assert shot.answer == gold_of(by_name[name])


# ------------------------------------------------------------------------------ schema & scoring
GOLD = {
    "nationality": "french",
    "date_of_birth": {"day": 12, "month": 3, "year": 1950},
    "date_of_death": {"day": 0, "month": 0, "year": 0},
    "sportsperson": True,
    "politician": False,
}


def test_nested_answer_schema_is_self_contained():
    sc = BioNeedle(BioNeedleParams(answer_form="nested"))
    schema = sc.answer_schema()
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == sc.fields == list(schema["properties"])
    assert schema["properties"]["nationality"]["type"] == "string"
    assert schema["properties"]["nationality"]["maxLength"] <= 64
    for f in ("date_of_birth", "date_of_death"):
        date = schema["properties"][f]
        assert date["additionalProperties"] is False and date["required"] == ["day", "month", "year"]
        assert date["properties"]["day"] == {"type": "integer", "minimum": 0, "maximum": 31}
        assert date["properties"]["month"] == {"type": "integer", "minimum": 0, "maximum": 12}
        assert date["properties"]["year"] == {"type": "integer", "minimum": 0, "maximum": 2100}
    for f in ("sportsperson", "politician"):
        assert schema["properties"][f] == {"type": "boolean"}
    assert sc.encode_answer(GOLD) == GOLD and sc.decode_answer(GOLD) == GOLD


def test_compact_answer_form_is_the_default_and_round_trips():
    sc = BioNeedle()
    schema = sc.answer_schema()
    assert (
        list(schema["properties"])
        == schema["required"]
        == ["nationality", "occupation", "born", "died", "sportsperson", "politician"]
    )
    assert schema["additionalProperties"] is False
    written = sc.encode_answer(GOLD)
    assert written == {
        "nationality": "french",
        "occupation": "unknown",  # GOLD does not say
        "born": "1950-03-12",
        "died": "0",
        "sportsperson": True,
        "politician": False,
    }
    assert list(written) == list(schema["properties"])  # written in the schema's order, as structured output does
    assert sc.decode_answer(written) == GOLD
    from harness.scoring.answers import parse_answer

    assert parse_answer(json.dumps(written), schema) == (written, None)
    for bad in ("12.3.1950", "1950-3-12", "19500", "unknown", "00"):
        assert parse_answer(json.dumps({**written, "born": bad}), schema)[0] is None
    # every label the generator makes survives the trip, partial dates included
    for r in sc.generator.records("needles", 300):
        gold = gold_of(r)
        assert sc.encode_answer(gold)["occupation"] == r.occupation
        assert sc.decode_answer(sc.encode_answer(gold)) == r.labels.model_dump()
        assert parse_answer(json.dumps(sc.encode_answer(gold)), schema)[0] is not None


def test_occupation_is_written_as_the_biography_words_it_and_never_scored():
    """The compact form writes the occupation before the roles (a word copied from the text to decide them
    from); gold carries it for synthetic people, the scorer ignores it, the nested form leaves it out."""
    from harness.scoring.answers import mark, read_answer

    sc = BioNeedle()
    records = sc.generator.records("needles", 200) + sc.generator.records("train-needles", 200)
    for r in records:
        assert r.occupation and r.occupation.lower() in r.bio.lower(), (r.occupation, r.bio[:120])
    assert len({r.occupation for r in records}) > 20
    samples = sc.samples([600], [50], 2, lambda texts: [len(t) // 4 for t in texts])
    for s in samples:
        assert s.gold["occupation"] in next(d.text for d in s.documents if d.id in s.gold_ids)
    gold = samples[0].gold
    wrong_job = json.dumps({**sc.encode_answer(gold), "occupation": "astronaut"})
    answer, reason = read_answer(wrong_job, sc)
    assert reason is None and "occupation" not in answer
    assert mark(sc, answer, gold) == ({f: 1.0 for f in sc.fields}, 1.0)
    nested = BioNeedle(BioNeedleParams(answer_form="nested"))
    assert "occupation" not in nested.encode_answer(gold) and '"occupation"' not in nested.instructions


@pytest.mark.parametrize(
    "date,text",
    [
        ({"day": 28, "month": 1, "year": 1951}, "1951-01-28"),
        ({"day": 0, "month": 1, "year": 1951}, "1951-01"),
        ({"day": 0, "month": 0, "year": 1951}, "1951"),
        ({"day": 0, "month": 0, "year": 0}, "0"),
        ({"day": 0, "month": 3, "year": 0}, "0000-03"),
        ({"day": 5, "month": 0, "year": 1900}, "1900-00-05"),
    ],
)
def test_compact_dates(date, text):
    from scenarios.bio_needle.scenario import decode_date, encode_date

    assert encode_date(date) == text and decode_date(text) == date


def test_compact_answers_are_scored_after_decoding():
    from harness.scoring.answers import mark, read_answer

    sc = BioNeedle()
    raw = json.dumps({**sc.encode_answer(GOLD), "born": "1950-03"})
    answer, reason = read_answer(raw, sc)
    assert reason is None and answer["date_of_birth"] == {"day": 0, "month": 3, "year": 1950}
    marks, score = mark(sc, answer, GOLD)
    assert marks == {**{f: True for f in sc.fields}, "date_of_birth": False} and score == 0.8


@pytest.mark.parametrize("form", ["compact", "nested"])
def test_instructions_name_every_key_of_the_answer_form(form):
    sc = BioNeedle(BioNeedleParams(answer_form=form))
    for key in sc.answer_schema()["properties"]:
        assert f'"{key}"' in sc.instructions
    assert "unknown" in sc.instructions


def test_correct_answer_scores_all_true():
    assert BioNeedle().score(dict(GOLD), GOLD) == {f: True for f in BioNeedle.fields}


@pytest.mark.parametrize("variant", ["French", " french ", "FRENCH", "french\n"])
def test_nationality_case_and_space_insensitive(variant):
    assert BioNeedle().score({**GOLD, "nationality": variant}, GOLD)["nationality"]


def test_unknown_compared_like_any_value():
    gold = {**GOLD, "nationality": "unknown"}
    sc = BioNeedle()
    assert sc.score({**GOLD, "nationality": "Unknown"}, gold)["nationality"]
    assert not sc.score({**GOLD, "nationality": "french"}, gold)["nationality"]
    assert not sc.score({**GOLD, "nationality": "frenchman"}, GOLD)["nationality"]


def test_dates_must_match_exactly():
    sc = BioNeedle()
    off_by_one = sc.score({**GOLD, "date_of_birth": {"day": 13, "month": 3, "year": 1950}}, GOLD)
    assert off_by_one["date_of_birth"] is False
    assert all(v for k, v in off_by_one.items() if k != "date_of_birth")
    assert not sc.score({**GOLD, "date_of_birth": {"day": 12, "month": 3, "year": 1951}}, GOLD)["date_of_birth"]
    assert not sc.score({**GOLD, "date_of_birth": {"day": 0, "month": 0, "year": 1950}}, GOLD)["date_of_birth"]
    assert not sc.score({**GOLD, "date_of_death": {"day": 0, "month": 0, "year": 2001}}, GOLD)["date_of_death"]
    assert not sc.score({**GOLD, "date_of_death": None}, GOLD)["date_of_death"]


def test_booleans_exact_and_missing_fields_false():
    sc = BioNeedle()
    marks = sc.score({**GOLD, "sportsperson": False, "politician": 0}, GOLD)
    assert marks["sportsperson"] is False and marks["politician"] is False
    assert sc.score({}, GOLD) == {f: False for f in sc.fields}


def test_null_answer_is_most_common_gold(grid):
    sc, samples = grid
    golds = [s.gold for s in samples]
    null = sc.null_answer(golds)
    assert set(null) == set(sc.fields)
    assert isinstance(null["sportsperson"], bool)


# ------------------------------------------------------------------------------ loader
def write_jsonl(path: Path, records, extra_lines=()) -> Path:
    lines = [r.to_json_line() for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_loader_reads_good_file_with_blank_lines(tmp_path):
    recs = BioGenerator(seed=4).records("needles", 5)
    path = tmp_path / "needles.jsonl"
    lines = [r.to_json_line() for r in recs]
    path.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n   \n", encoding="utf-8")
    assert load_jsonl(path) == recs


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda o: "{not json", "invalid JSON"),
        (
            lambda o: {**o, "json": {**o["json"], "date_of_birth": {**o["json"]["date_of_birth"], "month": "3?"}}},
            'json.date_of_birth.month: "3?" is not a number',
        ),
        (
            lambda o: {**o, "json": {**o["json"], "date_of_birth": {**o["json"]["date_of_birth"], "month": 3.5}}},
            "json.date_of_birth.month: expected an integer",
        ),
        (
            lambda o: {**o, "json": {k: v for k, v in o["json"].items() if k != "politician"}},
            "json.politician: missing",
        ),
        (lambda o: {**o, "json": {**o["json"], "sportsperson": 2}}, "json.sportsperson: 2 is not true or false"),
        (
            lambda o: {**o, "json": {**o["json"], "sportsperson": "maybe"}},
            'json.sportsperson: "maybe" is not true or false',
        ),
        (lambda o: {k: v for k, v in o.items() if k != "bio"}, "bio: missing"),
        (
            lambda o: {**o, "json": {**o["json"], "date_of_death": {"day": 0, "month": 13, "year": 0}}},
            "json.date_of_death.month",
        ),
        (lambda o: [1, 2], "expected a JSON object"),
    ],
)
def test_loader_rejects_bad_line_naming_file_and_line(tmp_path, mutate, expected):
    recs = BioGenerator(seed=4).records("needles", 4)
    bad = mutate(json.loads(recs[0].to_json_line()))
    path = write_jsonl(tmp_path / "needles.jsonl", recs, [bad if isinstance(bad, str) else json.dumps(bad)])
    with pytest.raises(UsageError) as e:
        load_jsonl(path)
    msg = str(e.value)
    assert msg.startswith(f"{path} line 5: ")
    assert expected in msg
    assert "\n" not in msg


def test_loader_missing_file(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_jsonl(tmp_path / "nope.jsonl")


# ------------------------------------------------------------------------------ real data files
@pytest.fixture
def files(tmp_path):
    g = BioGenerator(seed=11)
    hay = write_jsonl(tmp_path / "haystack.jsonl", g.records("haystack", 120))
    needles = write_jsonl(tmp_path / "needles.jsonl", g.records("needles", 4))
    return hay, needles


def test_files_replace_synthetic_haystack_and_needles(files):
    hay, needles = files
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles), seed=0)
    samples = sc.samples([1500, 4000], [0, 50, 100], 4, words)
    hay_texts = {r.bio for r in load_jsonl(hay)}
    needle_recs = load_jsonl(needles)
    for s in samples:
        assert s.subject == needle_recs[s.needle_index].name
        assert all(d.text in hay_texts for d in background(s))
        assert s.context_tokens <= s.length
    # shots still come from the synthetic split, never from the files
    shot_texts = {d.text for shot in sc.shots(3) for d in shot.documents}
    assert not shot_texts & (hay_texts | {r.bio for r in needle_recs})


def test_params_accept_strings_and_require_both(files):
    hay, needles = files
    params = BioNeedle.Params.model_validate({"haystack_file": str(hay), "needles_file": str(needles)})
    assert isinstance(params.haystack_file, Path)
    with pytest.raises(UsageError, match="both"):
        BioNeedle(BioNeedle.Params(haystack_file=hay))
    with pytest.raises(UsageError, match="both"):
        BioNeedle(BioNeedle.Params(needles_file=needles))


def test_haystack_file_too_small(files):
    hay, needles = files
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles))
    total = sum(words([r.bio for r in load_jsonl(hay)]))
    with pytest.raises(UsageError, match=rf"holds {total} tokens \(120 biographies\).*100000"):
        sc.samples([2000, 100000], [50], 1, words)


def test_more_needles_than_file_holds(files):
    hay, needles = files
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles))
    with pytest.raises(UsageError, match="holds 4 biographies; 5 needles requested"):
        sc.samples([2000], [50], 5, words)


def test_missing_data_file_is_usage_error(files, tmp_path):
    hay, _ = files
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=tmp_path / "missing.jsonl"))
    with pytest.raises(UsageError, match="no such file"):
        sc.samples([2000], [50], 1, words)


def test_needle_people_dropped_from_haystack_file(tmp_path):
    g = BioGenerator(seed=12)
    needles = g.records("needles", 2)
    hay = write_jsonl(tmp_path / "haystack.jsonl", [needles[0]] + g.records("haystack", 80))
    needles_path = write_jsonl(tmp_path / "needles.jsonl", needles)
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles_path))
    for s in sc.samples([3000], [0, 100], 2, words):
        assert "h0" not in {d.id for d in s.documents}
        assert [d.text for d in s.documents].count(needles[0].bio) == (s.needle_index == 0)
