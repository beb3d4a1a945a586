"""report.html: one self-contained page that opens from disk with no network.

`harness report RUN_DIR` writes it, and so does the end of every `harness compare`. It is made
from the run folder alone (through `summarize_run`), and holds no timestamps, so regenerating
it gives the same file.

Uncertainty: every accuracy carries its 95% interval over needles from the summary (error bars on the
accuracy-vs-length chart, the heatmap cells' hover from `by_cell`, the tables), and the verdict lists
each paired comparison with the most accurate strategy: status, difference with its interval, p.

Safety: the page is rendered by Jinja2 with autoescaping on, so every piece of model output
(raw responses, answers) and of corpus text appears as text — a response holding <script> or
<img onerror=...> shows as those characters. The charts are SVG drawn here from numbers, with
every label escaped. The only script is the page's own (sorting and filtering the per-query
table by moving existing rows; it never writes HTML), and a Content-Security-Policy allows that
script alone (by hash) and no network at all.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from harness.record import Record, as_records
from harness.report.terminal import failure_notes
from harness.report.verdict import comparison_line, interval, method_words, p_value
from harness.scenario import Words
from harness.scoring.cost import fmt_money
from harness.scoring.grounding import shown_segments

REPORT_FILE = "report.html"
# Okabe-Ito: distinguishable for colour-blind readers.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]
CONTEXT_CHARS = 160  # characters of neighbouring text shown on each side of the needle


# -- small helpers ---------------------------------------------------------------------------------
def _real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not (isinstance(x, float) and math.isnan(x))


def _pct(x: Any, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%" if _real(x) else "-"


def _num(x: Any, fmt: str = "{:,.0f}") -> str:
    return fmt.format(x) if _real(x) else "-"


def _money(x: Any) -> str:
    return fmt_money(x) if _real(x) else "-"


def _pts(x: Any) -> str:
    """A signed difference of accuracies in points: '+6.7'."""
    return f"{100 * x:+.1f}" if _real(x) else "-"


def _pval(x: Any, alpha: float | None = None) -> str:
    return p_value(x, alpha) if _real(x) else "-"


def _ptext(c: dict[str, Any], equivalent: bool = False) -> Markup:
    """A comparison's p in the page: the one its status was decided on (over how many pairs of
    strategies alpha was split, with the raw p beside it); an older summary's Holm and Monte Carlo notes."""
    raw = c.get("p_equivalent" if equivalent else "p")
    if c.get("rule"):
        adj = c.get("p_equivalent_adjusted" if equivalent else "p_adjusted", raw)
        out = Markup("p = {}").format(_pval(adj, c.get("alpha")))
        m = c.get("pairs") or 1
        if m > 1:
            out += Markup(' <span class="note">over {} pairs; raw p = {}</span>').format(m, _pval(raw))
        return out
    adj = c.get("p_equivalent_holm" if equivalent else "p_holm", raw)
    out = Markup("p = {}").format(_pval(adj, c.get("alpha")))
    m = c.get("comparisons") or 1
    if m > 1:
        out += Markup(' <span class="note">Holm-adjusted over {} comparisons; raw p = {}</span>').format(m, _pval(raw))
    if c.get("method", "exact") != "exact":
        out += Markup(' <span class="note">{}</span>').format(c["method"])
    return out


# A comparison's status, said of the other strategy against the most accurate one.
STATUS = {
    "worse": "worse",
    "better": "better",
    "equivalent": "no detectable difference (within tolerance)",
    "undecided": "too few needles to tell",
}


def _color(v: float | None) -> str:
    """Red (0) - yellow (0.5) - green (1)."""
    if v is None:
        return "#eeeeee"
    stops = [(0.0, (215, 48, 39)), (0.5, (254, 224, 139)), (1.0, (26, 152, 80))]
    v = min(1.0, max(0.0, v))
    for (a, ca), (b, cb) in zip(stops, stops[1:]):
        if v <= b:
            t = (v - a) / (b - a)
            return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))
    return "#1a9850"


def _e(text: Any) -> str:
    return str(escape(str(text)))


