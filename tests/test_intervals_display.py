"""Intervals and paired tests where people read them: the terminal tables, the verdict, report.html.

The summaries are built from small synthetic records through the public functions (`summarize`,
`verdict`, `render_report`), with 64 needles so that the intervals are proper ones and the
confidence sequences can decide within a ±10-point tolerance. At 1,000 tokens the two strategies
answer alike (shown equivalent); at 4,000 rag-x is worse on every needle (shown worse).
"""

from __future__ import annotations

import re

import pytest
from rich.console import Console
from toy_scenario import TwoFieldScenario

from harness.report.html import line_chart_svg, render_report
from harness.report.summary import summarize
from harness.report.terminal import (
    comparison_table,
    comparison_tables,
    fields_table,
    print_summary,
    print_verdict,
    verdict_header,
)
from harness.report.verdict import comparison_line, interval, p_value, verdict, verdict_lines

NEEDLES = 64
TOLERANCE = 0.1
LENGTHS = [1000, 4000]
DEPTHS = [0.0, 100.0]
FC, RAG = "full-context", "rag-x"


def _marks(strategy: str, length: int, needle: int) -> dict[str, bool]:
    if strategy == FC or length == 1000:
        return {"a": needle % 4 != 0, "b": True}  # 6 of 8 needles right on a: an interval with some width
    return {"a": False, "b": needle % 2 == 0}  # rag-x at 4,000: below full context on every needle


def make_records(strategies=(FC, RAG), lengths=LENGTHS, depths=DEPTHS, needles=NEEDLES) -> list[dict]:
    out = []
    for s in strategies:
        for L in lengths:
            for d in depths:
                for i in range(needles):
                    marks = _marks(s, L, i)
                    sid = f"L{L}-d{d:g}-n{i}"
                    out.append(
                        {
                            "strategy": s,
                            "length": L,
                            "depth": d,
                            "sample_id": sid,
                            "needle_index": i,
                            "score": sum(marks.values()) / len(marks),
                            "valid": True,
                            "error": None,
                            "prompt_tokens": L + 200 if s == FC else 300,
                            "completion_tokens": 20,
                            "latency_s": 0.5,
                            "gold": {"a": 1, "b": 1},
                            "answer": {"a": int(marks["a"]), "b": int(marks["b"])},
                            "raw": "{}",
                            "marks": marks,
                            "subject": f"person {i}",
                            "shown": {"needle_shown": True, "retrieval": {}},
                        }
                    )
    return out


def make_summary(records=None, costs=None) -> dict:
    records = make_records() if records is None else records
    s = summarize(records, TwoFieldScenario())
    costs = costs or {FC: 10.0, RAG: 1.0}
    for r in s["by_strategy_length"]:
        r["cost_per_1k"] = costs.get(r["strategy"])
    s["tolerance"], s["alpha"] = TOLERANCE, 0.05
    s["verdict"] = verdict(s, TOLERANCE, 0.05)
    return s


@pytest.fixture(scope="module")
def summary():
    return make_summary()


def _text(*renderables, width=160) -> str:
    console = Console(record=True, width=width)
    for r in renderables:
        console.print(r)
    return console.export_text()


def _cell(row, key="accuracy") -> str:
    return f"{100 * row[key]:.1f} {interval(row[f'{key}_lo'], row[f'{key}_hi'])}"


# -- the data the displays rely on ---------------------------------------------------------------------
def test_the_synthetic_summary_has_proper_intervals_and_both_outcomes(summary):
    fc4 = next(r for r in summary["by_strategy_length"] if r["strategy"] == FC and r["length"] == 4000)
    assert fc4["n_needles"] == NEEDLES
    assert fc4["accuracy_lo"] < fc4["accuracy"] < fc4["accuracy_hi"]  # 6 of 8 needles: a real interval
    v = {x["length"]: x for x in summary["verdict"]}
    assert [c["status"] for c in v[1000]["comparisons"]] == ["equivalent"]
    assert v[4000]["best"] == FC and [c["status"] for c in v[4000]["comparisons"]] == ["worse"]
    assert v[4000]["comparisons"][0]["p"] < 0.05 and v[1000]["settled"] and v[4000]["settled"]


# -- terminal ------------------------------------------------------------------------------------------
def test_comparison_table_shows_each_accuracy_with_its_interval(summary):
    text = _text(comparison_table(summary))
    assert "field accuracy (%) with 95% intervals over needles" in text
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    }
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    cols = [c.strip() for c in header.split("┃")[2:-1]]
    assert cols[:4] == ["1,000 tok", "4,000 tok", "all", "needles"]
    for s in summary["by_strategy"]:
        cells = {(r["length"]): r for r in summary["by_strategy_length"] if r["strategy"] == s["strategy"]}
        got = rows[s["strategy"]]
        assert got[0] == _cell(cells[1000]) and got[1] == _cell(cells[4000])
        assert got[2] == _cell(s) and re.fullmatch(r"\d+\.\d \[\d+\.\d–\d+\.\d\]", got[2])
        assert got[3] == str(NEEDLES)
    # the null baseline has no interval: its plain value
    assert rows["null baseline"][0] == f"{100 * summary['null_baseline']['accuracy']:.1f}"


