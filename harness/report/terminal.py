"""The comparison tables printed at the end of a run (rich): users paste them into their notes.

Every accuracy is shown with its 95% interval over needles (report/summary.py, report/stats.py):
`26.7 [6.7–46.7]`, or the plain value when there is no interval (fewer than two needles). The
tables stay within the console's width (160 when piped): when the comparison table would not,
its per-query columns (valid JSON, tokens, latency) move to a small table of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

ACCURACY_TITLE = "field accuracy (%) with 95% intervals over needles"
FIELDS_TITLE = "per-field accuracy (%) with 95% intervals over needles, all lengths"
USAGE_TITLE = "per query (all lengths)"
PIPED_WIDTH = 160  # rich's width when stdout is not a terminal


def _real(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and x != x)


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f}" if _real(x) else "-"


def _num(x: float | None, fmt: str = "{:.0f}") -> str:
    return fmt.format(x) if _real(x) else "-"


def _acc(row: dict[str, Any] | None, key: str = "accuracy") -> str:
    """'26.7 [6.7–46.7]': a mean accuracy and its 95% interval over needles; the value alone without one."""
    from harness.report.verdict import interval  # here: verdict imports scipy, window_text's users need none

    if row is None or not _real(row.get(key)):
        return "-"
    ci = interval(row.get(f"{key}_lo"), row.get(f"{key}_hi"))
    return f"{_pct(row[key])} {ci}" if ci else _pct(row[key])


@dataclass(frozen=True)
class Col:
    """One right-aligned column: its header and how a summary row becomes its cell."""

    header: str
    cell: Callable[[dict[str, Any]], str]
    style: str | None = None


def _table(title: str, rows: Sequence[dict[str, Any]], cols: Sequence[Col], *, length: bool = False) -> Table:
    """A bold strategy column (and a length column when `length`), then `cols`, one line per row."""
    t = Table(title=title, title_justify="left")
    t.add_column("strategy", style="bold")
    lead: list[Col] = [Col("length", lambda r: f"{r['length']:,}")] if length else []
    for c in (*lead, *cols):
        t.add_column(c.header, justify="right", style=c.style)
    for r in rows:
        t.add_row(r["strategy"], *[c.cell(r) for c in (*lead, *cols)])
    return t


def _dim(text: str) -> str:
    return f"[dim]{text}[/dim]" if text else ""


def _lengths(summary: dict[str, Any]) -> list[int]:
    return sorted({r["length"] for r in summary["by_strategy_length"]})


def _cells(summary: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["strategy"], r["length"]): r for r in summary["by_strategy_length"]}


USAGE_COLS = (
    Col("valid JSON", lambda s: _pct(s.get("valid_rate"))),
    Col("needle shown", lambda s: _pct(s.get("needle_shown"))),
    Col("prompt tok/q", lambda s: _num(s.get("prompt_tokens"))),
    Col("compl. tok/q", lambda s: _num(s.get("completion_tokens"))),
    Col("latency s", lambda s: _num(s.get("latency_s"), "{:.2f}")),
)
CALLS_COL = Col("calls/q", lambda s: _num(s.get("calls"), "{:.1f}"))


def usage_cols(summary: dict[str, Any]) -> list[Col]:
    """The per-query columns; calls per query only when some strategy makes more than one."""
    multi = any((s.get("calls") or 1) > 1 for s in summary.get("by_strategy") or [])
    return [*USAGE_COLS[:4], *([CALLS_COL] if multi else []), USAGE_COLS[4]]


def comparison_table(summary: dict[str, Any], title: str = ACCURACY_TITLE, extras: bool = True) -> Table:
    """Accuracy [95% interval] per length and over all lengths, needles per strategy; with `extras`
    also the per-query columns (USAGE_COLS)."""
    lengths, cell = _lengths(summary), _cells(summary)
    cols = [Col(f"{L:,} tok", lambda s, L=L: _acc(cell.get((s["strategy"], L)))) for L in lengths]
    cols += [Col("all", _acc, "bold"), Col("needles", lambda s: _num(s.get("n_needles")))]
    if extras:
        cols += usage_cols(summary)
    t = _table(title, summary["by_strategy"], cols)
    null = summary.get("null_baseline") or {}
    if null:
        acc = _dim(_pct(null.get("accuracy")))
        t.add_row(_dim(null_label(summary)), *[acc] * (len(lengths) + 1), *[""] * (len(cols) - len(lengths) - 1))
    return t


def null_label(summary: dict[str, Any]) -> str:
    """'null baseline (haystack labels of 1,000 documents)': the row, and whose labels
    chance level comes from (the scenario's `null_source`, saved with the run)."""
    from rich.markup import escape

    source = summary.get("null_source")
    return f"null baseline ({escape(str(source))})" if source else "null baseline"


def usage_table(summary: dict[str, Any]) -> Table:
    """The comparison table's per-query columns, when they do not fit beside the intervals."""
    return _table(USAGE_TITLE, summary["by_strategy"], usage_cols(summary))


def comparison_tables(summary: dict[str, Any], width: int = PIPED_WIDTH) -> list[Table]:
    """The comparison table, split in two (accuracy; per-query columns) when wider than `width`."""
    whole = comparison_table(summary)
    if Console(width=10_000).measure(whole).maximum <= width:
        return [whole]
    return [comparison_table(summary, extras=False), usage_table(summary)]


def fields_table(summary: dict[str, Any]) -> Table:
    fields = summary["fields"]
    t = _table(FIELDS_TITLE, summary["by_strategy"], [Col(f, lambda s, f=f: _acc(s, f)) for f in fields])
    null = summary.get("null_baseline") or {}
    if null:
        t.add_row(_dim(null_label(summary)), *[_dim(_pct(null.get(f))) for f in fields])
    return t


def retrieval_table(summary: dict[str, Any]) -> Table:
    """Needle recall, tokens retrieved, and each strategy's wrong fields split by cause."""

    def share(s: dict[str, Any]) -> str:
        wrong, miss = s.get("wrong_fields"), s.get("retrieval_misses")
        return _pct(miss / wrong) if wrong and _real(miss) else "-"

    title = "retrieval and error attribution (wrong fields, all lengths)"
    marked = summary.get("gold_marked")
    if marked is not None and marked == 0:
        title += ": no gold documents marked in the data (recall and the miss / reading split need them)"
    elif marked is not None and marked < 1:
        title += f": gold documents marked for {100 * marked:.0f}% of queries, the figures are theirs"
    return _table(
        title,
        summary["by_strategy"],
        [
            Col("needle recall %", lambda s: _pct(s.get("needle_recall"))),
            Col("needle partly shown %", lambda s: _pct(s.get("needle_partial"))),
            Col("first needle rank", lambda s: _num(s.get("needle_rank"), "{:.1f}")),
            Col("tok retrieved/q", lambda s: _num(s.get("tokens_retrieved"))),
            Col("wrong fields", lambda s: _num(s.get("wrong_fields"))),
            Col("retrieval miss", lambda s: _num(s.get("retrieval_misses"))),
            Col("partial miss", lambda s: _num(s.get("partial_misses"))),
            Col("reading error", lambda s: _num(s.get("reading_errors"))),
            Col("miss share %", share),
        ],
    )


def _money(x: float | None) -> str:
    from harness.scoring.cost import fmt_money

    return fmt_money(x)


def cost_table(summary: dict[str, Any]) -> Table:
    """$ per 1k queries per length, $ per correct field, cached tokens, and full context's cost ratio."""
    cell = _cells(summary)
    price = (summary.get("cost") or {}).get("price") or {}
    title = "money" + (f" ({price['describe']})" if price.get("describe") else "")

    def per_length(L: int) -> Col:
        return Col(
            f"$/1k q {L:,}",
            lambda s: _money(cell[(s["strategy"], L)].get("cost_per_1k")) if (s["strategy"], L) in cell else "-",
        )

    def ratio(s: dict[str, Any]) -> str:
        r = s.get("cost_ratio_full_context")
        return f"{r:.2f}x" if _real(r) else "-"

    return _table(
        title,
        summary["by_strategy"],
        [
            *[per_length(L) for L in _lengths(summary)],
            Col("$/1k q all", lambda s: _money(s.get("cost_per_1k")), "bold"),
            Col("$/correct field", lambda s: _money(s.get("cost_per_correct_field"))),
            Col("cached tok/q", lambda s: _num(s.get("cached_tokens"))),
            Col("full ctx ÷ this", ratio),
        ],
    )


def grounding_table(summary: dict[str, Any]) -> Table:
    """Judge-free grounding per strategy and length: rates per field of a valid answer."""
    rates = [
        ("grounded claims %", "grounded_rate"),
        ("misread (needle) %", "misread_rate"),
        ("distractor %", "distractor_rate"),
        ("hallucination %", "hallucination_rate"),
        ("omitted %", "omitted_rate"),
    ]
    return _table(
        "grounding (judge-free): % of answered fields; wrong fields by where the value came from",
        summary["by_strategy_length"],
        [
            *[Col(h, lambda r, k=k: _pct(r.get(k))) for h, k in rates],
            Col("invalid answers", lambda r: _num(r.get("invalid_answers"))),
            Col("rule errors", lambda r: _num(r.get("grounding_errors"))),
        ],
        length=True,
    )


def faithfulness_table(summary: dict[str, Any]) -> Table:
    """ragas Faithfulness: the mean of the scored queries, and every query that was not scored."""
    counts = [
        ("scored", "ragas_scored"),
        ("NaN", "ragas_nan"),
        ("parse fail", "ragas_parse_failure"),
        ("truncated", "ragas_truncated"),
        ("errors", "ragas_error"),
        ("skipped", "ragas_skipped"),
        ("not judged", "ragas_missing"),
    ]
    return _table(
        "ragas faithfulness (judge): mean of scored queries; failures counted; the judge's verdicts against the "
        "judge-free grounding, per claimed field (yes/no: its verdict; needle/not: the shown needle states the value)",
        summary["by_strategy_length"],
        [
            Col("faithfulness", lambda r: _num(r.get("ragas_faithfulness"), "{:.3f}")),
            *[Col(h, lambda r, k=k: _num(r.get(k))) for h, k in counts],
            Col("agrees with grounding", lambda r: _pct(r.get("judge_agreement"))),
            Col("judge yes: needle / not", lambda r: f"{r.get('judge_yes/needle', 0)} / {r.get('judge_yes/not', 0)}"),
            Col("judge no: needle / not", lambda r: f"{r.get('judge_no/needle', 0)} / {r.get('judge_no/not', 0)}"),
            Col("no statement", lambda r: _num(r.get("judge_unmatched"))),
        ],
        length=True,
    )


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
    return _table(
        title,
        summary["by_strategy"],
        [
            Col("prefix-cache hit %", lambda s: _pct(s.get("prefix_cache_hit_rate"))),
            Col("prefill s", lambda s: _num(s.get("prefill_s"), "{:.1f}")),
            Col("prefill s/q", lambda s: _num(s.get("prefill_s_per_query"), "{:.2f}")),
            Col("TTFT s/q", lambda s: _num(s.get("ttft_s"), "{:.2f}")),
            Col("prefill tok/s", lambda s: _num(s.get("prefill_tok_per_s"))),
            Col("prompt tok (server)", lambda s: _num(s.get("server_prompt_tokens"))),
        ],
    )


def replica_table(summary: dict[str, Any]) -> Table:
    """A pool of endpoints: what each replica answered, failed and handed on."""
    t = Table(
        title="replicas: requests answered per endpoint (moved: sent again elsewhere after the replica was lost)",
        title_justify="left",
    )
    for c in ("endpoint", "in flight cap", "requests", "errors", "moved", "taken out"):
        t.add_column(c, justify="left" if c == "endpoint" else "right")
    for r in summary["replicas"]:
        t.add_row(
            r["url"],
            _num(r.get("cap")),
            _num(r.get("requests")),
            _num(r.get("errors")),
            _num(r.get("moved")),
            _num(r.get("taken_out")),
        )
    return t


def verdict_header(summary: dict[str, Any]) -> str:
    """What the verdict's numbers are, the test and its alpha (adjusted how, and why), and the tolerance."""
    from harness.report.verdict import DEFAULT_ALPHA, DEFAULT_TOLERANCE, method_words

    rows = summary.get("verdict") or [{}]
    alpha = summary.get("alpha", rows[0].get("alpha"))
    tol = summary.get("tolerance", rows[0].get("tolerance"))
    alpha = DEFAULT_ALPHA if alpha is None else float(alpha)
    tol = DEFAULT_TOLERANCE if tol is None else float(tol)
    level = (summary.get("level") or {}).get("text") or f"alpha {alpha:g}"
    rule = any(c.get("rule") for v in rows for c in v.get("comparisons") or [])
    test = "paired comparisons" if rule else "paired sign-flip tests"
    return (
        f"(mean field accuracy [95% interval over needles]; {test}{method_words(rows)}, {level}; "
        f"cheapest within {100 * tol:g} points of the best when the data shows it)"
    )


def print_verdict(summary: dict[str, Any], console: Console) -> None:
    from harness.report.verdict import verdict_lines

    rows = summary.get("verdict") or []
    if not rows:
        return
    # Text, not markup: strategy names and "[6.7–46.7]" are printed as they are; one line each, unwrapped.
    console.print(Text.assemble(("verdict", "bold"), " ", verdict_header(summary)), soft_wrap=True)
    for line in verdict_lines(rows):
        console.print(Text(f"  {line}"), soft_wrap=True)
    for note in (summary.get("cost") or {}).get("notes") or []:
        console.print(Text(f"  note: {note}", style="dim"), soft_wrap=True)


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    for t in comparison_tables(summary, console.width):
        console.print(t)
    console.print(fields_table(summary))
    if summary.get("by_strategy") and "wrong_fields" in summary["by_strategy"][0]:
        console.print(retrieval_table(summary))
    if summary.get("by_strategy") and "cost_per_1k" in summary["by_strategy"][0]:
        console.print(cost_table(summary))
    if summary.get("server") and summary.get("by_strategy"):
        console.print(server_table(summary))
    if summary.get("replicas"):
        console.print(replica_table(summary))
    if (summary.get("grounding") or {}).get("available") and summary.get("by_strategy_length"):
        console.print(grounding_table(summary))
    if (summary.get("faithfulness") or {}).get("available") and summary.get("by_strategy_length"):
        console.print(faithfulness_table(summary))
    if summary.get("agents"):
        console.print(agent_table(summary))
        console.print(agent_action_table(summary))
    if summary.get("routes"):
        console.print(route_table(summary))
    for line in failure_notes(summary):
        console.print(f"[yellow]note:[/yellow] {line}", highlight=False)
    print_verdict(summary, console)


def agent_table(summary: dict[str, Any]) -> Table:
    """Agents: steps and calls per query, limits, and where the wrong answers went wrong."""
    return _table(
        "agents: tool steps per query, limits, and where wrong answers went wrong (queries)",
        summary["agents"],
        [
            Col("queries", lambda r: _num(r.get("n"))),
            Col("steps/q", lambda r: _num(r.get("steps"), "{:.1f}")),
            Col("calls/q", lambda r: _num(r.get("calls"), "{:.1f}")),
            Col("searched the subject %", lambda r: _pct(r.get("searched_subject"))),
            Col("found the needle %", lambda r: _pct(r.get("needle_found"))),
            Col("stopped by a limit %", lambda r: _pct(r.get("limited"))),
            Col("correct", lambda r: _num(r.get("correct"))),
            Col("ran out", lambda r: _num(r.get("ran_out"))),
            Col("never searched the subject", lambda r: _num(r.get("never_searched"))),
            Col("searched, not found", lambda r: _num(r.get("not_found"))),
            Col("found, misread", lambda r: _num(r.get("misread"))),
        ],
    )


def _token_share(r: dict[str, Any]) -> str:
    of = "" if r.get("token_share_of") in (None, "full-context") else f" (of {r['token_share_of']})"
    return _pct(r.get("token_share")) + of


def agent_action_table(summary: dict[str, Any]) -> Table:
    """Agents' actions: tool-call validity by class, searches that found a gold document, repeats, tokens."""
    return _table(
        "agents: actions (invalid ones by class), searches that surfaced a gold document, tokens against full context",
        summary["agents"],
        [
            Col("actions", lambda r: _num(r.get("actions"))),
            Col("valid %", lambda r: _pct(r.get("valid_actions"))),
            Col("invalid JSON", lambda r: _num(r.get("invalid_json"))),
            Col("unknown tool", lambda r: _num(r.get("unknown_tool"))),
            Col("bad arguments", lambda r: _num(r.get("bad_arguments"))),
            Col("search hit %", lambda r: _pct(r.get("search_hit"))),
            Col("steps to 1st hit", lambda r: _num(r.get("steps_to_first_hit"), "{:.1f}")),
            Col("repeated queries/q", lambda r: _num(r.get("repeated_queries"), "{:.2f}")),
            Col("tokens vs full context %", _token_share),
        ],
    )


def _confusion(r: dict[str, Any], said: str) -> str:
    c = r.get("route_confusion") or {}
    return f"{c.get(said + '/answerable', 0)} / {c.get(said + '/not', 0)}" if c else "-"


def route_table(summary: dict[str, Any]) -> Table:
    """Routing strategies: share and accuracy of each route, and cost against always full context."""

    def saved(r: dict[str, Any]) -> str:
        v = r.get("saved_vs_full_context")
        return f"{100 * v:.0f}%" if _real(v) else "-"

    return _table(
        "routes: answered from retrieval, or routed to full context; checked against the oracle route "
        "(answerable exactly when retrieval showed the whole needle)",
        summary["routes"],
        [
            Col("queries", lambda r: _num(r.get("n"))),
            Col("routed to full context %", lambda r: _pct(r.get("share_full-context", 0.0))),
            Col("acc. via rag %", lambda r: _pct(r.get("accuracy_rag"))),
            Col("acc. via full context %", lambda r: _pct(r.get("accuracy_full-context"))),
            Col("route accuracy %", lambda r: _pct(r.get("route_accuracy", r.get("route_agrees_with_retrieval")))),
            Col("said answerable: oracle yes / no", lambda r: _confusion(r, "answerable")),
            Col("said not: oracle yes / no", lambda r: _confusion(r, "not")),
            Col("tokens vs full context %", _token_share),
            Col("$ saved vs full context", saved),
        ],
    )


def failure_notes(summary: dict[str, Any]) -> list[str]:
    """What went wrong that is not the model's answer: counted and named, never folded into accuracy."""
    out = []
    for s in summary.get("by_strategy") or []:
        n = int(s.get("scoring_errors") or 0)
        if n:
            out.append(
                f"{s['strategy']}: the scorer raised on {n} quer{'y' if n == 1 else 'ies'}; their fields are "
                "marked wrong and each record's scoring_error says why"
            )
        g = int(s.get("grounding_errors") or 0)
        if g:
            out.append(
                f"{s['strategy']}: the grounding rules raised on {g} field(s); counted as rule errors, "
                "not as hallucinations"
            )
    return out