# -- charts (SVG strings built from numbers; every label escaped) -----------------------------------
def heatmap_svg(
    strategy: str, cells: dict[tuple[int, float], dict[str, Any]], lengths: Sequence[int], depths: Sequence[float]
) -> Markup:
    """`cells`: (length, depth) -> {accuracy, n, and when known n_needles, accuracy_lo, accuracy_hi}."""
    cw, ch, left, top = 78, 30, 86, 34
    w, h = left + cw * len(lengths) + 10, top + ch * len(depths) + 28
    out = [
        f'<svg class="heatmap" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'xmlns="http://www.w3.org/2000/svg" data-strategy="{_e(strategy)}">',
        f"<title>accuracy by needle depth and context length: {_e(strategy)}</title>",
    ]
    for j, L in enumerate(lengths):
        out.append(f'<text x="{left + cw * j + cw / 2}" y="{top - 10}" text-anchor="middle" class="ax">{L:,}</text>')
    for i, d in enumerate(depths):
        y = top + ch * i
        out.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end" class="ax">depth {d:g}%</text>')
        for j, L in enumerate(lengths):
            c = cells.get((L, d)) or {}
            acc = c.get("accuracy") if _real(c.get("accuracy")) else None
            x = left + cw * j
            fill = _color(acc)
            out.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}">'
                f"<title>{_e(strategy)} | {L:,} tokens | depth {d:g}% | {_e(_cell_text(c))}</title></rect>"
            )
            if acc is not None:
                dark = acc < 0.2 or acc > 0.85
                out.append(
                    f'<text x="{x + cw / 2 - 1}" y="{y + ch / 2 + 4}" text-anchor="middle" '
                    f'class="v{" light" if dark else ""}">{100 * acc:.0f}%</text>'
                )
    out.append(
        f'<text x="{left + cw * len(lengths) / 2}" y="{h - 6}" text-anchor="middle" class="ax">'
        "context length (tokens)</text>"
    )
    out.append("</svg>")
    return Markup("".join(out))


def _cell_text(c: dict[str, Any]) -> str:
    """'accuracy 40.0%, 95% interval [20.0–60.0] | n=6 queries, 3 needles' for a heatmap cell's hover."""
    ci = interval(c.get("accuracy_lo"), c.get("accuracy_hi"))
    out = f"accuracy {_pct(c.get('accuracy'))}" + (f", 95% interval {ci}" if ci else "")
    out += f" | n={c.get('n') or 0} queries"
    nn = c.get("n_needles")
    if _real(nn):
        out += f", {nn:.0f} needle{'' if nn == 1 else 's'}" + ("" if ci or not c.get("n") else " (no interval)")
    return out


def heatmap_cells(summary: dict[str, Any], records: Sequence[Record]) -> dict[str, dict[tuple[int, float], dict]]:
    """strategy -> (length, depth) -> cell, from the summary's `by_cell` (with intervals); from the
    records (mean and n only) for a summary written before `by_cell` existed."""
    out: dict[str, dict[tuple[int, float], dict[str, Any]]] = {}
    if summary.get("by_cell"):
        for c in summary["by_cell"]:
            out.setdefault(c["strategy"], {})[(int(c["length"]), float(c["depth"]))] = c
        return out
    scores: dict[tuple[str, int, float], list[float]] = {}
    for r in records:
        scores.setdefault((r.strategy, int(r.length), float(r.depth)), []).append(float(r.score))
    for (s, L, d), v in scores.items():
        out.setdefault(s, {})[(L, d)] = {"accuracy": sum(v) / len(v), "n": len(v)}
    return out