def test_fields_table_shows_each_field_with_its_interval(summary):
    text = _text(fields_table(summary))
    assert "with 95% intervals over needles" in text
    for s in summary["by_strategy"]:
        line = next(l for l in text.splitlines() if l.startswith(f"│ {s['strategy']} "))
        for f in ("a", "b"):
            assert _cell(s, f) in line
    fc = next(s for s in summary["by_strategy"] if s["strategy"] == FC)
    assert fc["a_lo"] < fc["a"] < fc["a_hi"] and "75.0 [" in _cell(fc, "a")


def test_a_plain_value_where_there_is_no_interval():
    s = summarize(make_records(needles=1), TwoFieldScenario())  # one needle: no interval
    text = _text(comparison_table(s), fields_table(s))
    assert "–" not in text  # no interval anywhere
    fc = next(r for r in s["by_strategy"] if r["strategy"] == FC)
    line = next(l for l in text.splitlines() if l.startswith(f"│ {FC} "))
    assert [c.strip() for c in line.split("│")[2:5]] == [f"{100 * fc['accuracy']:.1f}"] * 3


def test_wide_comparison_table_moves_the_per_query_columns_apart():
    many = [1000, 2000, 4000, 8000, 16000, 32000]
    s = make_summary(make_records(lengths=many, depths=[0.0]))
    tables = comparison_tables(s, 160)
    assert len(tables) == 2  # accuracy with intervals, and the per-query columns apart
    text = _text(*tables)
    assert max(len(l) for l in text.splitlines()) <= 160
    assert all(f"{L:,} tok" in text for L in many)
    for h in ("valid JSON", "needle shown", "prompt tok/q", "compl. tok/q", "latency s"):
        assert h in text  # moved, not dropped
    assert "…" not in text  # nothing truncated
    # narrow enough: one table, as before
    assert len(comparison_tables(make_summary(), 160)) == 1
    assert len(comparison_tables(s, 1000)) == 1


def test_print_summary_fits_160_columns_and_prints_the_verdict(summary):
    console = Console(record=True, width=160)
    print_summary(summary, console)
    text = console.export_text()
    assert max(len(l) for l in text.splitlines() if l[:1] in "┏┃┡│└") <= 160  # the tables; verdict lines are unwrapped
    head = (
        "verdict (mean field accuracy [95% interval over needles]; paired comparisons (anytime-valid confidence "
        "sequences; one error rate for every claim at a length), alpha 0.05; cheapest within 10 points of the best when the data shows it)"
    )
    assert head in text.splitlines()
    lines = [l.rstrip() for l in text.splitlines()]
    for line in verdict_lines(summary["verdict"]):
        assert f"  {line}" in lines  # each on one line: pasteable
    assert any(f"{FC} better than {RAG} at 4,000 tokens" in l and "p = " in l for l in lines)


def test_verdict_header_follows_alpha_and_tolerance(summary):
    other = dict(summary, alpha=0.01, tolerance=0.05)
    assert "alpha 0.01; cheapest within 5 points" in verdict_header(other)
    console = Console(record=True, width=160)
    print_verdict(other, console)
    text = console.export_text()
    assert text.startswith(
        "verdict (mean field accuracy [95% interval over needles]; paired comparisons (anytime-valid confidence "
        "sequences; one error rate for every claim at a length), alpha 0.01"
    )


# -- report.html -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def html(summary):
    return render_report(summary, make_records(), [], TwoFieldScenario())


def test_line_chart_error_bar_coordinates():
    svg = str(line_chart_svg({"s": {1000: 0.5}}, [1000], {"s": "#123456"}, None, {"s": {1000: (0.25, 0.75)}}))
    bars = re.findall(
        r'<g class="errbar" stroke="#123456"[^>]*><title>([^<]*)</title>'
        r'<line class="err" x1="([\d.]+)" x2="([\d.]+)" y1="([\d.]+)" y2="([\d.]+)"/>',
        svg,
    )
    assert len(bars) == 1
    title, x1, x2, y1, y2 = bars[0]
    # plot: top margin 16, height 256; y(v) = 16 + 256 * (1 - v): lo 25% at 208, hi 75% at 80 (above)
    assert (float(y1), float(y2)) == (208.0, 80.0)
    assert x1 == x2 and "95% interval [25.0–75.0]" in title
    caps = re.findall(r'<line class="cap" x1="([\d.]+)" x2="([\d.]+)" y1="([\d.]+)" y2="([\d.]+)"/>', svg)
    assert sorted(float(c[2]) for c in caps) == [80.0, 208.0] and all(c[2] == c[3] for c in caps)
    assert all(float(a) < float(x1) < float(b) for a, b, _, _ in caps)
    # no interval (one needle): the point alone
    svg = str(line_chart_svg({"s": {1000: 0.5}}, [1000], {"s": "#123456"}, None, {"s": {1000: (None, None)}}))
    assert "errbar" not in svg and "<circle" in svg


