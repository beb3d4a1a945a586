"""`harness data check FILE --scenario qa`: what a question-answer file holds, before a run relies on it."""

from __future__ import annotations

import statistics
from pathlib import Path

from harness.plugin import UsageError


def _stats(values: list[int]) -> str:
    return f"min {min(values):,}, median {statistics.median(values):,.0f}, max {max(values):,}"


def check_files(scenario, files: list[Path]) -> tuple[list[str], str | None]:
    """Lines to print for each file read as `scenario` (a QA) reads it, and the refusal, if any."""
    from scenarios.qa.scenario import QA

    refused = 0
    lines: list[str] = []
    for path in files:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        qa = QA(scenario.params.model_copy(update={"file": path}), seed=scenario.seed)
        rows = qa.read(strict=False)
        refused += qa.refused_count
        kinds = ", ".join(f"{k} {v:,}" for k, v in qa.layouts.most_common()) or "none"
        lines += [
            str(path),
            f"  rows        {len(rows) + qa.refused_count:,}: {len(rows):,} usable, {qa.refused_count:,} refused; layout: {kinds}",
        ]
        if rows:
            marked = sum(r.gold_marked for r in rows)
            lines.append(
                f"  gold        marked in {marked:,} of {len(rows):,} rows"
                + (
                    ""
                    if marked == len(rows)
                    else " (no retrieval diagnostics for the others: no gold documents marked)"
                )
            )
            lines.append(f"  documents   per row: {_stats([len(r.documents) for r in rows])}")
            lines.append(f"  words/doc   {_stats([len(d.text.split()) for r in rows for d in r.documents])}")
            qa.rows = rows
            what = f"schema {qa.params.schema_file}" if qa.schema is not None else f"metric {qa.params.metric}"
            lines.append(f"  scored      {what}; null baseline: {qa.null_source}")
        for message in qa.refused:
            lines.append(f"  refused     {message}")
        if qa.refused_count > len(qa.refused):
            lines.append(f"  refused     ... and {qa.refused_count - len(qa.refused):,} more")
    if not refused:
        return lines, None
    return lines, f"{refused:,} row{'s' if refused != 1 else ''} refused (listed above); a run stops at the first"