def line_chart_svg(
    series: dict[str, dict[int, float]],
    lengths: Sequence[int],
    colors: dict[str, str],
    baseline: float | None,
    intervals: dict[str, dict[int, tuple[float | None, float | None]]] | None = None,
) -> Markup:
    """Accuracy per length, one line per strategy; `intervals` (strategy -> length -> (lo, hi)) adds an
    error bar with caps to each point. Strategies sit a few pixels apart at a length so bars do not
    hide each other."""
    w, h, ml, mr, mt, mb = 640, 320, 56, 20, 16, 48
    pw, ph = w - ml - mr, h - mt - mb
    xs = {L: ml + (pw * (i + 0.5) / len(lengths)) for i, L in enumerate(lengths)}
    y = lambda v: mt + ph * (1 - v)  # noqa: E731
    step = min(6.0, pw / max(1, len(lengths)) / (len(series) + 1))
    out = [
        f'<svg class="chart" id="acc-vs-length" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'xmlns="http://www.w3.org/2000/svg"><title>accuracy vs context length</title>'
    ]
    for k in range(0, 101, 20):
        yy = y(k / 100)
        out.append(
            f'<line x1="{ml}" x2="{w - mr}" y1="{yy}" y2="{yy}" class="grid"/>'
            f'<text x="{ml - 6}" y="{yy + 4}" text-anchor="end" class="ax">{k}%</text>'
        )
    for L, x in xs.items():
        out.append(f'<text x="{x}" y="{h - mb + 18}" text-anchor="middle" class="ax">{L:,}</text>')
    out.append(f'<text x="{ml + pw / 2}" y="{h - 8}" text-anchor="middle" class="ax">context length (tokens)</text>')
    if baseline is not None:
        out.append(
            f'<line x1="{ml}" x2="{w - mr}" y1="{y(baseline)}" y2="{y(baseline)}" class="baseline">'
            f"<title>null baseline {_pct(baseline)}</title></line>"
        )
    for k, (name, pts) in enumerate(series.items()):
        c = colors[name]
        dx = step * (k - (len(series) - 1) / 2)
        shown = [(L, v) for L, v in sorted(pts.items()) if _real(v) and L in xs]
        if len(shown) > 1:
            out.append(
                f'<polyline fill="none" stroke="{c}" stroke-width="2.5" points="'
                + " ".join(f"{xs[L] + dx:.1f},{y(v):.1f}" for L, v in shown)
                + '"/>'
            )
        ivs = (intervals or {}).get(name) or {}
        bars, dots = [], []
        for L, v in shown:
            lo, hi = ivs.get(L, (None, None))
            ci = interval(lo, hi)
            x = xs[L] + dx
            if ci:  # lo is the lower value: the larger y, drawn below hi
                bars.append(
                    f'<g class="errbar" stroke="{c}" stroke-width="1.5">'
                    f"<title>{_e(name)} | {L:,} tokens | {_pct(v)}, 95% interval {_e(ci)}</title>"
                    f'<line class="err" x1="{x:.1f}" x2="{x:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}"/>'
                    f'<line class="cap" x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{y(lo):.1f}" y2="{y(lo):.1f}"/>'
                    f'<line class="cap" x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{y(hi):.1f}" y2="{y(hi):.1f}"/></g>'
                )
            dots.append(
                f'<circle cx="{x:.1f}" cy="{y(v):.1f}" r="4.5" fill="{c}">'
                f"<title>{_e(name)} | {L:,} tokens | {_pct(v)}{' ' + _e(ci) if ci else ''}</title></circle>"
            )
        out += bars + dots  # points over their bars
    out.append("</svg>")
    return Markup("".join(out))


def pareto_front(points: Sequence[tuple[str, float, float]]) -> set[str]:
    """Names of the points no other point beats on both cost (lower) and accuracy (higher)."""
    front, best = set(), -1.0
    for name, _cost, acc in sorted(points, key=lambda p: (p[1], -p[2])):
        if acc > best:
            front.add(name)
            best = acc
    return front


def scatter_svg(title: str, points: Sequence[tuple[str, float | None, float]], colors: dict[str, str]) -> Markup:
    w, h, ml, mr, mt, mb = 330, 250, 52, 16, 26, 44
    pw, ph = w - ml - mr, h - mt - mb
    priced = [(n, c, a) for n, c, a in points if c is not None and c > 0 and a is not None]
    out = [
        f'<svg class="chart scatter" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>cost vs accuracy: {_e(title)}</title>'
        f'<text x="{ml}" y="16" class="ttl">{_e(title)}</text>'
    ]
    if not priced:
        out.append(
            f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" class="ax">no prices: pass --prices</text></svg>'
        )
        return Markup("".join(out))
    lo, hi = min(c for _, c, _ in priced), max(c for _, c, _ in priced)
    log = hi / lo > 20
    if log:
        a, b = math.log10(lo) - 0.15, math.log10(hi) + 0.15
        fx = lambda c: ml + pw * (math.log10(c) - a) / (b - a)  # noqa: E731
    else:
        span = (hi - lo) or hi or 1.0
        a, b = max(0.0, lo - 0.15 * span), hi + 0.15 * span
        fx = lambda c: ml + pw * (c - a) / (b - a)  # noqa: E731
    fy = lambda v: mt + ph * (1 - v)  # noqa: E731
    for k in range(0, 101, 25):
        out.append(
            f'<line x1="{ml}" x2="{w - mr}" y1="{fy(k / 100)}" y2="{fy(k / 100)}" class="grid"/>'
            f'<text x="{ml - 6}" y="{fy(k / 100) + 4}" text-anchor="end" class="ax">{k}%</text>'
        )
    for c in (lo, hi) if lo != hi else (lo,):
        out.append(f'<text x="{fx(c):.1f}" y="{h - mb + 16}" text-anchor="middle" class="ax">{_e(fmt_money(c))}</text>')
    out.append(
        f'<text x="{ml + pw / 2}" y="{h - 8}" text-anchor="middle" class="ax">'
        f"$ per 1k queries{' (log)' if log else ''}</text>"
    )
    front = pareto_front(priced)
    fpts = sorted((c, acc) for n, c, acc in priced if n in front)
    if len(fpts) > 1:
        out.append(
            '<polyline class="pareto" fill="none" points="'
            + " ".join(f"{fx(c):.1f},{fy(v):.1f}" for c, v in fpts)
            + '"/>'
        )
    for n, c, acc in priced:
        on = n in front
        klass = ' class="front"' if on else ""
        out.append(
            f'<circle cx="{fx(c):.1f}" cy="{fy(acc):.1f}" r="{6 if on else 4.5}" fill="{colors.get(n, "#888")}"'
            f"{klass}><title>{_e(n)} | {_e(fmt_money(c))}/1k | {_pct(acc)}"
            f"{' | Pareto front' if on else ''}</title></circle>"
        )
    out.append("</svg>")
    return Markup("".join(out))


