"""Judge-free grounding: bio-needle's value matching, and the generic classifier of wrong fields."""

from __future__ import annotations

import pytest

from harness.record import Record
from harness.samples import Document, Sample
from harness.scenario import Grounding, Scenario
from harness.scoring.grounding import annotate, ground_record, grounding_summary, shown_segments
from scenarios.bio_needle import BioNeedle
from scenarios.bio_needle.generator import BioGenerator, wikify
from scenarios.bio_needle.grounding import BioGrounding

G = BioGrounding()
FIELDS = BioNeedle.fields


def d(day, month, year):
    return {"day": day, "month": month, "year": year}


# -- value matching -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, value",
    [
        ("Ana Bo (born 12 March 1950) is a painter.", d(12, 3, 1950)),
        ("Ana Bo (March 12, 1950 – June 3, 2001) was a painter.", d(12, 3, 1950)),
        ("Ana Bo (March 12, 1950 – June 3, 2001) was a painter.", d(3, 6, 2001)),
        (wikify("Ana Bo (March 12, 1950 – June 3, 2001) was a painter."), d(12, 3, 1950)),
        ("ana bo ( march 12 , 1950 -- june 3 , 2001 ) was a painter .", d(3, 6, 2001)),
        ("Ana Bo was born on the 2nd of March 1950 in Lyon.", d(2, 3, 1950)),
        ("Ana Bo (1950–2001) was a painter.", d(0, 0, 1950)),
        ("Ana Bo (1950–2001) was a painter.", d(0, 0, 2001)),
        ("ana bo , born in 1962 in lyon , is a chef .", d(0, 0, 1962)),
        ("Born in June 1941 in Porto, Ana Bo is a chef.", d(0, 6, 1941)),
        ("Born 12 March 1950", d(0, 3, 1950)),  # a month-precision claim consistent with a full date
    ],
)
def test_dates_in_every_surface_form(text, value):
    assert G.supports("date_of_birth", value, text)


@pytest.mark.parametrize(
    "text, value",
    [
        ("Ana Bo (born 12 March 1950) is a painter.", d(21, 3, 1950)),
        ("Ana Bo (born 12 March 1950) is a painter.", d(12, 4, 1950)),
        ("Ana Bo (born 12 March 1950) is a painter.", d(0, 0, 1951)),
        ("She ran 2:05:19 in 1988.", d(0, 0, 519)),
        ("Born 12 March 1950", d(12, 3, 1950 + 1)),
    ],
)
def test_dates_that_are_not_there(text, value):
    assert not G.supports("date_of_birth", value, text)


def test_nationality_demonym_country_and_city():
    assert G.supports("nationality", "french", "She is a French chemist.")
    assert G.supports("nationality", "French ", "she is a french chemist .")
    assert G.supports("nationality", "french", "He played for clubs in France and Spain.")  # a country named
    assert G.supports("nationality", "french", "born in Lyon")  # a city of that country
    assert G.supports("nationality", "american", "He moved to the United States.")
    assert not G.supports("nationality", "french", "He is a German engineer from Hamburg.")
    assert not G.supports("nationality", "dane", "He is Danish.")  # not a demonym of the vocabulary, not in the text


def test_booleans_and_abstentions():
    assert G.supports("sportsperson", True, "He won a gold medal in the eight at the 1960 Summer Olympics.")
    assert G.supports("sportsperson", True, "His father was a footballer.")  # a trap word still supports true
    assert not G.supports("sportsperson", True, "She is a painter known for landscapes.")
    assert G.supports("politician", True, "He served as mayor of Lyon from 1970 to 1980.")
    assert not G.supports("politician", True, "He wrote three symphonies.")
    for field, value in [
        ("nationality", "unknown"),
        ("nationality", " Unknown"),
        ("date_of_birth", d(0, 0, 0)),
        ("date_of_death", d(3, 4, 0)),
        ("sportsperson", False),
        ("politician", False),
    ]:
        assert not G.is_claim(field, value)
        assert not G.supports(field, value, "anything at all, 1950, French, footballer, mayor")


