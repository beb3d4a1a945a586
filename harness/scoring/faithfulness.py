"""ragas Faithfulness through an OpenAI-compatible judge (opt-in: `--faithfulness ragas`).

For each answered query ragas extracts statements from the model's response and asks the judge,
statement by statement, whether the context supports it (NLI verdicts); the score is the
supported fraction. The context is exactly what the model was shown: for full context the
haystack split by document, for retrieval the shown chunks.

How it runs:
  * ragas's legacy `Faithfulness` with its `LangchainLLMWrapper` around langchain_openai's
    `OpenAI` (the /v1/completions API: the embedded Gemma 3 270M is a base model without a chat
    template) or `ChatOpenAI` (--judge-api chat), both with `base_url` = the judge endpoint.
    The default judge is the run's own endpoint and model.
  * its own concurrency limit (--judge-concurrency), a large judge max_tokens (default 1024);
  * statements (--judge-statements): ragas's own statement prompt (`ragas`), or one statement per field
    the parsed answer claims, "<subject>'s <field> is <value>." (`fields`): for a structured answer
    the statement step only rewrites JSON as sentences, so code does it and the judge gives the
    verdicts alone (its NLI prompt and score unchanged). `auto`: fields for the embedded model and its
    readers (a 270M judge wrote malformed statement lists: #29), ragas for any other judge;
  * every outcome is kept in `faithfulness.jsonl` in the run folder, one line per query:
      ok             a score in [0, 1]
      nan            ragas returned NaN (no statements extracted)
      parse_failure  the judge's output did not parse into ragas's schema, even after ragas's
                     own fix-the-format retry
      truncated      the judge stopped at max_tokens (ragas refuses unfinished output)
      error          the request failed (HTTP error, timeout)
      skipped        nothing to judge (failed request or empty response)
    nothing is dropped silently: the summary shows every count beside the mean of the scored;
  * the judge is checked against the judge-free grounding (harness.scoring.grounding), field by
    field: its verdict on the statement naming each claimed value against whether the shown needle
    states it (`judge_agreement`; a judge that names no statement for a field disagrees);
  * offline: RAGAS_DO_NOT_TRACK=true (no telemetry), and tiktoken — which ragas and langchain
    only use to count tokens — is given a local byte-level encoding for the duration, so its
    encoding files are never downloaded. The run is resumable: queries already judged (same
    response) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.record import Record
from harness.samples import Sample

RESULTS_FILE = "faithfulness.jsonl"
_capture: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("harness_ragas_capture")
STATUSES = ("ok", "nan", "parse_failure", "truncated", "error", "skipped")


@dataclass
class Judge:
    url: str  # OpenAI-compatible base URL, with /v1
    model: str
    api: str = "completions"  # or "chat"
    api_key_env: str | None = None
    concurrency: int = 2
    max_tokens: int = 1024
    timeout_s: float = 600.0
    statements: str = "ragas"  # or "fields": field_statements, the judge writes the verdicts only


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def field_statements(scenario, subject: str, answer: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(field, value, statement) for each field of `answer` that claims something (the grounding's is_claim:
    not "unknown", a date of zeros, false): "<subject>'s <field> is <value>.", "<subject> is a <field>."."""
    grounding = scenario.grounding()
    out = []
    for field in scenario.fields:
        value = answer.get(field)
        if value is None or (grounding is not None and not grounding.is_claim(field, value)):
            continue
        words = field.replace("_", " ")
        text = f"{subject} is a {words}." if value is True else f"{subject}'s {words} is {value_text(value)}."
        out.append((field, value, text))
    return out


def judge_items(
    records: Iterable[Record], samples: Iterable[Sample], scenario=None, statements: str = "ragas"
) -> list[dict[str, Any]]:
    """What ragas gets for each record: question, response, and the shown context as a list; with
    statements="fields" also the statements to judge (`field_statements` of the parsed answer)."""
    if statements == "fields" and scenario is None:
        raise ValueError("statements from fields need the scenario")
    by_id = {s.id: s for s in samples}
    items = []
    for r in records:
        sample = by_id.get(r.sample_id)
        raw = r.raw
        item = {"strategy": r.strategy, "sample_id": r.sample_id, "length": r.length, "digest": _digest(raw or "")}
        if r.error or not (raw or "").strip() or sample is None:
            item["skip"] = "failed request" if r.error else "empty response" if sample else "sample missing"
        else:
            docs = {d.id: d.text for d in sample.documents}
            contexts = []
            for p in r.shown.pieces:
                if p.get("text") is not None:
                    contexts.append(p["text"])
                else:
                    contexts.extend(docs[d] for d in p.get("doc_ids") or [] if d in docs)
            item.update(question=sample.question, response=raw, contexts=contexts or [""])
            if statements == "fields":
                item["statements"] = [t for _, _, t in field_statements(scenario, sample.subject, r.answer or {})]
        items.append(item)
    return items