def test_report_chart_has_an_error_bar_per_point_through_the_point(summary, html):
    chart = html[html.index('id="acc-vs-length"') :]
    chart = chart[: chart.index("</svg>")]
    bars = re.findall(
        r'<g class="errbar"[^>]*><title>([^<]*)</title><line class="err" x1="([\d.]+)" x2="[\d.]+" '
        r'y1="([\d.]+)" y2="([\d.]+)"/>',
        chart,
    )
    assert len(bars) == len(summary["by_strategy_length"])
    for r in summary["by_strategy_length"]:
        title, x, y_lo, y_hi = next(b for b in bars if b[0].startswith(f"{r['strategy']} | {r['length']:,} tokens"))
        assert interval(r["accuracy_lo"], r["accuracy_hi"]) in title
        y_lo, y_hi = float(y_lo), float(y_hi)
        assert y_lo > y_hi  # lo is drawn below hi (SVG y grows downwards)
        assert 1 - (y_lo - 16) / 256 == pytest.approx(r["accuracy_lo"], abs=0.002)
        assert 1 - (y_hi - 16) / 256 == pytest.approx(r["accuracy_hi"], abs=0.002)
        cy = float(re.search(rf'<circle cx="{x}" cy="([\d.]+)"', chart).group(1))
        assert y_hi <= cy <= y_lo  # the point lies on its bar


def test_heatmap_titles_give_interval_and_needles(summary, html):
    titles = re.findall(r'<rect class="cell"[^>]*><title>([^<]*)</title>', html)
    assert len(titles) == len(summary["by_cell"]) == 2 * len(LENGTHS) * len(DEPTHS)
    for c in summary["by_cell"]:
        t = next(t for t in titles if t.startswith(f"{c['strategy']} | {c['length']:,} tokens | depth {c['depth']:g}%"))
        assert f"accuracy {100 * c['accuracy']:.1f}%, 95% interval {interval(c['accuracy_lo'], c['accuracy_hi'])}" in t
        assert f"n={c['n']} queries, {c['n_needles']} needles" in t


def test_heatmap_falls_back_to_records_without_by_cell(summary):
    old = {k: v for k, v in summary.items() if k != "by_cell"}
    page = render_report(old, make_records(), [], TwoFieldScenario())
    titles = re.findall(r'<rect class="cell"[^>]*><title>([^<]*)</title>', page)
    assert len(titles) == 2 * len(LENGTHS) * len(DEPTHS)
    assert all("interval" not in t and f"n={NEEDLES} queries" in t for t in titles)
    t = next(t for t in titles if t.startswith(f"{RAG} | 4,000 tokens | depth 0%"))
    assert "accuracy 25.0%" in t  # rag-x at 4,000: a wrong everywhere, b right on half the needles


def test_accuracy_tables_show_intervals(summary, html):
    table = html[html.index('id="accuracy-table"') :]
    table = table[: table.index("</table>")]
    fc = next(s for s in summary["by_strategy"] if s["strategy"] == FC)
    row = table[table.index(f'<tr class="acc" data-strategy="{FC}">') :]
    row = row[: row.index("</tr>")]
    for key in ("accuracy", "a", "b"):
        assert f'{100 * fc[key]:.1f}% <span class="ci">{interval(fc[f"{key}_lo"], fc[f"{key}_hi"])}</span>' in row
    assert f'<td class="n">{NEEDLES}</td>' in row
    for r in summary["by_strategy_length"]:
        assert (
            f'{100 * r["accuracy"]:.1f}% <span class="ci">{interval(r["accuracy_lo"], r["accuracy_hi"])}</span>'
            in table
        )