def stacked_bar_svg(rows: Sequence[dict[str, Any]], classes: Sequence[str], colors: dict[str, str]) -> Markup:
    """One bar per (strategy, length): each wrong-field class as a share of the answered fields."""
    bw, left, rh = 360, 230, 22
    h = 24 + rh * len(rows) + 30
    w = left + bw + 20
    out = [
        f'<svg class="chart" id="grounding-bars" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'xmlns="http://www.w3.org/2000/svg"><title>wrong fields by source, per strategy and length</title>'
    ]
    for k in range(0, 101, 25):
        x = left + bw * k / 100
        out.append(
            f'<line x1="{x}" x2="{x}" y1="18" y2="{h - 30}" class="grid"/>'
            f'<text x="{x}" y="12" text-anchor="middle" class="ax">{k}%</text>'
        )
    for i, r in enumerate(rows):
        y = 20 + rh * i
        out.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" class="ax">'
            f"{_e(r['strategy'])} · {r['length']:,}</text>"
        )
        x = left
        for c in classes:
            v = r.get(f"{c}_rate") or 0.0
            if v > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{bw * v:.1f}" height="{rh - 4}" fill="{colors[c]}">'
                    f"<title>{_e(r['strategy'])} | {r['length']:,} | {c}: {_pct(v)} of answered fields "
                    f"({r.get(c, 0)})</title></rect>"
                )
                x += bw * v
    lx = left
    for c in classes:
        out.append(
            f'<rect x="{lx}" y="{h - 22}" width="12" height="12" fill="{colors[c]}"/>'
            f'<text x="{lx + 16}" y="{h - 12}" class="ax">{c}</text>'
        )
        lx += 100
    out.append("</svg>")
    return Markup("".join(out))


# -- the per-query table ----------------------------------------------------------------------------
def needle_context(record: Record, sample) -> dict[str, Any]:
    """The shown text around the needle: before / needle / after, plus a note."""
    if sample is None:
        return {"note": "sample not in the run folder", "parts": []}
    segs = shown_segments(record, sample)
    gold = set(sample.gold_ids)
    idx = [i for i, s in enumerate(segs) if s.needle]
    if not idx:
        top = segs[0].text[: 2 * CONTEXT_CHARS] if segs else ""
        return {"note": "needle not shown; the first shown text:", "parts": [("", False), (top, False)]}
    pieces = record.shown.pieces
    whole_docs = all(p.get("text") is None for p in pieces)
    i0, i1 = idx[0], idx[-1]
    before = segs[i0 - 1].text[-CONTEXT_CHARS:] if i0 > 0 else ""
    after = segs[i1 + 1].text[:CONTEXT_CHARS] if i1 + 1 < len(segs) else ""
    needle = " … ".join(segs[i].text for i in idx)
    where = (
        f"document {idx[0] + 1} of {len(segs)}"
        if whole_docs
        else "in retrieved chunk(s) "
        + ", ".join(str(p.get("rank")) for p in pieces if gold & set(p.get("doc_ids") or []))
        + " (rank)"
    )
    return {"note": where, "parts": [(before, False), (needle, True), (after, False)]}


def _fmt_value(v: Any) -> str:
    if isinstance(v, dict) and set(v) >= {"day", "month", "year"}:
        return f"{v.get('day')}/{v.get('month')}/{v.get('year')}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return "-" if v is None else str(v)


