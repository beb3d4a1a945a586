"""Where output goes: tables to stdout (wide when piped, so they paste), progress and notes to stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Tables are meant to be pasted: give them room when stdout is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)