def test_verdict_section_lists_each_comparison_with_status_interval_and_p(summary, html):
    section = html[html.index('<section id="verdict"') : html.index('<section id="heatmaps"')]
    for word in ("bootstrap", "over needles", "anytime-valid confidence sequence", "by betting", "alpha 0.05"):
        assert word in section
    for v in summary["verdict"]:
        best = f'{100 * v["best_accuracy"]:.1f}% <span class="ci">{interval(v["best_accuracy_lo"], v["best_accuracy_hi"])}</span>'
        assert best in section
        table = section[section.index(f'<table class="comparisons" data-length="{v["length"]}">') :]
        table = table[: table.index("</table>")]
        for c in v["comparisons"]:
            row = table[table.index(f'data-strategy="{c["strategy"]}" data-status="{c["status"]}"') :]
            row = row[: row.index("</tr>")]
            assert f"p = {c['p']:.2g}" in row and f"p = {c['p_equivalent']:.2g}" in row
            assert f'{100 * c["diff"]:+.1f} <span class="ci">{interval(c["diff_lo"], c["diff_hi"])}</span>' in row
            assert f'title="{comparison_line(v, c)}"' in row
    assert "no detectable difference (within tolerance)" in section and ">worse<" in section
    n = len(summary["verdict"])  # every length settled: in the summary table and in each length's heading
    assert (
        section.count('<td class="settled">settled</td>') == n
        and section.count('<span class="settled">settled</span>') == n
    )
    assert "not settled" not in section


def test_unsettled_verdict_says_so_in_the_page():
    s = make_summary(make_records(needles=3))  # 3 needles: p >= 0.25, nothing can be shown
    page = render_report(s, make_records(needles=3), [], TwoFieldScenario())
    section = page[page.index('<section id="verdict"') : page.index('<section id="heatmaps"')]
    assert all(not v["settled"] for v in s["verdict"])
    assert f"not settled: {RAG} undecided" in section or f"not settled: {FC} undecided" in section
    assert "too few needles to tell" in section and "more needles would tell" in section


def test_strategy_names_stay_text_in_the_new_parts():
    evil = '<img src=x onerror="alert(1)">'
    records = [dict(r, strategy=evil if r["strategy"] == RAG else r["strategy"]) for r in make_records()]
    s = make_summary(records, costs={FC: 10.0, evil: 1.0})
    page = render_report(s, records, [], TwoFieldScenario())
    assert evil not in page and "&lt;img src=x onerror=" in page
    assert "<img" not in page


def test_several_comparisons_show_the_split_p_beside_the_raw_one():
    """A third strategy answering as rag-x does, on 32 needles: three strategies make three pairs, and
    each comparison is decided at alpha / 3 — in the terminal and in the page, the p it was decided on
    with the raw one beside it. At 1,000 tokens identical answers on 32 needles are not yet shown
    within ±10 pts: undecided, with the margin the sequence does show and a forecast of the needles."""
    other = "rag-y"
    records = make_records(strategies=(FC, RAG, other), needles=32)
    s = make_summary(records, costs={FC: 10.0, RAG: 1.0, other: 2.0})
    v4 = next(v for v in s["verdict"] if v["length"] == 4000)
    for c in v4["comparisons"]:
        assert c["status"] == "worse" and c["pairs"] == 3 and c["p_adjusted"] == pytest.approx(min(1, 3 * c["p"]))
    assert v4["settled"] and v4["pairs"] == 3
    v1 = next(v for v in s["verdict"] if v["length"] == 1000)
    assert all(c["status"] == "undecided" and c["margin"] < TOLERANCE + 0.1 for c in v1["comparisons"])
    text = _text(verdict_header(s), *verdict_lines(s["verdict"]), width=1000)
    assert (
        "paired comparisons (anytime-valid confidence sequences; one error rate for every claim at a length, alpha split"
        in text
    )
    c4 = next(c for c in v4["comparisons"] if c["strategy"] == RAG)
    assert f"{FC} better than {RAG} at 4,000 tokens by 62.5 pts (p = " in text
    assert ", over 3 pairs (raw p = " in text
    page = render_report(s, records, [], TwoFieldScenario())
    section = page[page.index('<section id="verdict"') : page.index('<section id="heatmaps"')]
    assert "anytime-valid confidence sequence" in section and "Holm" not in section
    row = section[section.index('<table class="comparisons" data-length="4000">') :]
    row = row[row.index(f'data-strategy="{RAG}"') :]
    row = row[: row.index("</tr>")]
    assert '<span class="note">over 3 pairs; raw p = ' in row and f"p = {p_value(c4['p_adjusted'], 0.05)}" in row
    c1 = next(c for c in v1["comparisons"] if c["strategy"] == FC)  # the best at 1,000 is rag-x (a tie: cheaper)
    row = section[section.index('<table class="comparisons" data-length="1000">') :]
    row = row[row.index(f'data-strategy="{FC}"') :]
    row = row[: row.index("</tr>")]
    margin = f"{100 * c1['margin']:g}"  # the narrowest tolerance the sequence already lies within
    assert f"; shown within ±{margin} pts (equivalent at --tolerance {margin})</td>" in row
    assert f"about {c1['more_needles']} more needles would tell" in row
