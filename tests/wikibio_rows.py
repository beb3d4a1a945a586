"""wiki_bio-style rows for the import tests, written as the HF dataset's parquet or arrow files.

The people are made up (no real person's biography is stored in the repository), but the rows
have the dataset's shapes: lower-cased tokenized text with -lrb- -rrb- and `` '', initials,
nicknames, disambiguated titles, particles, maiden names, possessives ("kolvane 's"), and entries
that are not about one person.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from scenarios.bio_needle.generator import BioGenerator, wikify


def row(context: str, table: dict[str, str], text: str) -> dict[str, Any]:
    return {
        "input_text": {
            "table": {"column_header": list(table), "row_number": [1] * len(table), "content": list(table.values())},
            "context": context + "\n",
        },
        "target_text": text + "\n",
    }


# (row, what the import must do with it: "keep" or the start of the reason it is left out)
HAND: list[tuple[dict[str, Any], str]] = [
    (
        row(
            "j. r. r. kolvane",
            {
                "name": "j. r. r. kolvane",
                "birth_name": "john ronald reuel kolvane",
                "birth_date": "3 january 1892",
                "death_date": "2 september 1973",
            },
            "john ronald reuel kolvane -lrb- 3 january 1892 -- 2 september 1973 -rrb- was an english writer and "
            "professor . kolvane 's books include the hobbit . he taught at oxford , where j. r. r. kolvane "
            "met his friend lewis . john kolvane died in bournemouth .",
        ),
        "keep",
    ),
    (
        row(
            "marek dravoni -lrb- footballer -rrb-",
            {"name": "marek dravoni", "birth_date": "12 may 1950"},
            "marek `` mek '' dravoni -lrb- born 12 may 1950 -rrb- is a polish former footballer . dravoni "
            "played for lech poznań , and mek was his name on the terraces .",
        ),
        "keep",
    ),
    (
        row(
            "jean-luc van der berghe",
            {"name": "jean-luc van der berghe", "birth_date": "1961", "nationality": "belgian"},
            "jean-luc van der berghe -lrb- born 1961 -rrb- is a belgian cyclist . van der berghe won a stage of "
            "the tour de france in 1987 . his brother also raced .",
        ),
        "keep",
    ),
    (
        row(
            "anna kowalczyk",
            {"name": "anna kowalczyk -lrb- née brzeska -rrb-", "birth_date": "1940"},
            "anna kowalczyk -lrb- née brzeska ; born 1940 -rrb- was a polish politician . brzeska grew up in "
            "łódź ; she sat in the sejm .",
        ),
        "keep",
    ),
    (
        row(
            "the velvet lanterns",
            {"name": "the velvet lanterns", "origin": "boston", "current_members": "x"},
            "the velvet lanterns are an american rock band formed in 1990 .",
        ),
        "not about one person",
    ),
    (
        row(
            "fc dorvik",
            {"name": "fc dorvik", "ground": "dorvik stadion", "league": "2. divisjon"},
            "fc dorvik is a norwegian football club based in dorvik .",
        ),
        "not about one person",
    ),
    (
        row(
            "ed tolly and jo brisk",
            {"name": "ed tolly and jo brisk"},
            "ed tolly and jo brisk were a comedy double act .",
        ),
        "not about one person",
    ),
    (
        row(
            "april mayhew",
            {"name": "april mayhew", "birth_date": "4 april 1970"},
            "april mayhew -lrb- born 4 april 1970 -rrb- is an american actress .",
        ),
        "name is a word the labels",
    ),
    (
        row("xavier quill", {"name": "xavier quill"}, "he was a canadian poet who wrote about rivers ."),
        "name not in the text",
    ),
]


def generated(n: int, seed: int = 5) -> list[tuple[dict[str, Any], Any]]:
    """wiki_bio-style rows from synthetic people (lower-cased, -lrb- brackets), with their true labels."""
    out = []
    for p in BioGenerator(seed).people("haystack", n):
        text = wikify(p.record.bio)
        text = text.replace("(", "-lrb-").replace(")", "-rrb-")
        text = re.sub(r"\s+", " ", text)
        lab = p.labels
        table = {"name": p.name.lower(), "birth_date": str(lab.date_of_birth.year)}
        if lab.nationality != "unknown":
            table["nationality"] = lab.nationality
        out.append((row(p.name.lower(), table, text), p))
    return out


def _table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    return pa.Table.from_pylist(rows)


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(_table(rows), path)
    return path


def write_arrow(path: Path, rows: list[dict[str, Any]], stream: bool = True) -> Path:
    """An arrow stream (what a `datasets` cache holds) or an arrow IPC file."""
    import pyarrow as pa

    table = _table(rows)
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_stream(sink, table.schema) if stream else pa.ipc.new_file(sink, table.schema)
        with writer:
            writer.write_table(table, max_chunksize=3)
    return path
