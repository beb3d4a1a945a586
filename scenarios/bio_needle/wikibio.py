"""Real biographies from wiki_bio (Lebret et al. 2016), anonymized, as bio-needle data files.

Sources, as people have them:
  * the dataset's own files: parquet (the Hub's `data/*.parquet` or `refs/convert/parquet`) or
    the arrow files of a `datasets` cache, in the HF layout: `input_text` = {`table`:
    {`column_header`, `row_number`, `content`}, `context`: the article title} and `target_text`
    (the first paragraph, lower-cased and tokenized: "walter extra -lrb- born 1954 -rrb- is ...");
  * JSONL, either that layout or one biography a line with `name` and `bio` (labels in `json`
    are kept: anonymizing changes no fact);
  * nothing: the `datasets` library, only when huggingface.co answers within seconds (or the
    dataset is in the local cache); otherwise the import fails at once with what to pass instead.

Each entry that is about one person (not a band, team or company: infobox fields and the first
sentence tell) and whose name can be replaced (anonymize.py) becomes {"name", "bio"} with a fake
name; the first `needles` go to needles.jsonl, the rest to haystack.jsonl. Files are written under
temporary names and renamed only when every entry has passed the leak check.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.plugin import HarnessError, UsageError
from scenarios.bio_needle.anonymize import (
    FakeNames,
    anonymize,
    collisions,
    detokenize,
    gender_of,
    leaks,
    name_forms,
    with_nicknames,
)

DATASET = "michaelauli/wiki_bio"  # the Hub id the old "wiki_bio" name redirects to
NAME_FIELDS = ("name", "article_title", "fullname", "full_name", "birth_name", "birthname", "realname", "real_name")
# Infobox fields of groups and organisations, and of people.
GROUP_FIELDS = frozenset(
    {
        "current_members",
        "past_members",
        "members",
        "former_members",
        "founded",
        "headquarters",
        "ground",
        "league",
        "key_people",
        "industry",
        "products",
        "num_employees",
        "founders",
        "capacity",
        "formation",
    }
)
PERSON_FIELDS = frozenset(
    {
        "birth_date",
        "death_date",
        "birth_place",
        "death_place",
        "born",
        "died",
        "spouse",
        "parents",
        "children",
        "birthdate",
        "deathdate",
        "height",
    }
)
_GROUP_NOUNS = (
    r"band|duo|trio|quartet|quintet|group|team|club|company|corporation|organi[sz]ation|"
    r"orchestra|choir|ensemble|partnership|association|brothers|sisters|twins|family|"
    r"franchise|firm|label|collective|troupe"
)
# "is an american rock band formed in ...": the group noun must end the description ("a club
# cricketer", "a group captain" are people); no "of"/"for" before it ("a member of the band").
_GROUP_TEXT = re.compile(
    rf"\b(?:is|was|are|were)\s+(?:an?|the)\s+(?:(?!of\b|for\b|with\b|in\b)[^\W\d_][\w'-]*\s+){{0,5}}?"
    rf"(?:{_GROUP_NOUNS})\b(?=\s*(?:[,.;(]|$|from\b|formed\b|founded\b|based\b|that\b|which\b|"
    rf"consisting\b|in\b|of\b|who\b|whose\b))"
)
_SENTENCE_END = re.compile(r"\s\.(?:\s|$)|(?<=[^\W\d_]{3})\.(?:\s|$)")
_FIRST_VERB = re.compile(r"\b(is|was|are|were)\b")
SOURCE_SUFFIXES = (".parquet", ".arrow", ".jsonl")


@dataclass
class SourceEntry:
    """One biography as the source gives it."""

    source: str  # file name (or the Hub dataset)
    index: int  # row in that source
    names: list[str]  # raw name fields: infobox name, full name, article title
    table: dict[str, str]
    text: str
    labels: Any = None  # a JSONL source's "json", kept


# ------------------------------------------------------------------------------ reading sources
def _entry(row: Any, source: str, index: int) -> SourceEntry:
    """A row in the HF wiki_bio layout or in the {name, bio} form."""
    if not isinstance(row, dict):
        raise UsageError(f"{source} row {index + 1}: expected an object")
    if "input_text" in row or "target_text" in row:
        inp = row.get("input_text") or {}
        table = inp.get("table") or {}
        headers, contents = table.get("column_header") or [], table.get("content") or []
        fields: dict[str, str] = {}
        for h, c in zip(headers, contents):
            if isinstance(h, str) and isinstance(c, str):
                h = h.strip().lower()
                fields[h] = f"{fields[h]} {c}" if h in fields and h not in NAME_FIELDS else fields.get(h, c)
        names = [fields[k] for k in NAME_FIELDS if fields.get(k)]
        context = inp.get("context")
        if isinstance(context, str) and context.strip():
            names.append(context)
        text = row.get("target_text")
        if not isinstance(text, str):
            raise UsageError(f"{source} row {index + 1}: target_text: expected a string")
        return SourceEntry(source, index, names, fields, detokenize(text).strip())
    name, bio = row.get("name"), row.get("bio")
    if not isinstance(name, str) or not isinstance(bio, str):
        raise UsageError(
            f"{source} row {index + 1}: expected wiki_bio's input_text/target_text, or a name and a bio (strings)"
        )
    return SourceEntry(source, index, [name], {}, bio.strip(), row.get("json"))


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=512):
            yield from batch.to_pylist()
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from None


def _arrow_rows(path: Path) -> Iterator[dict[str, Any]]:
    """A `datasets` cache file (arrow stream format) or an arrow IPC file."""
    import pyarrow as pa

    try:
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            batches = pa.ipc.open_stream(source)
        for batch in batches:
            yield from batch.to_pylist()
    except (OSError, pa.ArrowInvalid) as e:
        raise UsageError(f"{path}: not a readable arrow file ({str(e).splitlines()[0]})") from None


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path} line {lineno}: invalid JSON ({e.msg} at column {e.colno})") from None


def source_files(path: Path) -> list[Path]:
    """The files a --source names: itself, or the parquet/arrow/JSONL files in a folder (sorted)."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix not in SOURCE_SUFFIXES:
            raise UsageError(f"{path}: expected a .parquet, .arrow or .jsonl file")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES)
    if not files:
        raise UsageError(f"{path}: no .parquet, .arrow or .jsonl files in it")
    return files


