"""Biography files as people have them: unlabeled haystacks, LLM-written labels, big files.

Labels are gold: what is read without doubt is normalised and counted, anything that could be a
wrong answer is refused with file, line and field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import UsageError
from scenarios.bio_needle import BioNeedle
from scenarios.bio_needle.generator import BioGenerator
from scenarios.bio_needle.labels import LabelError, normalise_labels
from scenarios.bio_needle.loader import ReadReport, load_jsonl, read_bios

GOLD = {
    "nationality": "french",
    "date_of_birth": {"day": 3, "month": 3, "year": 1951},
    "date_of_death": {"day": 0, "month": 0, "year": 0},
    "sportsperson": True,
    "politician": False,
}


def words(texts):
    return [len(t.split()) for t in texts]


# ------------------------------------------------------------------------------ normalise or refuse
@pytest.mark.parametrize(
    "change, expected, note",
    [
        ({"nationality": " French "}, {"nationality": "french"}, "nationality: case or spaces normalised"),
        ({"nationality": None}, {"nationality": "unknown"}, 'nationality: null read as "unknown"'),
        ({"nationality": "N/A"}, {"nationality": "unknown"}, 'nationality: "n/a" read as "unknown"'),
        ({"date_of_birth": {"day": "3", "month": "03", "year": "1951"}}, {}, "date parts: numbers written as strings"),
        ({"date_of_birth": {"day": 3, "month": "March", "year": 1951}}, {}, "months written as names"),
        ({"date_of_birth": "1951-03-03"}, {}, 'date_of_birth: written as a "YYYY-MM-DD" string'),
        (
            {"date_of_birth": {"day": None, "month": None, "year": 1951}},
            {"date_of_birth": {"day": 0, "month": 0, "year": 1951}},
            "date parts: null read as 0 (unknown)",
        ),
        (
            {"date_of_birth": {"year": 1951}},
            {"date_of_birth": {"day": 0, "month": 0, "year": 1951}},
            "date_of_birth: a missing part read as 0 (unknown)",
        ),
        ({"date_of_death": None}, {}, "date_of_death: null read as no date (zeros)"),
        ({"date_of_death": ""}, {}, "date_of_death: empty string read as no date (zeros)"),
        ({"date_of_death": "0"}, {}, 'date_of_death: "0" read as no date (zeros)'),
        ({"sportsperson": "Yes", "politician": "no"}, {}, "booleans written as words (yes/no, true/false)"),
        ({"sportsperson": 1}, {}, "booleans written as 1/0"),
        (
            {"date_of_birth": {"day": 3.0, "month": 3, "year": 1951}},
            {},
            "date parts: whole numbers written as decimals",
        ),
        ({"occupation": "cyclist"}, {}, "extra label keys ignored (occupation)"),
    ],
)
def test_label_forms_an_llm_writes_are_normalised_and_named(change, expected, note):
    raw = {**GOLD, **change}
    labels, notes = normalise_labels(raw)
    assert labels == {**GOLD, **expected}
    assert note in notes


def test_compact_keys_are_read():
    raw = {k: v for k, v in GOLD.items() if not k.startswith("date")} | {"born": "1951-03-03", "died": ""}
    labels, notes = normalise_labels(raw)
    assert labels == GOLD and "compact keys born/died read as date_of_birth/date_of_death" in notes


@pytest.mark.parametrize(
    "change, field, why",
    [
        ({"date_of_birth": "1951?"}, "date_of_birth", "is not a date"),
        ({"date_of_birth": {"day": 3, "month": 3, "year": "1951?"}}, "date_of_birth.year", "is not a number"),
        ({"date_of_birth": {"day": 3, "month": 3, "year": "c. 1951"}}, "date_of_birth.year", "is not a number"),
        ({"date_of_birth": {"day": 3, "month": 3, "year": "1950s"}}, "date_of_birth.year", "is not a number"),
        (
            {"date_of_birth": {"day": 31, "month": 2, "year": 1951}},
            "date_of_birth.day",
            "31 is not a day of February 1951",
        ),
        ({"date_of_birth": {"day": 29, "month": 2, "year": 1951}}, "date_of_birth.day", "(1-28"),
        ({"date_of_birth": {"day": 3, "month": 13, "year": 1951}}, "date_of_birth.month", "13 is not a month"),
        ({"date_of_birth": {"day": 32, "month": 0, "year": 1951}}, "date_of_birth.day", "32 is not a day"),
        ({"date_of_birth": {"day": -1, "month": 3, "year": 1951}}, "date_of_birth.day", "-1 is not a day"),
        ({"date_of_birth": {"day": 3.5, "month": 3, "year": 1951}}, "date_of_birth.day", "expected an integer"),
        ({"date_of_birth": {"day": True, "month": 3, "year": 1951}}, "date_of_birth.day", "expected an integer"),
        ({"date_of_birth": "28/01/1951"}, "date_of_birth", "is not a date"),
        ({"date_of_birth": {"day": 3, "month": 3, "year": 1951, "era": "AD"}}, "date_of_birth.era", "not a date part"),
        ({"date_of_death": {"day": 0, "month": 0, "year": 1940}}, "date_of_death", "before the date of birth"),
        (
            {
                "date_of_birth": {"day": 13, "month": 12, "year": 1310},
                "date_of_death": {"day": 13, "month": 4, "year": 1969},
            },
            "date_of_death",
            "659 years after the date of birth (more than 125)",
        ),
        ({"sportsperson": "maybe"}, "sportsperson", '"maybe" is not true or false'),
        ({"sportsperson": None}, "sportsperson", "null is not true or false"),
        ({"politician": 2}, "politician", "2 is not true or false"),
        ({"nationality": "french?"}, "nationality", "is not one nationality"),
        ({"nationality": "french/italian"}, "nationality", "is not one nationality"),
        ({"nationality": "  "}, "nationality", "must not be empty"),
        ({"nationality": 3}, "nationality", "expected a string"),
    ],
)
def test_labels_that_could_be_wrong_are_refused_naming_the_field(change, field, why):
    with pytest.raises(LabelError) as e:
        normalise_labels({**GOLD, **change})
    assert e.value.field == field and why in e.value.message


def test_a_leap_day_is_a_day_and_death_on_an_unknown_day_of_the_birth_year_is_not_before_it():
    labels, _ = normalise_labels(
        {
            **GOLD,
            "date_of_birth": {"day": 29, "month": 2, "year": 1952},
            "date_of_death": {"day": 0, "month": 0, "year": 1952},
        }
    )
    assert labels["date_of_birth"]["day"] == 29
    labels, _ = normalise_labels({**GOLD, "date_of_birth": {"day": 29, "month": 2, "year": 0}})  # year unknown
    assert labels["date_of_birth"] == {"day": 29, "month": 2, "year": 0}
    with pytest.raises(LabelError, match="missing"):
        normalise_labels({k: v for k, v in GOLD.items() if k != "politician"})


# ------------------------------------------------------------------------------ reading files
def test_haystack_lines_need_only_name_and_bio(tmp_path):
    path = tmp_path / "haystack.jsonl"
    path.write_text(
        json.dumps({"name": "Ana Kovi", "bio": "Ana Kovi is a painter.", "num_tokens": 7, "source": "x"})
        + "\n"
        + json.dumps({"name": "Bo Tel", "bio": "Bo Tel is a poet.", "json": None})
        + "\n"
        + json.dumps({"name": " Cy  Ran ", "bio": "Cy Ran is a cook.", "json": {**GOLD, "sportsperson": "no"}})
        + "\n"
    )
    report = ReadReport(str(path))
    lines = list(read_bios(path, report=report))
    assert [line.record.labels is None for line in lines] == [True, True, False]
    assert lines[0].extras == {"num_tokens": 7, "source": "x"}
    assert lines[2].record.name == "Cy Ran"
    assert (report.labeled, report.unlabeled, report.lines) == (1, 2, 3)
    assert report.normalised["booleans written as words (yes/no, true/false)"] == 1
    assert report.first_line["name: spaces normalised"] == 3
    # an unlabeled line written back stays unlabeled (no "json": null)
    assert "json" not in json.loads(lines[0].record.to_json_line())


def test_needles_must_be_labeled_and_the_error_says_how(tmp_path):
    path = tmp_path / "needles.jsonl"
    path.write_text(json.dumps({"name": "Ana Kovi", "bio": "Ana Kovi is a painter."}) + "\n")
    with pytest.raises(UsageError) as e:
        load_jsonl(path, need_labels=True)
    assert str(e.value).startswith(f"{path} line 1: json: missing") and "harness data label" in str(e.value)


def test_counting_mode_collects_every_refusal_with_file_line_field(tmp_path):
    path = tmp_path / "labeled.jsonl"
    good = {"name": "Ana Kovi", "bio": "Ana Kovi.", "json": GOLD}
    rows = [
        good,
        {**good, "json": {**GOLD, "date_of_birth": {"day": 31, "month": 2, "year": 1951}}},
        good,
        {**good, "json": {**GOLD, "politician": "maybe"}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n")
    report = ReadReport(str(path))
    assert len(list(read_bios(path, strict=False, report=report))) == 2
    assert report.refused_count == 3
    assert report.refused[0].startswith(f"{path} line 2: json.date_of_birth.day: 31 is not a day of February")
    assert report.refused[1].startswith(f"{path} line 4: json.politician:")
    assert report.refused[2].startswith(f"{path} line 5: invalid JSON")
    with pytest.raises(UsageError, match=r"line 2: json\.date_of_birth\.day"):
        list(read_bios(path))  # strict: the first bad line stops


# ------------------------------------------------------------------------------ the scenario with such files
def _published(tmp_path: Path, labeled_haystack: bool = False, n: int = 150) -> tuple[Path, Path]:
    """A haystack as published (name, bio, a token count; no labels) and needles with LLM-style labels."""
    g = BioGenerator(seed=21)
    hay = tmp_path / "haystack.jsonl"
    with open(hay, "w") as fh:
        for r in g.records("haystack", n):
            row = {"name": r.name, "bio": r.bio, "num_tokens": len(r.bio) // 4}
            if labeled_haystack:
                row["json"] = r.labels.model_dump()
            fh.write(json.dumps(row) + "\n")
    needles = tmp_path / "needles.jsonl"
    with open(needles, "w") as fh:
        for r in g.records("needles", 4):
            lab = r.labels.model_dump()
            llm = {
                **lab,
                "nationality": lab["nationality"].upper(),
                "date_of_birth": {k: str(v) if v else None for k, v in lab["date_of_birth"].items()},
                "sportsperson": "yes" if lab["sportsperson"] else "no",
            }
            fh.write(json.dumps({"name": r.name, "bio": r.bio, "json": llm}) + "\n")
    return hay, needles


def test_an_unlabeled_haystack_runs_and_chance_level_comes_from_the_needles(tmp_path):
    hay, needles = _published(tmp_path)
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles))
    sc.check()
    samples = sc.samples([1500], [0, 100], 4, words)
    truth = [r.labels.model_dump() for r in BioGenerator(seed=21).records("needles", 4)]
    assert [s.gold for s in samples if s.depth == 0] == truth  # LLM-style labels read back exactly
    assert sc.reference_labels() == truth
    assert sc.null_source == "needle labels of 4 biographies; haystack unlabeled"
    notes = sc.input_notes()
    assert any(
        n.startswith(f"{needles}: date parts: numbers written as strings (4 biographies, first on line 1)")
        for n in notes
    )
    assert any("booleans written as words" in n and "(4 biographies" in n for n in notes)
    assert any(n.startswith(f"{hay}: no labels") and "needles' labels" in n for n in notes)


def test_a_labeled_haystack_is_the_population(tmp_path):
    hay, needles = _published(tmp_path, labeled_haystack=True)
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles))
    assert len(sc.reference_labels()) == 150
    assert sc.null_source == "haystack labels of 150 biographies"
    assert BioNeedle().null_source == "haystack labels of 1,000 synthetic biographies"


def test_the_haystack_is_read_lazily_after_one_checking_pass(tmp_path):
    hay, needles = _published(tmp_path, n=400)
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles))
    sc.samples([800], [50], 2, words)
    files = sc._files
    assert files.kept == 400 and 0 < len(files._taken) <= 2 * 64  # a batch or two of what 800 words need


def test_a_bad_haystack_line_far_down_is_found_before_any_run(tmp_path):
    hay, needles = _published(tmp_path)
    with open(hay, "a") as fh:
        fh.write(json.dumps({"name": "Zed", "json": GOLD}) + "\n")
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles))
    with pytest.raises(UsageError, match=rf"{hay} line 151: bio: missing"):
        sc.check()


IMPOSSIBLE = {
    **GOLD,
    "date_of_birth": {"day": 3, "month": 4, "year": 669},
    "date_of_death": {"day": 0, "month": 0, "year": 11},
}


def test_an_impossible_haystack_label_is_dropped_and_said_the_biography_kept(tmp_path):
    """Anyscale's published biographies hold one haystack line born 669, died in year 11: that label
    goes (counted, named), the biography stays in the haystack; the same label on a needle stops the run."""
    hay, needles = _published(tmp_path, labeled_haystack=True, n=40)
    lines = hay.read_text().splitlines()
    odd = json.loads(lines[6])
    odd["json"] = IMPOSSIBLE
    lines[6] = json.dumps(odd)
    hay.write_text("\n".join(lines) + "\n")
    sc = BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=needles))
    sc.check()
    assert len(sc.reference_labels()) == 39  # the other 39 labels are the population
    notes = [n for n in sc.input_notes() if "impossible label" in n]
    assert len(notes) == 1 and notes[0].startswith(f"{hay}: 1 impossible label dropped, the biography kept unlabeled")
    assert "first: line 7: json.date_of_death" in notes[0]
    samples = sc.samples([3000], [50], 1, words)
    assert odd["bio"] in {d.text for d in samples[0].documents}  # the biography is still in the haystack
    bad_needle = tmp_path / "bad-needles.jsonl"
    bad_needle.write_text(json.dumps({"name": odd["name"], "bio": odd["bio"], "json": IMPOSSIBLE}) + "\n")
    with pytest.raises(UsageError, match=rf"{bad_needle} line 1: json\.date_of_death"):
        BioNeedle(BioNeedle.Params(haystack_file=hay, needles_file=bad_needle)).check()


def test_null_source_is_shown_beside_the_null_baseline():
    from rich.console import Console

    from harness.report.terminal import comparison_table, fields_table

    summary = {
        "by_strategy": [{"strategy": "full-context", "accuracy": 0.5}],
        "by_strategy_length": [{"strategy": "full-context", "length": 1000, "accuracy": 0.5}],
        "fields": ["nationality"],
        "null_baseline": {"accuracy": 0.2, "nationality": 0.2},
        "null_source": "needle labels of 4 biographies; haystack unlabeled",
    }
    console = Console(width=200, record=True)
    console.print(comparison_table(summary, extras=False))
    console.print(fields_table(summary))
    text = console.export_text()
    assert text.count("null baseline (needle labels of 4 biographies; haystack unlabeled)") == 2


def test_report_html_names_where_the_null_baseline_comes_from(tmp_path):
    import yaml
    from test_report_html import make_run

    from harness.report.html import write_report
    from harness.report.summary import summarize_run
    from harness.store import RunStore

    run = make_run(tmp_path, payload=False)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["null_source"] = "needle labels of 4 biographies; haystack unlabeled <b>"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    summary, records, samples = summarize_run(RunStore(run), BioNeedle())
    assert summary["null_source"] == config["null_source"]
    html = write_report(run, summary, records, samples, BioNeedle()).read_text()
    assert html.count("(needle labels of 4 biographies; haystack unlabeled &lt;b&gt;)") == 2  # legend and table row
