"""`harness data label`: a model fills the labels of biographies that have none.

Each unlabeled biography is asked on its own, exactly as a run asks a needle (the scenario's
instructions and synthetic shots, the biography as the only document, "What is known about
NAME?"), in JSON-schema mode with the scenario's wire schema, decoded with `read_answer`. The
answer then has to pass the same label checks as a file written by hand (labels.py): a model's
"1951-02-31" is a failure, never a label. Requests go through the harness's own client (retries,
backoff, a bounded number in flight) and the response cache, so a rerun after a crash or Ctrl-C
asks only what was not answered yet.

Files are rewritten in place once every line is through (temporary file, then rename): labeled
lines get `json`, `labeled_by` (the model) and, where the line has none, the `occupation` the model
wrote (unscored; training data writes it before the two roles); all other keys and lines are kept
as they were. A line the model could not label stays unlabeled and is counted as failed.

`audit=True` asks about biographies that already have labels instead, writes nothing, and
reports how often the model agrees with them, field by field.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.plugin import UsageError
from scenarios.bio_needle.labels import LabelError, normalise_labels
from scenarios.bio_needle.loader import BioLabels, LineError, parse_line
from scenarios.bio_needle.scenario import OCCUPATION_KEY

BATCH_LINES = 256  # lines read, asked and written together: memory stays bounded on big files
MAX_FAILURES_KEPT = 20


class LabelReport(BaseModel):
    """Counts of one `harness data label` (and, in audit mode, the agreement per field)."""

    model: str = ""
    labelled: int = 0
    failed: int = 0
    skipped: int = 0  # already labeled (or unlabeled, in audit mode)
    unreadable: int = 0  # lines the loader refuses: left as they are
    from_cache: int = 0
    failures: list[str] = []
    audit: bool = False
    compared: int = 0
    agreement: dict[str, float] = {}

    def lines(self) -> list[str]:
        verb = "asked about" if self.audit else "labelled"
        done = self.compared if self.audit else self.labelled
        out = [
            f"{verb} {done:,}, failed {self.failed:,}, skipped {self.skipped:,}"
            + (f", unreadable lines left as they are {self.unreadable:,}" if self.unreadable else "")
            + f" ({self.from_cache:,} answers from the cache; model {self.model})"
        ]
        problems = self.failed + self.unreadable
        out += [f"  {f}" for f in self.failures[:5]]
        if problems > 5:
            out.append(f"  ... and {problems - 5} more")
        if self.agreement:
            fields = ", ".join(f"{k} {100 * v:.1f}%" for k, v in self.agreement.items() if k != "mean")
            out.append(
                f"agreement with the file's labels over {self.compared:,} biographies: "
                f"mean {100 * self.agreement['mean']:.1f}% ({fields})"
            )
            if self.failed:
                share = self.compared / (self.compared + self.failed)
                out.append(
                    f"counting the {self.failed:,} failed answers as disagreeing: "
                    f"mean {100 * share * self.agreement['mean']:.1f}% over {self.compared + self.failed:,}"
                )
        return out


def label_paths(target: Path) -> list[Path]:
    """The JSONL files a DIR_or_FILE names (a folder: its *.jsonl, sorted)."""
    if target.is_dir():
        files = sorted(p for p in target.glob("*.jsonl") if p.is_file())
        if not files:
            raise UsageError(f"{target}: no .jsonl files in it")
        return files
    if not target.is_file():
        raise UsageError(f"{target}: no such file or folder")
    return [target]


class Labeller:
    """Asks one endpoint for the labels of biographies: prompt, cache, schema, checks."""

    def __init__(self, endpoint, scenario, *, shots: int = 2, max_tokens: int = 160, concurrency: int = 4, cache=None):
        from harness.plugin import wire_schema

        self.endpoint, self.scenario = endpoint, scenario
        self.shots = scenario.shots(shots)
        self.schema = wire_schema(scenario)
        self.max_tokens, self.concurrency, self.cache = max_tokens, max(1, concurrency), cache
        self.identity = endpoint.identity()

    def request(self, name: str, bio: str) -> tuple[str, dict[str, Any]]:
        from harness.plugin import build_prompt, wire_answer
        from scenarios.bio_needle.scenario import question_for

        prompt = build_prompt(
            self.scenario.instructions,
            self.shots,
            bio,
            question_for(name),
            lambda gold: wire_answer(self.scenario, gold),
        )
        return self.endpoint.request(prompt, self.schema, self.max_tokens)

    async def ask_many(self, items: Sequence[tuple[str, str]]) -> list[tuple[dict[str, Any] | None, str | None, bool]]:
        """For each (name, bio): (labels, None, from cache) or (None, reason, from cache)."""
        from harness.plugin import ask_many

        requests = [self.request(name, bio) for name, bio in items]
        answers = await ask_many(self.endpoint, requests, concurrency=self.concurrency, cache=self.cache)
        return [(None, a.problem, a.cached) if a.text is None else self._read(a.text) + (a.cached,) for a in answers]

    def _read(self, text: str) -> tuple[dict[str, Any] | None, str | None]:
        """(labels, None) or (None, reason); the labels carry the occupation the model wrote under
        OCCUPATION_KEY (unscored, kept for training: label_file moves it beside the labels)."""
        from harness.plugin import parse_answer, read_answer

        answer, reason = read_answer(text, self.scenario)
        if answer is None:
            return None, reason
        try:
            labels, _ = normalise_labels(answer)
            labels = BioLabels.model_validate(labels).model_dump()
        except LabelError as e:
            return None, f"the model's label is refused: {e}"
        written, _ = parse_answer(text, self.schema)  # the wire form: the occupation is dropped when decoding
        occupation = " ".join(str(written.get(OCCUPATION_KEY) or "").split())
        return labels | ({OCCUPATION_KEY: occupation} if occupation else {}), None


def label_file(
    path: Path,
    labeller: Labeller,
    report: LabelReport,
    audit: bool = False,
    agree: Counter | None = None,
    on_batch=None,
) -> None:
    """Label (or audit: count agreeing fields into `agree`) one file, rewriting it in place when not auditing."""
    tmp = path.with_name(f".{path.name}.labeling.tmp")
    out = None if audit else open(tmp, "w", encoding="utf-8")
    agree = agree if agree is not None else Counter()
    ok = False
    try:
        with open(path, encoding="utf-8") as fh:
            lineno = 0
            while True:
                batch = [line for _, line in zip(range(BATCH_LINES), fh)]
                if not batch:
                    break
                todo: list[tuple[int, dict[str, Any], Any]] = []  # (index in batch, object, gold)
                for k, text in enumerate(batch):
                    n = lineno + k + 1
                    if not text.strip():
                        continue
                    try:
                        record, _, _ = parse_line(text)
                    except LineError as e:
                        report.unreadable += 1
                        _keep_failure(report, f"{path} line {n}: {e} (left as it is)")
                        continue
                    if (record.labels is not None) != audit:
                        report.skipped += 1
                        continue
                    todo.append((k, json.loads(text), record))
                answers = asyncio.run(labeller.ask_many([(r.name, r.bio) for _, _, r in todo])) if todo else []
                for (k, obj, record), (labels, reason, cached) in zip(todo, answers):
                    report.from_cache += cached
                    if labels is None:
                        report.failed += 1
                        _keep_failure(report, f"{path} line {lineno + k + 1}: {reason}")
                        continue
                    occupation = labels.pop(OCCUPATION_KEY, None)
                    if audit:
                        report.compared += 1
                        marks = labeller.scenario.score(labels, record.labels.model_dump())
                        agree.update({f: int(v) for f, v in marks.items()})
                        continue
                    report.labelled += 1
                    obj["json"] = labels
                    if occupation and not isinstance(obj.get(OCCUPATION_KEY), str):
                        obj[OCCUPATION_KEY] = occupation  # a file's own occupation is kept
                    obj["labeled_by"] = report.model
                    batch[k] = json.dumps(obj, ensure_ascii=False) + "\n"
                if out is not None:
                    out.writelines(line if line.endswith("\n") else line + "\n" for line in batch)
                lineno += len(batch)
                if on_batch is not None:
                    on_batch(len(batch))
        ok = True
    finally:
        if out is not None:
            out.close()
            if ok:
                os.replace(tmp, path)
            else:
                tmp.unlink(missing_ok=True)


def _keep_failure(report: LabelReport, text: str) -> None:
    if len(report.failures) < MAX_FAILURES_KEPT:
        report.failures.append(text)


def label(
    target: Path,
    endpoint,
    *,
    audit: bool = False,
    shots: int = 2,
    max_tokens: int = 160,
    concurrency: int = 4,
    cache=None,
    scenario=None,
    on_batch=None,
) -> LabelReport:
    """Label every unlabeled biography of a file or folder through `endpoint` (or audit the labeled ones)."""
    from scenarios.bio_needle.scenario import BioNeedle

    paths = label_paths(target)
    scenario = scenario or BioNeedle()
    labeller = Labeller(endpoint, scenario, shots=shots, max_tokens=max_tokens, concurrency=concurrency, cache=cache)
    report = LabelReport(model=endpoint.model, audit=audit)
    agree: Counter = Counter()
    for path in paths:
        label_file(path, labeller, report, audit, agree, on_batch)
    if report.compared:
        fields = list(scenario.fields)
        report.agreement = {f: agree[f] / report.compared for f in fields}
        report.agreement["mean"] = sum(report.agreement[f] for f in fields) / len(fields)
    return report
