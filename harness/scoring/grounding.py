"""Judge-free grounding: is each predicted field value supported by the text the model was shown?

Computed at summary time from the run folder (records.jsonl + samples.jsonl/corpus.jsonl), never
stored in records, so `harness report` recomputes it exactly and improved rules apply to old runs.
No model calls.

What the model was shown, as per-document *segments*:
  * full context: every document of the sample (from corpus.jsonl);
  * retrieval: each shown chunk (`shown.pieces[*].text`), located in the sample's joined corpus
    and cut at document boundaries, so a chunk straddling two documents gives two segments.
    A chunk that cannot be located is attributed whole to each document it overlaps.
A segment belongs to the needle when its document is one of the sample's gold ids.

Per field of a valid answer, the scenario's `Grounding` (Scenario.grounding()) says whether the
value is a claim (not an abstention such as "unknown") and which segments support it. Then:
  claim supported   by some shown segment (the grounded rate is supported claims / claims);
  wrong fields are classified, first match wins:
    misread        the value is supported by the shown needle text (e.g. the death year given
                   as the birth year, a foreign country named in the needle taken as nationality);
    distractor     supported only by a different document that was shown;
    hallucination  supported by nothing the model was shown;
    omitted        the answer abstained ("unknown", zeros, false) where the gold has a value.
Invalid answers (no schema-valid JSON) are counted apart, and failed requests are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.record import Record
from harness.samples import Sample

CLASSES = ("misread", "distractor", "hallucination", "omitted")
SEPARATOR = "\n\n"  # how the corpus is joined (retrievers.chunking.SEPARATOR)


@dataclass(frozen=True)
class Segment:
    doc_id: str
    text: str
    needle: bool


def _spans(sample: Sample, sep: str = SEPARATOR) -> list[tuple[int, int, str]]:
    spans, pos = [], 0
    for d in sample.documents:
        spans.append((pos, pos + len(d.text), d.id))
        pos += len(d.text) + len(sep)
    return spans


def shown_segments(record: Record, sample: Sample) -> list[Segment]:
    """The text the model saw, cut into per-document segments (see the module docstring)."""
    gold = set(sample.gold_ids)
    docs = {d.id: d.text for d in sample.documents}
    pieces = record.shown.pieces
    out: list[Segment] = []
    joined: str | None = None
    spans: list[tuple[int, int, str]] = []
    for p in pieces:
        ids = list(p.get("doc_ids") or [])
        text = p.get("text")
        if text is None:  # a whole document, kept in corpus.jsonl
            for d in ids:
                if d in docs:
                    out.append(Segment(d, docs[d], d in gold))
            continue
        if len(ids) == 1 and text in docs.get(ids[0], ""):
            out.append(Segment(ids[0], text, ids[0] in gold))
            continue
        if joined is None:
            joined, spans = SEPARATOR.join(d.text for d in sample.documents), _spans(sample)
        start = _locate(joined, spans, text, ids)
        if start < 0:
            out.extend(Segment(d, text, d in gold) for d in ids)
            continue
        end = start + len(text)
        for a, b, d in spans:
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                out.append(Segment(d, joined[lo:hi], d in gold))
    return out


def _locate(joined: str, spans: list[tuple[int, int, str]], text: str, ids: Sequence[str]) -> int:
    """Start of `text` in the joined corpus, preferring the occurrence at its first document."""
    first = next((a for a, _, d in spans if ids and d == ids[0]), 0)
    pos = joined.find(text, max(0, first - len(text)))
    return pos if pos >= 0 else joined.find(text)


def ground_record(record: Record, sample: Sample | None, grounding, fields: Sequence[str]) -> dict[str, Any] | None:
    """Per-field grounding of one record; None for failed requests or when it cannot be computed.

    A matcher that raises is counted as an error for that field (class "error"), never as a
    hallucination: a bug in the rules is not the model's fault."""
    if grounding is None or sample is None or record.error:
        return None
    if not record.valid or not isinstance(record.answer, dict):
        return {"status": "invalid", "fields": {}}
    segments = shown_segments(record, sample)
    answer, marks = record.answer, record.marks
    out: dict[str, Any] = {}
    for f in fields:
        value = answer.get(f)
        failure = None
        try:
            claim = bool(grounding.is_claim(f, value))
        except Exception as e:
            claim, failure = False, f"{type(e).__name__}: {e}"
        in_needle = in_other = False
        where: list[str] = []
        if claim:
            for seg in segments:
                if in_needle if seg.needle else in_other:
                    continue
                try:
                    ok = grounding.supports(f, value, seg.text)
                except Exception as e:  # a matcher bug must not sink the report, nor blame the model
                    failure = f"{type(e).__name__}: {e}"
                    break
                if ok:
                    where.append(seg.doc_id)
                    if seg.needle:
                        in_needle = True
                    else:
                        in_other = True
        correct = marks.get(f, 0.0) >= 1
        if failure is not None:
            out[f] = {
                "claim": claim,
                "supported": None,
                "in_needle": False,
                "in_other": False,
                "docs": [],
                "class": "correct" if correct else "error",
                "error": failure[:300],
            }
            continue
        if correct:
            cls = "correct"
        elif not claim:
            cls = "omitted"
        elif in_needle:
            cls = "misread"
        elif in_other:
            cls = "distractor"
        else:
            cls = "hallucination"
        out[f] = {
            "claim": claim,
            "supported": (in_needle or in_other) if claim else None,
            "in_needle": in_needle,
            "in_other": in_other,
            "docs": where,
            "class": cls,
        }
    return {"status": "ok", "fields": out}


