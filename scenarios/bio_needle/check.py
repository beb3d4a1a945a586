"""`harness data check`: what a biography file holds, before a run relies on it.

One streamed pass per file (the same reader a run uses, in its counting mode): lines, labeled and
unlabeled biographies, every label normalisation with its count and first line, every refused
line as `file line N: field: why`, words per biography (and the file's own token counts when
its lines carry one, e.g. `num_tokens`), names that occur more than once, biographies that do not
mention their own name (a question about them cannot be answered from the text), and names
shared between the files checked together (a run leaves those haystack biographies out).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.plugin import UsageError
from scenarios.bio_needle.loader import ReadReport, read_bios

EXAMPLES = 5  # names / lines shown per finding


@dataclass
class FileCheck:
    path: Path
    report: ReadReport
    words: list[int] = field(default_factory=list)
    token_key: str | None = None
    tokens: list[int] = field(default_factory=list)
    extra_keys: dict[str, int] = field(default_factory=dict)
    name_lines: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    unnamed: list[int] = field(default_factory=list)  # lines whose bio does not mention the name

    @property
    def duplicates(self) -> dict[str, list[int]]:
        return {n: lines for n, lines in self.name_lines.items() if len(lines) > 1}


def check_file(path: Path) -> FileCheck:
    """Read a whole file, counting what `harness data check` prints (bad lines counted, not raised)."""
    report = ReadReport(str(path))
    fc = FileCheck(path, report)
    extra: dict[str, int] = defaultdict(int)
    for line in read_bios(path, strict=False, report=report):
        rec = line.record
        fc.words.append(len(rec.bio.split()))  # whitespace-separated (wiki_bio's "," counts)
        for key, value in line.extras.items():
            extra[key] += 1
            if fc.token_key is None and "token" in key.lower() and type(value) is int:
                fc.token_key = key
            if key == fc.token_key and type(value) is int:
                fc.tokens.append(value)
        key = rec.name.lower()
        fc.name_lines[key].append(line.lineno)
        if not mentions(" ".join(rec.bio.lower().split()), key):
            fc.unnamed.append(line.lineno)
    fc.extra_keys = dict(extra)
    return fc


def mentions(text: str, name: str) -> bool:
    """Whether `name` occurs in `text` as whole words (no regex: one compiled per name costs 0.4 ms)."""
    start = 0
    while (i := text.find(name, start)) >= 0:
        end = i + len(name)
        if (i == 0 or not text[i - 1].isalnum()) and (end == len(text) or not text[end].isalnum()):
            return True
        start = i + 1
    return False


def _stats(values: list[int]) -> str:
    return (
        f"min {min(values):,}, median {statistics.median(values):,g}, mean {statistics.fmean(values):,.1f}, "
        f"max {max(values):,} ({sum(values):,} in all)"
    )


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:EXAMPLES]))
    return shown + (f", ... ({len(numbers)} in all)" if len(numbers) > EXAMPLES else "")


def describe(fc: FileCheck) -> list[str]:
    """The lines `harness data check` prints for one file."""
    r = fc.report
    out = [f"{fc.path}"]
    blank = f" ({r.blank:,} blank line{'s' if r.blank != 1 else ''} skipped)" if r.blank else ""
    out.append(
        f"  lines       {r.lines:,}{blank}: {r.records:,} biograph{'y' if r.records == 1 else 'ies'} read, {r.refused_count:,} refused"
    )
    use = (
        "usable as needles or haystack"
        if r.records and not r.unlabeled
        else "usable as a haystack; needles need labels (`harness data label FILE`)"
        if r.records
        else "nothing usable"
    )
    out.append(f"  labels      {r.labeled:,} labeled, {r.unlabeled:,} unlabeled: {use}")
    for note in r.note_lines():
        out.append(f"  normalised  {note}")
    for message in r.refused:
        out.append(f"  refused     {message}")
    if r.refused_count > len(r.refused):
        out.append(f"  refused     ... and {r.refused_count - len(r.refused):,} more")
    if fc.words:
        out.append(f"  words/bio   {_stats(fc.words)}")
    if fc.tokens:
        out.append(
            f"  tokens/bio  {_stats(fc.tokens)} (the file's \"{fc.token_key}\"; runs count in the served model's tokens)"
        )
    if fc.extra_keys:
        keys = ", ".join(f"{k} ({n:,})" for k, n in sorted(fc.extra_keys.items()))
        out.append(f"  other keys  {keys} (ignored)")
    dups = fc.duplicates
    if dups:
        shown = "; ".join(f'"{name}" (lines {_lines(lines)})' for name, lines in list(dups.items())[:EXAMPLES])
        out.append(
            f"  duplicates  {len(dups):,} name{'s' if len(dups) != 1 else ''} occur{'s' if len(dups) == 1 else ''} more than once: {shown}"
        )
    else:
        out.append("  duplicates  none")
    if fc.unnamed:
        out.append(
            f"  unnamed     {len(fc.unnamed):,} biograph{'y does' if len(fc.unnamed) == 1 else 'ies do'} not "
            f"mention the name (lines {_lines(fc.unnamed)}): as needles they cannot be found by name"
        )
    return out


def shared_names(checks: list[FileCheck]) -> list[str]:
    """Names found in more than one of the files checked together."""
    out = []
    for i, a in enumerate(checks):
        for b in checks[i + 1 :]:
            both = sorted(set(a.name_lines) & set(b.name_lines))
            if both:
                shown = ", ".join(f'"{n}"' for n in both[:EXAMPLES])
                out.append(
                    f"{len(both):,} name{'s' if len(both) != 1 else ''} in both {a.path} and {b.path}: {shown}"
                    f"{' ...' if len(both) > EXAMPLES else ''} (a run leaves such haystack biographies out)"
                )
    return out


def check_files(files: list[Path]) -> tuple[list[str], str | None]:
    """`harness data check` for biography files (or folders of them): lines to print, and the refusal."""
    checks = [check_file(p) for p in jsonl_files(files)]
    lines = [line for fc in checks for line in describe(fc)]
    lines += [f"shared      {line}" for line in shared_names(checks)]
    refused = sum(fc.report.refused_count for fc in checks)
    if not refused:
        return lines, None
    return lines, (
        f"{refused:,} line{'s' if refused != 1 else ''} refused (listed above): as needles, a run stops at the first; "
        "in a haystack, a line refused only for its labels is kept without them"
    )


def jsonl_files(targets: list[Path]) -> list[Path]:
    out: list[Path] = []
    for t in targets:
        if t.is_dir():
            found = sorted(p for p in t.glob("*.jsonl") if p.is_file())
            if not found:
                raise UsageError(f"{t}: no .jsonl files in it")
            out += found
        elif t.exists():
            out.append(t)
        else:
            raise UsageError(f"{t}: no such file or folder")
    return out