@pytest.mark.parametrize("seed", [0, 1])
def test_every_gold_claim_is_supported_by_its_own_biography(seed):
    """The surface forms cover everything the generator writes (both styles, every date format)."""
    gen = BioGenerator(seed)
    for split in ("haystack", "needles", "shots"):
        for rec in gen.records(split, 300):
            for f, v in rec.labels.model_dump().items():
                if G.is_claim(f, v):
                    assert G.supports(f, v, rec.bio), (f, v, rec.bio)


def test_scenario_hook():
    assert isinstance(BioNeedle().grounding(), BioGrounding)

    class Bare(Scenario):  # a scenario without a grounding module: no grounding, no crash
        name = "bare"
        fields = ["x"]
        instructions = "x"

        def answer_schema(self):
            return {}

        def samples(self, *a):
            return []

        def shots(self, n):
            return []

        def score(self, answer, gold):
            return {}

    Bare.__module__ = "tests_only_module_without_package"
    assert Bare().grounding() is None
    assert issubclass(BioGrounding, Grounding)


# -- the classifier -------------------------------------------------------------------------------------
NEEDLE = (
    "Ana Bo (born 12 March 1950) is a French painter. She married a German diplomat in 1975. "
    "She received the Golden Laurel in 1999."
)
OTHER = "Eli Ka (3 May 1930 – 9 May 1990) was a Kenyan footballer. He played for Mombasa United."
THIRD = "Ora Vi (born 1961) is a Chilean chef."


def sample():
    return Sample(
        id="s",
        scenario="bio-needle",
        length=100,
        depth=50.0,
        needle_index=0,
        documents=[Document(id="h0", text=OTHER), Document(id="n0", text=NEEDLE), Document(id="h1", text=THIRD)],
        gold_ids=["n0"],
        subject="Ana Bo",
        question="What is known about Ana Bo?",
        gold={
            "nationality": "french",
            "date_of_birth": d(12, 3, 1950),
            "date_of_death": d(0, 0, 0),
            "sportsperson": False,
            "politician": False,
        },
    )


def record(answer, pieces=None, valid=True, error=None):
    s = sample()
    marks = BioNeedle().score(answer, s.gold) if valid else {f: False for f in FIELDS}
    if pieces is None:
        pieces = [{"id": x.id, "doc_ids": [x.id]} for x in s.documents]
    return Record(
        strategy="full-context",
        sample_id="s",
        length=100,
        answer=answer if valid else None,
        valid=valid,
        error=error,
        marks=marks,
        shown={"pieces": pieces},
    )


def classes(rec):
    g = ground_record(rec, sample(), G, FIELDS)
    return {f: info["class"] for f, info in g["fields"].items()}


def test_each_wrong_field_gets_its_source():
    answer = {
        "nationality": "kenyan",  # only in the other biography: distractor
        "date_of_birth": d(0, 0, 1975),  # the needle's marriage year: misread
        "date_of_death": d(1, 1, 2001),  # nowhere: hallucination
        "sportsperson": True,  # footballer, in the other biography: distractor
        "politician": False,
    }  # right
    assert classes(record(answer)) == {
        "nationality": "distractor",
        "date_of_birth": "misread",
        "date_of_death": "hallucination",
        "sportsperson": "distractor",
        "politician": "correct",
    }
    answer = {
        "nationality": "german",
        "date_of_birth": d(12, 3, 1950),
        "date_of_death": d(0, 0, 0),
        "sportsperson": False,
        "politician": False,
    }
    assert classes(record(answer))["nationality"] == "misread"  # the spouse's demonym, in the needle
    answer["nationality"] = "unknown"
    assert classes(record(answer))["nationality"] == "omitted"
    g = ground_record(record(answer), sample(), G, FIELDS)
    assert g["fields"]["date_of_birth"] == {
        "claim": True,
        "supported": True,
        "in_needle": True,
        "in_other": False,
        "docs": ["n0"],
        "class": "correct",
    }


def test_invalid_and_failed_records():
    assert ground_record(record(None, valid=False), sample(), G, FIELDS) == {"status": "invalid", "fields": {}}
    assert ground_record(record(None, valid=False, error="HTTP 500"), sample(), G, FIELDS) is None