def annotate(records: Iterable[Record], samples: Iterable[Sample], scenario) -> bool:
    """Set `record.grounding` (in memory) on every record; False when the scenario has no rules."""
    grounding = scenario.grounding() if hasattr(scenario, "grounding") else None
    by_id = {s.id: s for s in samples}
    fields = list(scenario.fields)
    for r in records:
        r.grounding = ground_record(r, by_id.get(r.sample_id), grounding, fields) if grounding else None
    return grounding is not None


def _empty() -> dict[str, Any]:
    return {
        "claims": 0,
        "supported_claims": 0,
        "answered_fields": 0,
        "invalid_answers": 0,
        "grounding_errors": 0,
        **{c: 0 for c in CLASSES},
    }


def _add(acc: dict[str, Any], g: dict[str, Any] | None) -> None:
    if g is None:
        return
    if g["status"] == "invalid":
        acc["invalid_answers"] += 1
        return
    for info in g["fields"].values():
        acc["answered_fields"] += 1
        if info["class"] == "error":  # the rules failed on this field: counted apart, in no class
            acc["grounding_errors"] += 1
            continue
        if info["claim"]:
            acc["claims"] += 1
            acc["supported_claims"] += int(bool(info["supported"]))
        if info["class"] in CLASSES:
            acc[info["class"]] += 1


def _rates(acc: dict[str, Any]) -> dict[str, Any]:
    out = dict(acc)
    out["grounded_rate"] = acc["supported_claims"] / acc["claims"] if acc["claims"] else None
    wrong = sum(acc[c] for c in CLASSES)
    out["wrong_answered_fields"] = wrong
    for c in CLASSES:
        # rate: per field of a valid answer; share: of the wrong fields of valid answers
        out[f"{c}_rate"] = acc[c] / acc["answered_fields"] if acc["answered_fields"] else None
        out[f"{c}_share"] = acc[c] / wrong if wrong else None
    return out


def grounding_summary(records: Sequence[Record], fields: Sequence[str]) -> dict[str, Any]:
    """Grounding counts and rates per (strategy, length), per strategy, and per (strategy, field)."""
    by_sl: dict[tuple[str, int], dict[str, Any]] = {}
    by_s: dict[str, dict[str, Any]] = {}
    by_sf: dict[tuple[str, str], dict[str, int]] = {}
    for r in records:
        g = r.grounding
        if g is None:
            continue
        _add(by_sl.setdefault((r.strategy, r.length), _empty()), g)
        _add(by_s.setdefault(r.strategy, _empty()), g)
        for f, info in g["fields"].items():
            acc = by_sf.setdefault(
                (r.strategy, f), {"claims": 0, "supported_claims": 0, "grounding_errors": 0, **{c: 0 for c in CLASSES}}
            )
            if info["class"] == "error":
                acc["grounding_errors"] += 1
                continue
            if info["claim"]:
                acc["claims"] += 1
                acc["supported_claims"] += int(bool(info["supported"]))
            if info["class"] in CLASSES:
                acc[info["class"]] += 1
    return {
        "by_strategy_length": {k: _rates(v) for k, v in by_sl.items()},
        "by_strategy": {k: _rates(v) for k, v in by_s.items()},
        "by_strategy_field": [
            {
                "strategy": s,
                "field": f,
                **v,
                "grounded_rate": v["supported_claims"] / v["claims"] if v["claims"] else None,
            }
            for (s, f), v in by_sf.items()
        ],
    }
