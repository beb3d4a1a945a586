"""Where output goes: tables to stdout (wide when piped, so they paste), progress and notes to stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Tables are meant to be pasted: give them room when stdout is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def progress_bar(*fields: str, eta: bool = False, transient: bool = False):
    """The one progress bar of long jobs (queries, the judge, labelling, training), on stderr:
    description, bar, done/total, elapsed (and the time left with `eta`), then the task's named
    `fields` (a running accuracy, a tally, the loss) — set them in add_task and update."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if eta:
        columns += [TextColumn("eta"), TimeRemainingColumn()]
    columns += [TextColumn(f"{{task.fields[{name}]}}") for name in fields]
    return Progress(*columns, console=err, transient=transient)
