"""`harness data` for biographies, without a model: check, import-wikibio + anonymization, inspect,
and label against the zero-latency stand-in server (the real model is in test_bio_needle_label_e2e.py)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError, UsageError
from scenarios.bio_needle import anonymize as A
from scenarios.bio_needle.generator import BioGenerator, surname_split
from scenarios.bio_needle.loader import load_jsonl, parse_line
from scenarios.bio_needle.wikibio import SourceEntry, import_wikibio, not_one_person, read_source

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import fake_openai  # noqa: E402
from wikibio_rows import HAND, generated, write_arrow, write_parquet  # noqa: E402

ENV = {**os.environ, "HARNESS_NO_COLOR": "1", "COLUMNS": "200"}


def harness(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env or ENV,
    )


def real_words(rows) -> dict[int, set[str]]:
    """Per hand-written row: the words of the person's real names (what must not survive)."""
    out = {}
    for i, (r, _) in enumerate(rows):
        table = dict(zip(r["input_text"]["table"]["column_header"], r["input_text"]["table"]["content"]))
        names = [table["name"], r["input_text"]["context"], table.get("birth_name", "")]
        forms = A.name_forms([n for n in names if n])
        out[i] = set(forms.words) if forms else set()
    return out


# ------------------------------------------------------------------------------ the `data` command group
def test_data_commands_are_mounted_from_entry_points_and_loaded_lazily():
    from harness import registry

    assert {"import-wikibio", "label", "inspect"} <= set(registry.names("data_command"))  # check: the core's
    p = harness("data", "--help")
    assert p.returncode == 0
    for name in ("check", "import-wikibio", "label", "inspect"):
        assert name in p.stdout
    # other commands never import the biography tools
    code = (
        "import sys; from harness import cli; cli.app(['scenarios'], standalone_mode=False); "
        "print('scenarios.bio_needle.data_cli' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]


def test_a_plugin_can_add_a_data_command():
    import typer
    from typer.testing import CliRunner

    from harness import cli, registry

    def hello(who: str = typer.Option("world", "--who")):
        """Say hello."""
        print(f"hello {who}")

    registry._registered["data_command"]["hello"] = hello
    try:
        result = CliRunner().invoke(cli.app, ["data", "hello", "--who", "plug-in"])
        assert result.exit_code == 0 and "hello plug-in" in result.output
    finally:
        registry._registered["data_command"].pop("hello")


# ------------------------------------------------------------------------------ check
def test_check_prints_what_it_found_and_fails_on_refused_lines(tmp_path):
    g = BioGenerator(seed=8)
    hay, needles = tmp_path / "haystack.jsonl", tmp_path / "needles.jsonl"
    recs = g.records("haystack", 30)
    with open(hay, "w") as fh:
        for r in recs + recs[:1]:  # one name twice
            fh.write(json.dumps({"name": r.name, "bio": r.bio, "num_tokens": len(r.bio) // 4}) + "\n")
        fh.write(json.dumps({"name": "Nobody Here", "bio": "A text about someone else."}) + "\n")
    n = g.records("needles", 3)
    lines = [
        json.dumps({"name": r.name, "bio": r.bio, "json": {**r.labels.model_dump(), "politician": "No"}}) for r in n
    ]
    lines.append(json.dumps({"name": recs[2].name, "bio": recs[2].bio, "json": recs[2].labels.model_dump()}))
    lines.append(
        json.dumps(
            {
                "name": "Zed Oru",
                "bio": "Zed Oru.",
                "json": {**recs[2].labels.model_dump(), "date_of_birth": {"day": 30, "month": 2, "year": 1950}},
            }
        )
    )
    needles.write_text("\n".join(lines) + "\n\n")
    p = harness("data", "check", str(hay), str(needles))
    out = p.stdout
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: 1 line refused (listed above): as needles, a run stops at the first; "
        "in a haystack, a line refused only for its labels is kept without them"
    ]
    assert "lines       32: 32 biographies read, 0 refused" in out
    assert "labels      0 labeled, 32 unlabeled: usable as a haystack; needles need labels" in out
    assert "tokens/bio  min" in out and 'the file\'s "num_tokens"' in out
    assert re.search(r"duplicates  1 name occurs more than once: \"[a-z .]+\" \(lines 1, 31\)", out)
    assert "unnamed     1 biography does not mention the name (lines 32)" in out
    assert "lines       5 (1 blank line skipped): 4 biographies read, 1 refused" in out
    assert "normalised  booleans written as words (yes/no, true/false) (3 biographies, first on line 1)" in out
    assert f"refused     {needles} line 5: json.date_of_birth.day: 30 is not a day of February 1950" in out
    assert f"1 name in both {hay} and {needles}" in out
    ok = harness("data", "check", str(hay))
    assert ok.returncode == 0 and ok.stderr == ""
    missing = harness("data", "check", str(tmp_path / "nope.jsonl"))
    assert (
        missing.returncode == 2
        and missing.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: no such file or folder"
    )


# ------------------------------------------------------------------------------ anonymization
def test_every_form_of_the_name_is_replaced_and_nothing_else():
    forms = A.name_forms(["j. r. r. kolvane", "john ronald reuel kolvane", "j. r. r. kolvane\n"])
    fake = A.FakeName("Renin", "Nimeton")
    text = (
        "john ronald reuel kolvane ( 3 january 1892 -- 2 september 1973 ) was an english writer . kolvane 's "
        "books sold well . j. r. r. kolvane and his son met john . he died in may 1973 ."
    )
    new, n = A.anonymize(text, forms, fake, lowercase=True)
    assert new == (
        "renin nimeton ( 3 january 1892 -- 2 september 1973 ) was an english writer . nimeton 's "
        "books sold well . renin nimeton and his son met renin . he died in may 1973 ."
    )
    assert n == 4 and A.leaks(new, forms) == []
    # particles belong to the name only next to its words; "of", "the" never start a mention
    forms = A.name_forms(["jean-luc van der berghe"])
    new, _ = A.anonymize(
        "Jean-Luc van der Berghe rode the Tour de France; Van der Berghe won. Son of Berghe.", forms, fake
    )
    assert new == "Renin Nimeton rode the Tour de France; Nimeton won. Son of Nimeton."


def test_names_that_are_label_words_are_refused_and_leaks_are_found():
    assert A.collisions(A.name_forms(["theresa may"])) == ["may"]
    assert A.collisions(A.name_forms(["tom english"])) == ["english"]
    assert A.collisions(A.name_forms(["anna kovi"])) == []
    forms = A.name_forms(["anna kovi"])
    assert A.leaks("Kovi's book; kovishire; anna", forms) == ["anna", "kovi"]


def test_fake_names_never_collide_with_synthetic_needles_or_the_text():
    fakes = A.FakeNames(seed=0)
    names = [fakes.draw("f" if i % 2 else "m", "renin nimeton") for i in range(300)]
    assert len({f.surname for f in names}) == 300
    assert all(surname_split(f.surname) == "haystack" for f in names)  # needles and shots use other thirds
    needle_surnames = {p.surname for s in range(3) for p in BioGenerator(s).people("needles", 300)}
    assert not {f.surname for f in names} & needle_surnames
    assert all("renin" not in f.full.lower() and "nimeton" not in f.full.lower() for f in names)


def test_one_person_filter():
    def entry(text, table=None, names=("john smith",)):
        return SourceEntry("x", 0, list(names), table or {}, text)

    assert not_one_person(entry("the velvet lanterns are an american rock band formed in 1990 ."))
    assert not_one_person(entry("fc foo is a norwegian football club based in foo ."))
    assert not_one_person(entry("x", {"current_members": "a", "origin": "b"}))
    assert not_one_person(entry("x", {"founded": "1990", "headquarters": "oslo"}))
    assert not_one_person(entry("ed and jo were a duo .", names=("ed tolly and jo brisk",)))
    for person in (
        "john smith is a club cricketer who played for kent .",
        "john smith is a member of the band the who .",
        "john smith was a group captain in the raf .",
        "john smith ( born 1950 ) is an english former footballer .",
    ):
        assert not_one_person(entry(person, {"founded": "x", "birth_date": "1950"})) is None, person


# ------------------------------------------------------------------------------ import-wikibio
@pytest.mark.parametrize("form", ["parquet", "arrow-stream", "arrow-file", "jsonl"])
def test_import_reads_the_datasets_files_and_anonymizes(tmp_path, form):
    rows = [r for r, _ in HAND]
    src = tmp_path / f"train.{form.split('-')[0]}"
    if form == "parquet":
        write_parquet(src, rows)
    elif form == "jsonl":
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        write_arrow(src, rows, stream=form == "arrow-stream")
    out = tmp_path / "out"
    report = import_wikibio(out, source=src, needles=2, seed=1)
    kept = [i for i, (_, expect) in enumerate(HAND) if expect == "keep"]
    assert (report.read, report.written, report.needles, report.haystack) == (len(HAND), len(kept), 2, len(kept) - 2)
    assert report.left_out == {
        "not about one person": 3,
        "name is a word the labels are read from": 1,
        "name not in the text": 1,
    }
    assert report.still_named == 0
    written = load_jsonl(out / "needles.jsonl") + load_jsonl(out / "haystack.jsonl")
    words = real_words(HAND)
    for i, rec in zip(kept, written):
        original = HAND[i][0]["target_text"]
        assert rec.labels is None
        assert not A.leaks(rec.bio, A.NameForms(frozenset(words[i]), frozenset(), frozenset(), frozenset()))
        assert rec.name.lower() in rec.bio  # the question's name is in the text
        for keep in ("he", "his", "she", "born", "tour de france", "polish", "english"):
            assert original.count(f" {keep} ") == rec.bio.count(f" {keep} ")  # pronouns, facts untouched
        assert "-lrb-" not in rec.bio and "``" not in rec.bio
    table = list(csv.DictReader(open(out / "anonymization.csv")))
    assert [int(r["row"]) for r in table] == list(range(len(HAND)))
    assert all(int(r["names_replaced"]) >= 2 for r in table if not r["left_out"])
    assert [r["left_out"].split(":")[0] for r in table if r["left_out"]] == [
        "not about one person",
        "not about one person",
        "not about one person",
        "name is a word the labels are read from",
        "name not in the text",
    ]
    saved = json.loads((out / "import-report.json").read_text())
    assert saved["still_named"] == 0 and saved["written"] == len(kept)
    assert "kolvane" not in (out / "import-report.json").read_text()


def test_import_from_a_folder_with_a_limit_and_name_bio_jsonl_keeping_labels(tmp_path):
    src = tmp_path / "wiki"
    src.mkdir()
    gen = generated(12)
    write_parquet(src / "train-00000.parquet", [r for r, _ in gen[:6]])
    write_parquet(src / "train-00001.parquet", [r for r, _ in gen[6:]])
    report = import_wikibio(tmp_path / "a", source=src, needles=0, limit=8)
    assert report.written == 8 and report.haystack == 8 and report.read >= 8
    people = tmp_path / "people.jsonl"
    people.write_text(
        "".join(
            json.dumps({"name": p.name, "bio": p.record.bio, "json": p.labels.model_dump()}) + "\n" for _, p in gen[:3]
        )
    )
    report = import_wikibio(tmp_path / "b", source=people, needles=3)
    needles = load_jsonl(tmp_path / "b" / "needles.jsonl", need_labels=True)
    assert [r.labels for r in needles] == [p.labels for _, p in gen[:3]]
    assert all(p.surname.lower() not in r.bio.lower() for r, (_, p) in zip(needles, gen[:3]))


def test_an_anonymizer_that_misses_a_name_fails_loudly_and_writes_nothing(tmp_path, monkeypatch):
    from scenarios.bio_needle import wikibio

    monkeypatch.setattr(wikibio, "anonymize", lambda text, forms, fake, lowercase=False: (text, 1))
    src = write_parquet(tmp_path / "train.parquet", [r for r, _ in HAND])
    with pytest.raises(HarnessError, match=r"left the original name in 4 entries \(train.parquet row 0: "):
        import_wikibio(tmp_path / "out", source=src)
    assert not list((tmp_path / "out").glob("*.jsonl"))


def test_import_without_files_fails_at_once_with_what_to_pass(tmp_path):
    env = {**ENV, "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    t = time.monotonic()
    p = harness("data", "import-wikibio", "--out", str(tmp_path / "out"), env=env)
    assert time.monotonic() - t < 60
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: cannot load michaelauli/wiki_bio (huggingface.co cannot be reached and it is not in the local "
        "datasets cache); pass the dataset's files with --source PATH (its parquet or arrow files, or JSONL with "
        "name and bio)"
    ]
    assert not (tmp_path / "out").exists()  # nothing created
    bad = harness("data", "import-wikibio", "--out", str(tmp_path / "o"), "--source", str(tmp_path / "x.csv"))
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: {tmp_path / 'x.csv'}: no such file or folder"


def test_import_cli_prints_the_counts(tmp_path):
    src = write_parquet(tmp_path / "train.parquet", [r for r, _ in HAND] + [r for r, _ in generated(4)])
    p = harness("data", "import-wikibio", "--out", str(tmp_path / "out"), "--source", str(src), "--needles", "3")
    assert p.returncode == 0, p.stderr
    assert "read 13 entries; wrote 8 (3 needles, 5 haystack)" in p.stdout
    assert "left out 3: not about one person" in p.stdout
    assert "entries where the original name still occurs: 0" in p.stdout


def test_source_rows_that_are_not_wiki_bio_are_refused_with_row(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"title": "x"}) + "\n")
    with pytest.raises(UsageError, match=r"x.jsonl row 1: expected wiki_bio's input_text/target_text"):
        list(read_source(src))


# ------------------------------------------------------------------------------ inspect
def test_inspect_writes_an_inert_escaped_page(tmp_path):
    path = tmp_path / "needles.jsonl"
    path.write_text(
        json.dumps(
            {
                "name": "Ana <b>Kovi</b>",
                "bio": "Ana <b>Kovi</b> <script>alert(1)</script> is a cyclist.",
                "json": {
                    "nationality": " French ",
                    "date_of_birth": {"day": None, "month": 3, "year": "1951"},
                    "date_of_death": None,
                    "sportsperson": "yes",
                    "politician": False,
                },
                "labeled_by": "gemma-3-270m",
            }
        )
        + "\n"
        + json.dumps({"name": "Bo Tel", "bio": "Bo Tel."})
        + "\n"
        + json.dumps(
            {
                "name": "Cy",
                "bio": "Cy.",
                "json": {
                    "nationality": "x",
                    "date_of_birth": "1951?",
                    "date_of_death": "",
                    "sportsperson": 1,
                    "politician": 0,
                },
            }
        )
        + "\n"
    )
    p = harness("data", "inspect", str(path))
    assert p.returncode == 0 and "wrote" in p.stdout
    html = (tmp_path / "needles.html").read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "http://" not in html and "https://" not in html
    assert "<mark>Ana &lt;b&gt;Kovi&lt;/b&gt;</mark>" in html
    assert '<td class="lab">french</td><td class="lab">1951-03-??</td><td class="lab">—</td>' in html
    assert "gemma-3-270m" in html and "months written as names" not in html and "numbers written as strings" in html
    assert "unlabeled" in html
    assert "refused: json.date_of_birth: &quot;1951?&quot; is not a date" in html


# ------------------------------------------------------------------------------ label (stand-in server)
ANSWER = {
    "nationality": "french",
    "occupation": "road cyclist",
    "born": "1951-03-03",
    "died": "0",
    "sportsperson": True,
    "politician": False,
}


def _unlabeled(tmp_path: Path) -> Path:
    g = BioGenerator(seed=9)
    path = tmp_path / "needles.jsonl"
    rows = [{"name": r.name, "bio": r.bio, "num_tokens": 5} for r in g.records("needles", 3)]
    rows[2]["occupation"] = "botanist"  # the file's own word: kept
    rows.insert(1, {"name": "Done Already", "bio": "Done Already.", "json": {**ANSWER, "born": "1950", "died": None}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    return path


def test_label_fills_unlabeled_entries_in_place_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "cache.sqlite"))
    env = {**ENV, "HARNESS_RESPONSE_CACHE": str(tmp_path / "cache.sqlite")}
    path = _unlabeled(tmp_path)
    before = path.read_text().splitlines()
    with fake_openai.running("--answer", json.dumps(ANSWER)) as url:
        p = harness(
            "data",
            "label",
            str(path),
            "--endpoint",
            url,
            "--model",
            "gemma-3-270m",
            "--api",
            "completions",
            "--concurrency",
            "2",
            env=env,
        )
        assert p.returncode == 0, p.stderr
        assert (
            "labelled 3, failed 0, skipped 1, unreadable lines left as they are 1 (0 answers from the cache" in p.stdout
        )
        after = path.read_text().splitlines()
        assert after[1] == before[1] and after[4] == "{broken"  # other lines kept as they were
        for line in (after[0], after[2], after[3]):
            obj = json.loads(line)
            assert obj["json"]["date_of_birth"] == {"day": 3, "month": 3, "year": 1951}
            assert obj["labeled_by"] == "gemma-3-270m" and obj["num_tokens"] == 5
            assert "occupation" not in obj["json"]  # unscored: beside the labels, not in them
        # the occupation the model wrote, where the line had none (what training writes before the roles)
        assert [json.loads(after[i]).get("occupation") for i in (0, 2, 3)] == [
            "road cyclist",
            "road cyclist",
            "botanist",
        ]
        assert parse_line(after[0])[0].occupation == "road cyclist"  # the loader reads it back
        # audit: the same requests again (answered from the cache), nothing written
        audit = harness(
            "data",
            "label",
            str(path),
            "--endpoint",
            url,
            "--model",
            "gemma-3-270m",
            "--api",
            "completions",
            "--audit",
            env=env,
        )
        assert audit.returncode == 0, audit.stderr
        assert "asked about 4, failed 0" in audit.stdout and "(3 answers from the cache" in audit.stdout
        assert "agreement with the file's labels over 4 biographies: mean" in audit.stdout
        assert path.read_text().splitlines() == after


def test_a_label_the_checks_refuse_is_a_failure_not_a_label(tmp_path, monkeypatch):
    env = {**ENV, "HARNESS_RESPONSE_CACHE": str(tmp_path / "cache.sqlite")}
    path = _unlabeled(tmp_path)
    before = path.read_text()
    with fake_openai.running("--answer", json.dumps({**ANSWER, "born": "1951-02-31"})) as url:
        p = harness(
            "data", "label", str(path), "--endpoint", url, "--model", "gemma-3-270m", "--api", "completions", env=env
        )
    assert p.returncode == 0, p.stderr
    assert "labelled 0, failed 3, skipped 1" in p.stdout
    assert "the model's label is refused: date_of_birth.day: 31 is not a day of February 1951" in p.stdout
    assert path.read_text() == before


def test_label_refuses_bad_arguments_before_any_server_starts(tmp_path):
    p = harness("data", "label", str(tmp_path / "nope.jsonl"))
    assert p.returncode == 2 and p.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: no such file or folder"
    p = harness("data", "label", str(tmp_path), "--endpoint", "http://127.0.0.1:9/v1")
    assert p.returncode == 2 and "no .jsonl files" in p.stderr
    (tmp_path / "a.jsonl").write_text("")
    p = harness("data", "label", str(tmp_path / "a.jsonl"), "--endpoint", "http://127.0.0.1:9/v1")
    assert p.returncode == 2 and p.stderr.strip() == "error: --endpoint needs --model NAME (the served model name)"
