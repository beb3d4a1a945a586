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


def _money(x: float | None) -> str:
    from harness.scoring.cost import fmt_money

    return fmt_money(x)


def cost_table(summary: dict[str, Any]) -> Table:
    """$ per 1k queries per length, $ per correct field, cached tokens, and full context's cost ratio."""
    rows = summary["by_strategy_length"]
    lengths = sorted({r["length"] for r in rows})
    cell = {(r["strategy"], r["length"]): r for r in rows}
    price = (summary.get("cost") or {}).get("price") or {}
    title = "money" + (f" ({price['describe']})" if price.get("describe") else "")
    t = Table(title=title, title_justify="left")
    t.add_column("strategy", style="bold")
    for L in lengths:
        t.add_column(f"$/1k q {L:,}", justify="right")
    t.add_column("$/1k q all", justify="right", style="bold")
    t.add_column("$/correct field", justify="right")
    t.add_column("cached tok/q", justify="right")
    t.add_column("full ctx ÷ this", justify="right")
    for s in summary["by_strategy"]:
        name = s["strategy"]
        ratio = s.get("cost_ratio_full_context")
        t.add_row(
            name,
            *[_money(cell[(name, L)].get("cost_per_1k")) if (name, L) in cell else "-" for L in lengths],
            _money(s.get("cost_per_1k")),
            _money(s.get("cost_per_correct_field")),
            _num(s.get("cached_tokens")),
            "-" if ratio is None else f"{ratio:.2f}x",
        )
    return t


def grounding_table(summary: dict[str, Any]) -> Table:
    """Judge-free grounding per strategy and length: rates per field of a valid answer."""
    t = Table(title="grounding (judge-free): % of answered fields; wrong fields by where the value came from",
              title_justify="left")
    t.add_column("strategy", style="bold")
    t.add_column("length", justify="right")
    t.add_column("grounded claims %", justify="right")
    t.add_column("misread (needle) %", justify="right")
    t.add_column("distractor %", justify="right")
    t.add_column("hallucination %", justify="right")
    t.add_column("omitted %", justify="right")
    t.add_column("invalid answers", justify="right")
    for r in summary["by_strategy_length"]:
        t.add_row(r["strategy"], f"{r['length']:,}", _pct(r.get("grounded_rate")), _pct(r.get("misread_rate")),
                  _pct(r.get("distractor_rate")), _pct(r.get("hallucination_rate")), _pct(r.get("omitted_rate")),
                  _num(r.get("invalid_answers")))
    return t


def faithfulness_table(summary: dict[str, Any]) -> Table:
    """ragas Faithfulness: the mean of the scored queries, and every query that was not scored."""
    t = Table(title="ragas faithfulness (judge): mean of scored queries; failures counted", title_justify="left")
    t.add_column("strategy", style="bold")
    t.add_column("length", justify="right")
    for c in ("faithfulness", "scored", "NaN", "parse fail", "truncated", "errors", "skipped", "not judged"):
        t.add_column(c, justify="right")
    for r in summary["by_strategy_length"]:
        f = r.get("ragas_faithfulness")
        t.add_row(r["strategy"], f"{r['length']:,}", "-" if f is None else f"{f:.3f}",
                  *[_num(r.get(k)) for k in ("ragas_scored", "ragas_nan", "ragas_parse_failure", "ragas_truncated",
                                            "ragas_error", "ragas_skipped", "ragas_missing")])
    return t


def window_text(window: int | None, launch: dict[str, Any] | None) -> str:
    """'65,536 tokens (YaRN x2 over the native 32,768)'; launch: the run's endpoint.launch, if any."""
    if not window:
        return "unknown (the server did not report max_model_len)"
    out = f"{window:,} tokens"
    launch = launch or {}
    native = launch.get("native_max_len")
    if launch.get("rope_scaling"):
        kind = {"yarn": "YaRN"}.get(launch["rope_scaling"], launch["rope_scaling"])
        over, factor = launch.get("original_max_len") or native, launch.get("rope_factor")
        out += f" ({kind}" + (f" x{factor:g}" if factor else "") + (f" over the native {over:,}" if over else "")
        out += ", implied by --max-model-len)" if launch.get("rope_implied") else ")"
    elif native:
        out += f" (native {native:,})" if window <= native else f" (past the native {native:,})"
    return out


def server_table(summary: dict[str, Any]) -> Table:
    """Per strategy, from the server: prefix-cache hit rate, prefill seconds, TTFT, prefill throughput."""
    srv = summary.get("server") or {}
    m = srv.get("metrics") or {}
    launch = srv.get("launch") or {}
    title = f"server: window {window_text(srv.get('max_model_len'), launch)}"
    if srv.get("server_version"):
        title += f", vLLM {srv['server_version']}"
    if m.get("available") and m.get("exclusive") is False:
        title += " (shared server: /metrics include other clients' requests)"
    t = Table(title=title, title_justify="left")
    t.add_column("strategy", style="bold")
    t.add_column("prefix-cache hit %", justify="right")
    t.add_column("prefill s", justify="right")
    t.add_column("prefill s/q", justify="right")
    t.add_column("TTFT s/q", justify="right")
    t.add_column("prefill tok/s", justify="right")
    t.add_column("prompt tok (server)", justify="right")
    for s in summary["by_strategy"]:
        t.add_row(
            s["strategy"],
            _pct(s.get("prefix_cache_hit_rate")),
            _num(s.get("prefill_s"), "{:.1f}"),
            _num(s.get("prefill_s_per_query"), "{:.2f}"),
            _num(s.get("ttft_s"), "{:.2f}"),
            _num(s.get("prefill_tok_per_s")),
            _num(s.get("server_prompt_tokens")),
        )
    return t


def print_verdict(summary: dict[str, Any], console: Console) -> None:
    from harness.report.verdict import verdict_lines

    rows = summary.get("verdict") or []
    if not rows:
        return
    tol = 100 * float(summary.get("tolerance") or 0)
    console.print(f"[bold]verdict[/bold] (mean field accuracy; cheapest within {tol:g} points of the best)")
    for line in verdict_lines(rows):
        console.print(f"  {line}", highlight=False)
    for note in (summary.get("cost") or {}).get("notes") or []:
        console.print(f"  [dim]note: {note}[/dim]", highlight=False)


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(comparison_table(summary))
    console.print(fields_table(summary))
    if summary.get("by_strategy") and "wrong_fields" in summary["by_strategy"][0]:
        console.print(retrieval_table(summary))
    if summary.get("by_strategy") and "cost_per_1k" in summary["by_strategy"][0]:
        console.print(cost_table(summary))
    if summary.get("server") and summary.get("by_strategy"):
        console.print(server_table(summary))
    if (summary.get("grounding") or {}).get("available") and summary.get("by_strategy_length"):
        console.print(grounding_table(summary))
    if (summary.get("faithfulness") or {}).get("available") and summary.get("by_strategy_length"):
        console.print(faithfulness_table(summary))
    print_verdict(summary, console)