def trace_text(r: Record) -> str:
    """A multi-call query's steps in one line: 'calls 4 · 1 search "Ana Bo" → c3 c7 · 2 read n0 · 3 answer'."""
    if not r.steps and r.n_calls <= 1:
        return ""
    parts = [f"calls {r.n_calls}"]
    for i, s in enumerate(r.steps, 1):
        args = s.arguments
        if s.kind == "search":
            what = f'search "{args.get("query", "")}"'
        elif s.kind == "read":
            what = f"read {args.get('doc_id', '')}"
        elif s.kind == "route":
            what = "route: " + ("answerable" if args.get("answerable") else "not answerable")
        elif s.kind == "invalid" and args.get("error"):
            what = f"invalid ({args['error'].replace('_', ' ')})"
        else:
            what = s.kind
        got = f" → {' '.join(s.result_ids[:6])}" if s.result_ids and s.kind != "route" else ""
        parts.append(f"{i} {what}{got}" + (f" ({s.note})" if s.note else ""))
    if r.limit:
        parts.append(f"stopped: {r.limit}")
    if r.route:
        parts.append(f"answered via {r.route}")
    return " · ".join(parts)


def _field(value: Any, f: str) -> Any:
    """Field `f` of an answer or gold: the value itself when it is not an object of fields."""
    return value.get(f) if isinstance(value, dict) else value


def _gold_text(gold: Any, fields: Sequence[str]) -> str:
    """'field=value; ...' — or the gold itself when its keys are not the fields (a list scored by
    set precision and recall: fields precision/recall, gold {"names": [...]})."""
    if isinstance(gold, dict) and not any(f in gold for f in fields):
        return "; ".join(f"{k}={_fmt_value(v)}" for k, v in gold.items())
    return "; ".join(f"{f}={_fmt_value(_field(gold, f))}" for f in fields)


