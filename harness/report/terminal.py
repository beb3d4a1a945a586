"""The comparison table printed at the end of a run (rich): users paste it into their notes."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def comparison_table(summary: dict[str, Any], title: str = "field accuracy (%)") -> Table:
    rows = summary["by_strategy_length"]
    lengths = sorted({r["length"] for r in rows})
    t = Table(title=title, title_justify="left")
    t.add_column("strategy", style="bold")
    for L in lengths:
        t.add_column(f"{L:,} tok", justify="right")
    t.add_column("all", justify="right", style="bold")
    t.add_column("valid JSON", justify="right")
    t.add_column("needle shown", justify="right")
    t.add_column("prompt tok/q", justify="right")
    t.add_column("compl. tok/q", justify="right")
    t.add_column("latency s", justify="right")
    cell = {(r["strategy"], r["length"]): r for r in rows}
    for s in summary["by_strategy"]:
        name = s["strategy"]
        t.add_row(
            name,
            *[_pct(cell[(name, L)]["accuracy"]) if (name, L) in cell else "-" for L in lengths],
            _pct(s["accuracy"]),
            _pct(s["valid_rate"]),
            _pct(s["needle_shown"]),
            _num(s["prompt_tokens"]),
            _num(s["completion_tokens"]),
            _num(s["latency_s"], "{:.2f}"),
        )
    null = summary.get("null_baseline") or {}
    if null:
        t.add_row(
            "[dim]null baseline[/dim]",
            *["[dim]" + _pct(null["accuracy"]) + "[/dim]"] * len(lengths),
            "[dim]" + _pct(null["accuracy"]) + "[/dim]",
            "", "", "", "", "",
        )
    return t


def fields_table(summary: dict[str, Any]) -> Table:
    fields = summary["fields"]
    t = Table(title="per-field accuracy (%), all lengths", title_justify="left")
    t.add_column("strategy", style="bold")
    for f in fields:
        t.add_column(f, justify="right")
    for s in summary["by_strategy"]:
        t.add_row(s["strategy"], *[_pct(s[f]) for f in fields])
    null = summary.get("null_baseline") or {}
    if null:
        t.add_row("[dim]null baseline[/dim]", *["[dim]" + _pct(null[f]) + "[/dim]" for f in fields])
    return t


def retrieval_table(summary: dict[str, Any]) -> Table:
    """Needle recall, tokens retrieved, and each strategy's wrong fields split by cause."""
    t = Table(title="retrieval and error attribution (wrong fields, all lengths)", title_justify="left")
    t.add_column("strategy", style="bold")
    t.add_column("needle recall %", justify="right")
    t.add_column("first needle rank", justify="right")
    t.add_column("tok retrieved/q", justify="right")
    t.add_column("wrong fields", justify="right")
    t.add_column("retrieval miss", justify="right")
    t.add_column("reading error", justify="right")
    t.add_column("miss share %", justify="right")
    for s in summary["by_strategy"]:
        wrong = s.get("wrong_fields")
        miss = s.get("retrieval_misses")
        t.add_row(
            s["strategy"],
            _pct(s.get("needle_recall")),
            _num(s.get("needle_rank"), "{:.1f}"),
            _num(s.get("tokens_retrieved")),
            _num(wrong),
            _num(miss),
            _num(s.get("reading_errors")),
            _pct(miss / wrong) if wrong else "-",
        )
    return t


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(comparison_table(summary))
    console.print(fields_table(summary))
    if summary.get("by_strategy") and "wrong_fields" in summary["by_strategy"][0]:
        console.print(retrieval_table(summary))