def read_results(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    path = Path(run_dir) / RESULTS_FILE
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        out[(row["strategy"], row["sample_id"])] = row
    return out


# -- offline guards ------------------------------------------------------------------------------
def _local_encoding():
    """A byte-level tiktoken encoding built in memory: counts are rough, nothing is downloaded."""
    import tiktoken

    return tiktoken.Encoding(
        name="harness-local-bytes",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={"<|endoftext|>": 256},
    )


@contextlib.contextmanager
def offline_tiktoken():
    """Route tiktoken's encoding lookups to the local encoding for the duration."""
    import tiktoken

    enc = _local_encoding()
    saved = tiktoken.get_encoding, tiktoken.encoding_for_model
    tiktoken.get_encoding = lambda name, *a, **k: enc  # type: ignore[assignment]
    tiktoken.encoding_for_model = lambda name, *a, **k: enc  # type: ignore[assignment]
    try:
        yield enc
    finally:
        tiktoken.get_encoding, tiktoken.encoding_for_model = saved


def _import_ragas():
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ragas import _analytics

        _analytics.do_not_track.cache_clear()
        from ragas.dataset_schema import SingleTurnSample
        from ragas.llms import LangchainLLMWrapper
        from ragas.metrics._faithfulness import Faithfulness
        from ragas.run_config import RunConfig
    return SingleTurnSample, LangchainLLMWrapper, Faithfulness, RunConfig


def _classify(e: BaseException) -> str:
    names = {c.__name__ for c in type(e).__mro__}
    if "LLMDidNotFinishException" in names:
        return "truncated"
    if names & {"RagasOutputParserException", "OutputParserException", "ValidationError", "JSONDecodeError"}:
        return "parse_failure"
    return "error"


def make_metric(judge: Judge):
    """ragas Faithfulness over the judge endpoint, recording its statements and verdicts."""
    SingleTurnSample, LangchainLLMWrapper, Faithfulness, RunConfig = _import_ragas()
    key = (os.environ.get(judge.api_key_env) if judge.api_key_env else None) or "EMPTY"
    common = dict(
        model=judge.model,
        base_url=judge.url,
        api_key=key,
        temperature=0.0,
        max_tokens=judge.max_tokens,
        timeout=judge.timeout_s,
        max_retries=1,
    )
    if judge.api == "chat":
        from langchain_openai import ChatOpenAI

        llm = ChatOpenAI(**common)
    else:
        from langchain_openai import OpenAI

        llm = OpenAI(**common)
    run_config = RunConfig(timeout=int(judge.timeout_s), max_retries=2, max_wait=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = LangchainLLMWrapper(llm, run_config=run_config)

    class Recording(Faithfulness):
        """Keeps what ragas extracted and decided (per task, through a context variable)."""

        async def _create_statements(self, row, callbacks):
            given = _capture.get({}).get("given")
            if given is not None:  # statements from the answer's fields: the judge writes verdicts only
                from ragas.metrics._faithfulness import StatementGeneratorOutput

                _capture.get({})["statements"] = list(given)
                return StatementGeneratorOutput(statements=list(given))
            out = await super()._create_statements(row, callbacks)
            _capture.get({})["statements"] = list(out.statements)
            return out

        async def _create_verdicts(self, row, statements, callbacks):
            out = await super()._create_verdicts(row, statements, callbacks)
            _capture.get({})["verdicts"] = [int(bool(s.verdict)) for s in out.statements]
            return out

    metric = Recording(llm=wrapper)
    metric.init(run_config)
    return metric, SingleTurnSample


async def _judge_all(items, judge: Judge, on_result: Callable[[dict[str, Any]], None]) -> None:
    metric, SingleTurnSample = make_metric(judge)
    sem = asyncio.Semaphore(max(1, judge.concurrency))

    async def one(item: dict[str, Any]) -> None:
        async with sem:
            row = {k: item[k] for k in ("strategy", "sample_id", "length", "digest")}
            row.update(score=None, statements=None, verdicts=None, detail=None, statements_from=judge.statements)
            sample = SingleTurnSample(
                user_input=item["question"], response=item["response"], retrieved_contexts=item["contexts"]
            )
            data: dict[str, Any] = {"given": item.get("statements")}
            _capture.set(data)
            try:
                score = await metric.single_turn_ascore(sample, timeout=judge.timeout_s * 4)
            except Exception as e:  # noqa: BLE001 — every failure is classified and kept
                row["status"] = _classify(e)
                row["detail"] = f"{type(e).__name__}: {str(e)[:300]}"
            else:
                if score is None or (isinstance(score, float) and math.isnan(score)):
                    row["status"] = "nan"
                else:
                    row["status"], row["score"] = "ok", float(score)
            row["statements"] = data.get("statements")
            row["verdicts"] = data.get("verdicts")
        on_result(row)

    await asyncio.gather(*(one(i) for i in items))


def run_ragas(
    run_dir: Path,
    records: Sequence[Record],
    samples: Sequence[Sample],
    judge: Judge,
    on_result: Callable[[dict[str, Any]], None] = lambda row: None,
    scenario=None,
) -> dict[str, int]:
    """Judge every record not judged yet (same response, statements made the same way); append results to
    faithfulness.jsonl. `scenario`: needed for statements from fields."""
    run_dir = Path(run_dir)
    done = read_results(run_dir)
    items = judge_items(records, samples, scenario, judge.statements)
    todo, counts = [], {s: 0 for s in STATUSES}
    path = run_dir / RESULTS_FILE

    def write(row: dict[str, Any]) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[row["status"]] += 1
        on_result(row)

    for it in items:
        prev = done.get((it["strategy"], it["sample_id"]))
        if (
            prev is not None
            and prev.get("digest") == it["digest"]
            and prev.get("statements_from", "ragas") == judge.statements
            and prev.get("status") not in ("error",)
        ):
            continue
        if "skip" in it:
            write(
                {k: it[k] for k in ("strategy", "sample_id", "length", "digest")}
                | {
                    "status": "skipped",
                    "score": None,
                    "detail": it["skip"],
                    "statements": None,
                    "verdicts": None,
                    "statements_from": judge.statements,
                }
            )
        else:
            todo.append(it)
    if todo:
        # ragas logs an ERROR line per unparsable judge output; they are counted here instead
        log = logging.getLogger("ragas")
        level = log.level
        log.setLevel(logging.CRITICAL)
        try:
            with offline_tiktoken():
                asyncio.run(_judge_all(todo, judge, write))
        finally:
            log.setLevel(level)
    return counts


def value_text(value: Any) -> str:
    """A field value as a sentence writes it: dates as "12 March 1950" (zeros left out), the rest as is."""
    if isinstance(value, dict) and {"day", "month", "year"} <= value.keys():
        import calendar

        day = str(value["day"]) if value["day"] else ""
        month = calendar.month_name[value["month"]] if 1 <= (value["month"] or 0) <= 12 else ""
        return " ".join(p for p in (day, month, str(value["year"])) if p)
    return str(value)


AGREEMENT = ("yes/needle", "yes/not", "no/needle", "no/not", "unmatched")


def judge_agreement(record: Record, row: dict[str, Any]) -> dict[str, int]:
    """The judge's verdicts against the judge-free grounding, field by field: for each field the answer
    claims, the judge's verdict on the first statement that names the value (or, for a true flag, the
    field) — yes/no — against whether the shown needle text states it (needle/not); `unmatched` when no
    statement names it. Needs `record.grounding` (harness.scoring.grounding.annotate)."""
    out = dict.fromkeys(AGREEMENT, 0)
    fields = ((record.grounding or {}).get("fields") or {}) if row.get("status") == "ok" else {}
    said = list(zip(row.get("statements") or [], row.get("verdicts") or []))
    for field, g in fields.items():
        if not g.get("claim"):
            continue
        value = (record.answer or {}).get(field)
        words = field.replace("_", " ") if value is True else value_text(value)
        verdict = next((v for text, v in said if words.lower() in str(text).lower()), None)
        if verdict is None:
            out["unmatched"] += 1
        else:
            out[f"{'yes' if verdict else 'no'}/{'needle' if g.get('in_needle') else 'not'}"] += 1
    return out


def faithfulness_summary(records: Sequence[Record], results: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Per (strategy, length) and per strategy: mean score of the scored, every status counted, and how far
    the judge's verdicts agree with the judge-free grounding (judge_agreement; where records are grounded)."""

    def empty():
        return {
            "ragas_scores": [],
            **{f"ragas_{s}": 0 for s in STATUSES},
            "ragas_missing": 0,
            **{f"judge_{k}": 0 for k in AGREEMENT},
        }

    by_sl: dict[tuple[str, int], dict[str, Any]] = {}
    by_s: dict[str, dict[str, Any]] = {}
    for r in records:
        row = results.get((r.strategy, r.sample_id))
        for acc in (by_sl.setdefault((r.strategy, r.length), empty()), by_s.setdefault(r.strategy, empty())):
            if row is None or row.get("digest") != _digest(r.raw or ""):
                acc["ragas_missing"] += 1
                continue
            acc[f"ragas_{row['status']}"] += 1
            if row["status"] == "ok":
                acc["ragas_scores"].append(row["score"])
                for k, n in judge_agreement(r, row).items():
                    acc[f"judge_{k}"] += n

    def done(acc):
        scores = acc.pop("ragas_scores")
        acc["ragas_faithfulness"] = sum(scores) / len(scores) if scores else None
        acc["ragas_scored"] = len(scores)
        fields = sum(acc[f"judge_{k}"] for k in AGREEMENT)
        agree = acc["judge_yes/needle"] + acc["judge_no/not"]
        acc["judge_agreement"] = agree / fields if fields else None  # unmatched fields count as disagreeing
        return acc

    return {
        "available": bool(results),
        "by_strategy_length": {k: done(v) for k, v in by_sl.items()},
        "by_strategy": {k: done(v) for k, v in by_s.items()},
    }