def query_rows(
    records: Sequence[Record], samples: Sequence, fields: Sequence[str], faith: dict[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    by_id = {s.id: s for s in samples}
    rows = []
    for r in sorted(records, key=lambda r: (r.strategy, r.length, r.depth, r.needle_index)):
        g = r.grounding or {}
        gf = g.get("fields") or {}
        answered = r.valid and r.answer is not None
        marks = []
        for f in fields:
            ok = r.marks.get(f, 0.0) >= 1
            cls = (gf.get(f) or {}).get("class") or ("invalid" if g.get("status") == "invalid" else "")
            marks.append(
                {
                    "field": f,
                    "ok": ok,
                    "cls": cls,
                    "title": f"{f}: answered {_fmt_value(_field(r.answer, f)) if answered else '(no valid answer)'}; "
                    f"gold {_fmt_value(_field(r.gold, f))}" + (f"; {cls}" if cls and not ok else ""),
                }
            )
        fr = faith.get((r.strategy, r.sample_id))
        rows.append(
            {
                "trace": trace_text(r),
                "r": r,
                "marks": marks,
                "context": needle_context(r, by_id.get(r.sample_id)),
                "gold": _gold_text(r.gold, fields),
                "status": "failed" if r.error else ("valid" if r.valid else "invalid"),
                "faith": None
                if fr is None
                else (f"{fr['score']:.2f}" if fr.get("status") == "ok" else fr.get("status")),
            }
        )
    return rows


# -- the page -----------------------------------------------------------------------------------------
def _env():
    from jinja2 import Environment, PackageLoader

    env = Environment(
        loader=PackageLoader("harness.report", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters.update(pct=_pct, num=_num, money=_money, pts=_pts, pval=_pval)
    env.globals.update(
        interval=interval, comparison_line=comparison_line, method_words=method_words, ptext=_ptext, STATUS=STATUS
    )
    return env


SCRIPT = r"""
(function () {
  "use strict";
  var table = document.getElementById("queries");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var q = document.getElementById("f-text"), st = document.getElementById("f-strategy"),
      ln = document.getElementById("f-length"), wr = document.getElementById("f-wrong"),
      shown = document.getElementById("f-count");
  function apply() {
    var text = q.value.toLowerCase(), s = st.value, l = ln.value, w = wr.checked, n = 0;
    rows.forEach(function (row) {
      var ok = (!s || row.getAttribute("data-strategy") === s) &&
               (!l || row.getAttribute("data-length") === l) &&
               (!w || row.getAttribute("data-perfect") !== "1") &&
               (!text || row.textContent.toLowerCase().indexOf(text) !== -1);
      row.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = String(n);
  }
  [q, st, ln, wr].forEach(function (el) { el.addEventListener("input", apply); el.addEventListener("change", apply); });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
    if (!th.hasAttribute("data-sort")) { return; }
    th.addEventListener("click", function () {
      var numeric = th.getAttribute("data-sort") === "num";
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        if (x === null) { x = a.cells[col].textContent; }
        if (y === null) { y = b.cells[col].textContent; }
        if (numeric) { return dir * ((parseFloat(x) || 0) - (parseFloat(y) || 0)); }
        return dir * x.localeCompare(y);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  document.documentElement.setAttribute("data-ready", "1");
  apply();
})();
"""


def render_report(
    summary: dict[str, Any],
    records: Sequence[dict[str, Any]],
    samples: Sequence,
    scenario,
    faith: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> str:
    fields = list(summary.get("fields") or scenario.fields)
    sl = summary.get("by_strategy_length") or []
    strategies = [s["strategy"] for s in summary.get("by_strategy") or []]
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(strategies)}
    records = as_records(records)
    lengths = sorted({r.length for r in records})
    depths = sorted({float(r.depth) for r in records})

    cells = heatmap_cells(summary, records)
    heatmaps = [{"strategy": s, "svg": heatmap_svg(s, cells.get(s, {}), lengths, depths)} for s in strategies]
    series = {s: {r["length"]: r.get("accuracy") for r in sl if r["strategy"] == s} for s in strategies}
    bars95 = {
        s: {r["length"]: (r.get("accuracy_lo"), r.get("accuracy_hi")) for r in sl if r["strategy"] == s}
        for s in strategies
    }
    null = (summary.get("null_baseline") or {}).get("accuracy")
    line = line_chart_svg(series, lengths, colors, null, bars95)
    scatters = [
        scatter_svg(
            "all lengths",
            [(s["strategy"], s.get("cost_per_1k"), s.get("accuracy")) for s in summary.get("by_strategy") or []],
            colors,
        )
    ]
    for L in lengths:
        scatters.append(
            scatter_svg(
                f"{L:,} tokens",
                [(r["strategy"], r.get("cost_per_1k"), r.get("accuracy")) for r in sl if r["length"] == L],
                colors,
            )
        )
    gclasses = list((summary.get("grounding") or {}).get("classes") or [])
    gcolors = dict(zip(gclasses, ["#E69F00", "#CC79A7", "#D55E00", "#999999"]))
    bars = (
        stacked_bar_svg(sl, gclasses, gcolors)
        if gclasses and (summary.get("grounding") or {}).get("available")
        else None
    )
    rows = query_rows(records, samples, fields, faith or {})
    script = SCRIPT.strip()
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    run = summary.get("run") or {}
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            summary=summary,
            run=run,
            fields=fields,
            strategies=strategies,
            colors=colors,
            lengths=lengths,
            depths=depths,
            heatmaps=heatmaps,
            line=line,
            scatters=scatters,
            bars=bars,
            gcolors=gcolors,
            rows=rows,
            script=Markup(script),
            csp=csp,
            by_sl=sl,
            tolerance=summary.get("tolerance") or 0.0,
            alpha=summary.get("alpha"),
            level=summary.get("level"),
            holm=any(
                (c.get("comparisons") or 1) > 1 and not c.get("rule")
                for v in summary.get("verdict") or []
                for c in v.get("comparisons") or []
            ),
            sequences=any(c.get("rule") for v in summary.get("verdict") or [] for c in v.get("comparisons") or []),
            verdict=summary.get("verdict") or [],
            notes=[*((summary.get("cost") or {}).get("notes") or []), *failure_notes(summary)],
            price=(summary.get("cost") or {}).get("price"),
            gfields=(summary.get("grounding") or {}).get("by_strategy_field") or [],
            attribution=summary.get("attribution") or [],
            faithfulness=(summary.get("faithfulness") or {}).get("available"),
            agents=summary.get("agents") or [],
            routes=summary.get("routes") or [],
            words=getattr(scenario, "words", None) or Words(),
        )
    )


def write_report(
    run_dir: Path, summary: dict[str, Any], records: Sequence[dict[str, Any]], samples: Sequence, scenario
) -> Path:
    from harness.scoring.faithfulness import read_results

    run_dir = Path(run_dir)
    html = render_report(summary, records, samples, scenario, read_results(run_dir))
    path = run_dir / REPORT_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
