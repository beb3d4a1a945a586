"""`harness data inspect`: one HTML page of biographies and their labels, for a person to check by eye.

Self-contained and inert: no script, no network (a Content-Security-Policy forbids both), every
value from the file escaped. Each row shows the labels as a run would score them, what the
loader normalised to get there, who labeled it (`labeled_by`), and the biography with the
person's name marked; refused lines appear with their reason.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from scenarios.bio_needle.loader import LineError, parse_line

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 6px; vertical-align: top; text-align: left; }
th { position: sticky; top: 0; background: #f4f4f4; }
td.bio { max-width: 60em; }
mark { background: #fde68a; }
.muted { color: #777; } .bad { color: #b91c1c; } .note { color: #92400e; font-size: 12px; }
tr.unlabeled td.lab { color: #999; }
"""


def _date(d: dict[str, int]) -> str:
    if not any(d.values()):
        return "—"
    return "-".join(f"{v:0{w}d}" if v else "?" * w for v, w in ((d["year"], 4), (d["month"], 2), (d["day"], 2)))


def _marked(bio: str, name: str) -> str:
    """The biography escaped, with each mention of the name (case-insensitive) in <mark>."""
    pattern = re.compile(rf"(?<![^\W_]){re.escape(name)}(?![^\W_])", re.IGNORECASE)
    out, pos = [], 0
    for m in pattern.finditer(bio):
        out += [html.escape(bio[pos : m.start()]), "<mark>", html.escape(m.group(0)), "</mark>"]
        pos = m.end()
    out.append(html.escape(bio[pos:]))
    return "".join(out)


def _row(path: Path, lineno: int, text: str) -> str:
    e = html.escape
    where = f'<td class="muted">{e(path.name)}:{lineno}</td>'
    try:
        rec, extras, notes = parse_line(text)
    except LineError as err:
        return f'<tr>{where}<td colspan="8" class="bad">refused: {e(str(err))}</td></tr>'
    lab = rec.labels
    if lab is None:
        cells = '<td class="lab" colspan="5">unlabeled</td>'
    else:
        cells = "".join(
            f'<td class="lab">{e(v)}</td>'
            for v in (
                lab.nationality,
                _date(lab.date_of_birth.model_dump()),
                _date(lab.date_of_death.model_dump()),
                "yes" if lab.sportsperson else "no",
                "yes" if lab.politician else "no",
            )
        )
    by: Any = extras.get("labeled_by")
    note = "".join(f'<div class="note">{e(n)}</div>' for n in notes)
    return (
        f'<tr class="{"unlabeled" if lab is None else "labeled"}">{where}<td>{e(rec.name)}</td>{cells}'
        f'<td class="muted">{e(str(by)) if by is not None else ""}{note}</td>'
        f'<td class="bio">{_marked(rec.bio, rec.name)}</td></tr>'
    )


def write_inspection(paths: list[Path], out: Path, limit: int = 500) -> tuple[Path, int]:
    """Write the page for the first `limit` lines of each file; (path written, rows)."""
    rows: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            shown = 0
            for lineno, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                if shown >= limit:
                    rows.append(
                        f'<tr><td colspan="9" class="muted">{html.escape(path.name)}: '
                        f"only the first {limit:,} biographies are shown</td></tr>"
                    )
                    break
                rows.append(_row(path, lineno, text))
                shown += 1
    title = html.escape(", ".join(p.name for p in paths))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>biographies: {title}</title><style>{STYLE}</style></head><body>"
        f"<h1>Biographies: {title}</h1>"
        '<p class="muted">Labels as a run scores them; dates as YYYY-MM-DD with ? for parts the text does not give. '
        "The person's name is marked in the text.</p>"
        "<table><thead><tr><th>line</th><th>name</th><th>nationality</th><th>born</th><th>died</th>"
        "<th>sportsperson</th><th>politician</th><th>labeled by / normalised</th><th>biography</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>\n"
    )
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out, len(rows)