def read_source(path: Path) -> Iterator[SourceEntry]:
    for file in source_files(path):
        rows = {".parquet": _parquet_rows, ".arrow": _arrow_rows, ".jsonl": _jsonl_rows}[file.suffix](file)
        for i, row in enumerate(rows):
            yield _entry(row, file.name, i)


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection opens within `timeout` (name lookup included: a thread bounds it)."""
    import socket
    import threading

    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1)
    return bool(ok)


def hub_entries(dataset: str = DATASET, split: str = "train") -> Iterator[SourceEntry]:
    """wiki_bio through `datasets`: streamed from the Hub when it answers, else from the local cache only."""
    if os.environ.get("HF_DATASETS_OFFLINE") != "1" and not _reachable("huggingface.co"):
        os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    offline = os.environ.get("HF_DATASETS_OFFLINE") == "1"
    try:
        import datasets

        datasets.config.HF_DATASETS_OFFLINE = offline
        ds = datasets.load_dataset(dataset, split=split, streaming=not offline)
    except Exception as e:
        why = (
            "huggingface.co cannot be reached and it is not in the local datasets cache"
            if offline
            else str(e).splitlines()[0]
        )
        raise UsageError(
            f"cannot load {dataset} ({why}); pass the dataset's files with --source PATH "
            "(its parquet or arrow files, or JSONL with name and bio)"
        ) from None
    for i, row in enumerate(ds):
        yield _entry(row, f"{dataset}:{split}", i)


# ------------------------------------------------------------------------------ one person?
def not_one_person(entry: SourceEntry) -> str | None:
    """Why an entry is not about one person (a band, a team, a company, a pair), or None."""
    fields = set(entry.table)
    group = sorted(fields & GROUP_FIELDS)
    if (group and not fields & PERSON_FIELDS) or {"current_members", "past_members", "members"} & fields:
        return f"infobox field {group[0] if group else 'members'}"
    title = " ".join(entry.names[:1]).lower()
    if re.search(r"\s(?:and|&)\s", detokenize(title)):
        return "two names in the title"
    first = _SENTENCE_END.split(entry.text.lower(), maxsplit=1)[0]
    m = _GROUP_TEXT.search(first)
    if m:
        return f'text: "{" ".join(m.group(0).split()[-1:])}"'
    verb = _FIRST_VERB.search(first)
    if verb and verb.group(1) in ("are", "were"):
        return f'text: plural subject ("{verb.group(1)}")'
    return None


# ------------------------------------------------------------------------------ the import
class ImportReport(BaseModel):
    """What an import did, for the terminal and import-report.json (no real names in it)."""

    read: int = 0
    written: int = 0
    needles: int = 0
    haystack: int = 0
    left_out: dict[str, int] = {}
    replaced_total: int = 0
    replaced_per_entry: dict[str, float] = {}  # min, median, mean, max
    still_named: int = 0  # entries where a word of the real name remains: must be 0
    files: dict[str, str] = {}

    def lines(self) -> list[str]:
        out = [
            f"read {self.read:,} entries; wrote {self.written:,} ({self.needles:,} needles, {self.haystack:,} haystack)"
        ]
        for reason, n in sorted(self.left_out.items(), key=lambda kv: -kv[1]):
            out.append(f"  left out {n:,}: {reason}")
        if self.replaced_per_entry:
            r = self.replaced_per_entry
            out.append(
                f"names replaced: {self.replaced_total:,} mentions; per entry min {r['min']:g}, "
                f"median {r['median']:g}, mean {r['mean']:.2f}, max {r['max']:g}"
            )
        out.append(f"entries where the original name still occurs: {self.still_named}")
        return out


@dataclass
class _Writer:
    out: Path
    files: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("needles.jsonl", "haystack.jsonl", "anonymization.csv"):
            self.files[name] = open(self.out / f".{name}.tmp", "w", encoding="utf-8", newline="")
        self.csv = csv.writer(self.files["anonymization.csv"])
        self.csv.writerow(["source", "row", "fake_name", "names_replaced", "left_out"])

    def close(self, keep: bool) -> None:
        for name, fh in self.files.items():
            fh.close()
            tmp = self.out / f".{name}.tmp"
            if keep:
                tmp.replace(self.out / name)
            else:
                tmp.unlink(missing_ok=True)


def import_wikibio(
    out: Path,
    *,
    source: Path | None = None,
    limit: int | None = None,
    needles: int = 20,
    seed: int = 0,
    dataset: str = DATASET,
    split: str = "train",
    entries: Iterator[SourceEntry] | None = None,
) -> ImportReport:
    """Anonymize wiki_bio entries into out/needles.jsonl and out/haystack.jsonl (published form, no labels
    unless the source had them); out/anonymization.csv says, per source row, the fake name and how many
    mentions were replaced, or why the row was left out. Raises HarnessError, writing nothing, if any
    entry still names its person."""
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    if needles < 0:
        raise UsageError("--needles must be 0 or more")
    if entries is None:
        entries = read_source(source) if source is not None else hub_entries(dataset, split)
    entries = iter(entries)
    first = next(entries, None)  # a source that cannot be read fails before anything is created
    entries = itertools.chain([first] if first is not None else [], entries)
    report = ImportReport()
    left_out: Counter = Counter()
    counts: list[int] = []
    fakes = FakeNames(seed)
    seen_texts: set[int] = set()
    named: list[str] = []
    writer = _Writer(out)
    ok = False
    try:
        for entry in entries:
            if limit is not None and report.written >= limit:
                break
            report.read += 1
            row = [entry.source, entry.index]
            reason, record, n = _one(entry, fakes, seen_texts, named)
            if reason is not None:
                left_out[reason.split(":")[0]] += 1
                writer.csv.writerow(row + ["", "", reason])
                continue
            target = "needles.jsonl" if report.needles < needles else "haystack.jsonl"
            writer.files[target].write(json.dumps(record, ensure_ascii=False) + "\n")
            report.needles += target == "needles.jsonl"
            report.haystack += target == "haystack.jsonl"
            report.written += 1
            counts.append(n)
            writer.csv.writerow(row + [record["name"], n, ""])
        report.still_named = len(named)
        if named:
            raise HarnessError(
                f"anonymization left the original name in {len(named)} entries "
                f"({'; '.join(named[:3])}); nothing was written"
            )
        if not report.written:
            raise UsageError(
                f"no entry could be imported from {source or dataset} "
                f"(read {report.read}; left out: {dict(left_out) or 'none'})"
            )
        ok = True
    finally:
        writer.close(keep=ok)
    report.left_out = dict(left_out)
    report.replaced_total = sum(counts)
    report.replaced_per_entry = {
        "min": min(counts),
        "median": statistics.median(counts),
        "mean": statistics.fmean(counts),
        "max": max(counts),
    }
    report.files = {k: str(out / k) for k in ("needles.jsonl", "haystack.jsonl", "anonymization.csv")}
    (out / "import-report.json").write_text(report.model_dump_json(indent=2) + "\n")
    return report


def _one(
    entry: SourceEntry, fakes: FakeNames, seen: set[int], named: list[str]
) -> tuple[str | None, dict[str, Any] | None, int]:
    """(why it is left out, or None; the anonymized record; mentions replaced) of one entry."""
    if not entry.text:
        return "empty text", None, 0
    key = hash(entry.text)
    if key in seen:
        return "the same text as an earlier entry", None, 0
    seen.add(key)
    problem = not_one_person(entry)
    if problem:
        return f"not about one person: {problem}", None, 0
    forms = name_forms(entry.names)
    if forms is None:
        return "no name", None, 0
    forms = with_nicknames(forms, entry.text)
    common = collisions(forms)
    if common:
        return f"name is a word the labels are read from: {', '.join(common)}", None, 0
    fake = fakes.draw(gender_of(entry.text), " ".join([entry.text, *entry.names]))
    lowercase = entry.text == entry.text.lower()
    text, n = anonymize(entry.text, forms, fake, lowercase)
    if n == 0:
        return "name not in the text", None, 0
    remaining = leaks(text, forms) + leaks(fake.full, forms)
    if remaining:
        named.append(f"{entry.source} row {entry.index}: {', '.join(remaining)}")
    record: dict[str, Any] = {"name": fake.full, "bio": text}
    if entry.labels is not None:
        record["json"] = entry.labels
    return None, record, n
