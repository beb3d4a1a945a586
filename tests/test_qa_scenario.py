"""The qa scenario without a server: the five layouts read without a mapping, the file formats, the
mapping, placement in tokens (a word counter stands in for /tokenize here; the end-to-end test uses
the server's), the scorers, the null baseline, refused rows and `harness data check`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.report.summary import summarize
from scenarios.qa import QA
from scenarios.qa.metrics import mark, mark_value, normalize

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "qa"
LAYOUTS = {
    "flashrag.jsonl": ("flashrag", ["the Ashby", "Ashby River"], True),
    "lost_in_the_middle.jsonl": ("lost-in-the-middle", ["green", "dark green"], True),
    "hotpotqa.json": ("hotpotqa", ["Pendry"], True),
    "longbench.jsonl": ("longbench", ["a footbridge"], False),
    "squad.csv": ("squad", ["Mount Arno"], True),
}


def words(texts):
    return [len(t.split()) for t in texts]


def qa(file, **params) -> QA:
    sc = QA(QA.Params(file=file, **params))
    sc.check()
    return sc


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_is_read_without_a_mapping(name):
    layout, answers, marked = LAYOUTS[name]
    sc = qa(DATA / name)
    row = sc.rows[0]
    assert row.layout == layout and row.answers == answers and row.gold_marked is marked
    assert all(r.layout == layout for r in sc.rows)


def test_gold_is_what_the_file_marks():
    hp = qa(DATA / "hotpotqa.json").rows[0]  # supporting facts name two of the four paragraphs
    assert [d.title for d in hp.documents if d.gold] == ["Harl bridge", "Ivo Tarrant"]
    assert hp.documents[1].text == "Ivo Tarrant was an architect. He was born in the city of Pendry."
    litm = qa(DATA / "lost_in_the_middle.jsonl").rows[1]  # isgold
    assert [d.gold for d in litm.documents] == [False, True, False]
    fl = qa(DATA / "flashrag.jsonl").rows[0]  # metadata.context / supporting_facts as datasets stores them
    assert [d.title for d in fl.documents if d.gold] == ["Merrowick"]
    lb = qa(DATA / "longbench.jsonl").rows[0]  # one string: its passages, unmarked
    assert len(lb.documents) == 3 and not any(d.gold for d in lb.documents)


def test_parquet_arrow_and_squad_json_read_as_the_csv(tmp_path):
    import datasets

    rows = [json.loads(json.dumps(r)) for r in _squad_rows()]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "squad.parquet"))
    datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "arrow"))
    nested = {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": r["context"],
                        "qas": [
                            {
                                "id": r["id"],
                                "question": r["question"],
                                "answers": [
                                    {"text": t, "answer_start": s}
                                    for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])
                                ],
                            }
                        ],
                    }
                    for r in rows
                ],
            }
        ]
    }
    (tmp_path / "squad.json").write_text(json.dumps(nested))
    want = [(r.question, r.answers, r.documents[0].text) for r in qa(DATA / "squad.csv").rows]
    for f in ("squad.parquet", "arrow", "squad.json"):
        got = qa(tmp_path / f).rows
        assert [(r.question, r.answers, r.documents[0].text) for r in got] == want, f
        assert {r.layout for r in got} == {"squad"}


def _squad_rows():
    import csv

    with open(DATA / "squad.csv", newline="") as fh:
        return [{**r, "answers": json.loads(r["answers"])} for r in csv.DictReader(fh)]


def test_a_mapping_names_other_columns(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"q": "Who wrote it?", "gold": "Ana", "docs": {"pages": ["Ana wrote it.", "Bo read it."]}}) + "\n"
    )
    with pytest.raises(UsageError, match=r"row 1: question: missing \(-P question=FIELD"):
        qa(path)
    row = qa(path, question="q", answers="gold", documents="docs.pages").rows[0]
    assert (row.question, row.answers, [d.text for d in row.documents]) == (
        "Who wrote it?",
        ["Ana"],
        ["Ana wrote it.", "Bo read it."],
    )


def test_gold_goes_to_the_depth_the_background_stays_and_lengths_hold():
    sc = qa(DATA / "hotpotqa.json")
    samples = sc.samples([60, 90], [0, 50, 100], 2, words)
    assert len(samples) == 2 * 3 * 2
    for s in samples:
        assert s.context_tokens <= s.length and s.gold_ids
        ids = [d.id for d in s.documents]
        assert len(ids) == len(set(ids)) and len({d.text for d in s.documents}) == len(ids)
    by = {(s.length, s.depth, s.needle_index): s for s in samples}
    first, last = by[(90, 0.0, 0)], by[(90, 100.0, 0)]
    assert [d.id for d in first.documents][:2] == ["r0d0", "r0d1"] and [d.id for d in last.documents][-2:] == [
        "r0d0",
        "r0d1",
    ]
    background = lambda s: [d.id for d in s.documents if d.id not in s.gold_ids]  # noqa: E731
    assert background(first) == background(last) == background(by[(90, 50.0, 0)])
    assert background(first)[:2] == ["r0d2", "r0d3"]  # the row's own distractors first, then other rows'
    assert any(d.startswith("r1") for d in background(first))
    assert by[(60, 0.0, 1)].question == by[(90, 100.0, 1)].question  # the pairing: row i at every cell


def test_squad_rows_sharing_a_passage_never_see_it_twice():
    s = qa(DATA / "squad.csv").samples([200], [50], 1, words)[0]
    texts = [d.text for d in s.documents]
    assert sum("Kell Observatory was built" in t for t in texts) == 1


def test_a_row_longer_than_the_length_is_cut_around_the_answer_and_says_so():
    sc = qa(DATA / "longbench.jsonl")
    s = sc.samples([20], [50], 1, words)[0]
    assert [d.text for d in s.documents] == [
        "Passage 2:\nIn 2019 the council of Ferrow voted to build a footbridge across the Lune."
    ]
    assert s.meta["cut"].startswith("own context cut to 1 of 3 pieces around the answer") and s.gold_ids == []
    assert any("1 sample cut: at 20 tokens, own context cut" in n for n in sc.input_notes())


@pytest.mark.parametrize(
    "metric, prediction, answers, expected",
    [
        ("em", "The Ashby.", ["Ashby"], 1.0),
        ("em", "Ashby river", ["Ashby"], 0.0),
        ("f1", "the Ashby river", ["Ashby River"], 1.0),
        ("f1", "Ashby", ["Ashby River"], pytest.approx(2 / 3, abs=1e-4)),
        ("contains", "It is the Ashby river.", ["Ashby"], 1.0),
        ("contains", "Ashbyton", ["Ashby"], 0.0),
        ("numeric", "about 1,024 km", ["1024"], 1.0),
        ("numeric", "1030", ["1024"], 0.0),
        ("regex", "Dec 1951", [r"(dec|december) 1951"], 1.0),
        ("regex", "in Dec 1951", [r"(dec|december) 1951"], 0.0),
    ],
)
def test_metrics(metric, prediction, answers, expected):
    assert mark(prediction, answers, metric) == expected


def test_numeric_tolerance_and_json_fields(tmp_path):
    assert mark("1030", ["1024"], "numeric", tolerance=0.01) == 1.0
    assert normalize("The  Ashby, river!") == "ashby river"
    assert mark_value(["b", "A"], ["a", "b"], "em") == 1.0 and mark_value(True, False, "em") == 0.0
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["city", "year"],
    }
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    path = tmp_path / "json.jsonl"
    rows = [
        {"question": "Where and when?", "answers": {"city": "Lisk", "year": 1903}, "context": "Lisk, 1903.", "id": "a"},
        {
            "question": "And here?",
            "answers": json.dumps({"city": "Osk", "year": 1903}),
            "context": "Osk, 1903.",
            "id": "b",
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sc = qa(path, schema=tmp_path / "schema.json")
    assert sc.fields == ["city", "year"] and sc.answer_schema() == schema
    s = sc.samples([50], [0], 1, words)[0]
    assert sc.score({"city": "lisk", "year": 1904}, s.gold) == {"city": 1.0, "year": 0.0}
    assert sc.null_answer(sc.reference_labels()) == {"city": None, "year": 1903}  # no city given twice
    shots = sc.shots(2)
    assert [sh.question for sh in shots] == ["And here?"]  # never a row the run asks
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**rows[0], "answers": {"city": "Lisk", "year": "soon"}}) + "\n")
    with pytest.raises(UsageError, match=r"bad.jsonl row 1: answer.year: 'soon' is not of type 'integer'"):
        qa(bad, schema=tmp_path / "schema.json")


def test_null_baseline_is_the_most_common_answer_or_none_for_open_answers():
    fl = qa(DATA / "flashrag.jsonl")
    assert fl.null_source == 'the most common answer, "the Ashby", 2 of 4 rows'
    assert fl.null_answer(fl.reference_labels()) == {"answer": "the Ashby"}
    sq = qa(DATA / "squad.csv")
    assert sq.null_source == "none: open answers, no answer given twice in the file"
    assert sq.null_answer(sq.reference_labels()) == {"answer": None}
    assert sq.score({"answer": None}, {"answer": ["1903"]}) == {"answer": 0.0}


def test_no_gold_marked_means_no_retrieval_attribution():
    sc = qa(DATA / "longbench.jsonl")
    s = sc.samples([200], [0], 1, words)[0]
    record = {
        "strategy": "rag-dense",
        "length": 200,
        "depth": 0.0,
        "sample_id": s.id,
        "score": 0.0,
        "valid": True,
        "gold": s.gold,
        "marks": {"answer": 0.0},
        "needle_id": None,
        "shown": {"needle_shown": None, "retrieval": {"needle_retrieved": None, "gold_recall": None}},
    }
    summary = summarize([record], sc)
    row = summary["by_strategy"][0]
    assert summary["gold_marked"] == 0.0 and row["wrong_fields"] == 1
    assert row["retrieval_misses"] == row["reading_errors"] == 0 and row["needle_recall"] is None

    from rich.console import Console

    from harness.report.terminal import retrieval_table

    console = Console(width=200, record=True)
    console.print(retrieval_table(summary))
    assert "no gold documents marked" in console.export_text()


def test_refused_rows_stop_a_run_with_one_line_and_check_names_each(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = (DATA / "lost_in_the_middle.jsonl").read_text()
    path.write_text(
        good
        + json.dumps({"id": "nq1", "question": "Who?", "golden_answers": ["Bo"]})
        + "\n"
        + json.dumps({"question": "q", "answers": [], "ctxs": [{"title": "t", "text": "x"}]})
        + "\n{oops\n"
    )
    with pytest.raises(UsageError) as e:
        qa(path)
    assert str(e.value).startswith(f"{path} row 4: documents: none in this row (name the column with -P documents=")
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", "data", "check", str(path), "--scenario", "qa"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    refused = [line.strip() for line in p.stdout.splitlines() if line.strip().startswith("refused")]
    assert [r.split(": ", 1)[0] for r in refused] == [f"refused     {path} row {n}" for n in (4, 5, 6)]
    assert "rows        6: 3 usable, 3 refused; layout: lost-in-the-middle 3" in p.stdout
    assert p.stderr.strip() == "error: 3 rows refused (listed above); a run stops at the first"


def test_every_layout_passes_data_check():
    files = [str(DATA / n) for n in LAYOUTS]
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", "data", "check", *files, "--scenario", "qa"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.count(", 0 refused;") == p.stdout.count("refused;") == len(LAYOUTS)
    assert "no retrieval diagnostics for the others" in p.stdout  # longbench marks no gold