def test_retrieved_chunks_are_cut_at_document_boundaries():
    s = sample()
    joined = "\n\n".join(x.text for x in s.documents)
    start = joined.index("Mombasa United")
    chunk = joined[start : start + 60]  # the end of h0 and the start of the needle
    rec = record(
        {
            "nationality": "kenyan",
            "date_of_birth": d(12, 3, 1950),
            "date_of_death": d(0, 0, 0),
            "sportsperson": False,
            "politician": False,
        },
        pieces=[{"id": "c1", "doc_ids": ["h0", "n0"], "text": chunk, "rank": 0}],
    )
    segs = shown_segments(rec, s)
    assert [(x.doc_id, x.needle) for x in segs] == [("h0", False), ("n0", True)]
    assert segs[0].text == "Mombasa United." and NEEDLE.startswith(segs[1].text)
    # "kenyan" is not in the shown part of h0 (only "Mombasa United."), but Mombasa is a Kenyan city
    assert classes(rec)["nationality"] == "distractor"
    # a full date of the needle that was not shown (the chunk stops before it) is a hallucination
    rec.answer["date_of_birth"] = d(0, 0, 1999)
    rec.marks = BioNeedle().score(rec.answer, s.gold)
    assert classes(rec)["date_of_birth"] == "hallucination"  # 1999 is in the needle, but not in what was shown


def test_summary_rates():
    answers = [
        {
            "nationality": "kenyan",
            "date_of_birth": d(12, 3, 1950),
            "date_of_death": d(0, 0, 0),
            "sportsperson": False,
            "politician": False,
        },
        {
            "nationality": "french",
            "date_of_birth": d(0, 0, 1975),
            "date_of_death": d(0, 0, 0),
            "sportsperson": False,
            "politician": False,
        },
    ]
    recs = [record(a) for a in answers] + [record(None, valid=False)]
    annotate(recs, [sample()], BioNeedle())
    out = grounding_summary(recs, FIELDS)["by_strategy"]["full-context"]
    assert out["answered_fields"] == 10 and out["invalid_answers"] == 1
    assert out["distractor"] == 1 and out["misread"] == 1 and out["hallucination"] == 0 and out["omitted"] == 0
    assert out["claims"] == 4 and out["supported_claims"] == 4 and out["grounded_rate"] == 1.0
    assert out["distractor_rate"] == pytest.approx(0.1) and out["misread_share"] == pytest.approx(0.5)


def test_summarize_run_carries_grounding(tmp_path):
    from test_report_html import make_run

    from harness.report.summary import summarize_run
    from harness.store import RunStore

    summary, records, _ = summarize_run(RunStore(make_run(tmp_path)), BioNeedle())
    assert summary["grounding"]["available"]
    for row in summary["by_strategy_length"]:
        assert 0 <= row["grounded_rate"] <= 1
        wrong = sum(row[c] for c in ("misread", "distractor", "hallucination", "omitted"))
        assert wrong == row["wrong_answered_fields"]
    assert all(r.grounding is not None for r in records)


def test_a_rule_that_raises_is_a_rule_error_not_a_hallucination():
    class Broken(Grounding):
        def supports(self, field, value, text):
            if field == "nationality":
                raise ValueError("bad regex")
            return G.supports(field, value, text)

    answer = {
        "nationality": "kenyan",
        "date_of_birth": d(12, 3, 1950),
        "date_of_death": d(0, 0, 0),
        "sportsperson": False,
        "politician": False,
    }
    g = ground_record(record(answer), sample(), Broken(), FIELDS)
    assert g["fields"]["nationality"]["class"] == "error" and "bad regex" in g["fields"]["nationality"]["error"]
    assert g["fields"]["date_of_birth"]["class"] == "correct"
    rec = record(answer)
    rec.grounding = g
    out = grounding_summary([rec], FIELDS)["by_strategy"]["full-context"]
    assert out["grounding_errors"] == 1 and out["hallucination"] == 0 and out["distractor"] == 0
