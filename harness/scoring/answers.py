"""Parse a model's raw text into an answer and mark it field by field, never raising.

A response that is not JSON, not an object, or does not fit the scenario's schema is
*invalid*: every field scores 0 and the reason is kept, so the run goes on and the
report can show why.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

import jsonschema

MAX_REASON = 300


def parse_answer(raw: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(answer, None) when `raw` is a JSON object valid under `schema`, else (None, reason)."""
    if not isinstance(raw, str):
        return None, f"response is {type(raw).__name__}, not text"
    text = raw.strip()
    if not text:
        return None, "empty response"
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        return None, f"not JSON: {str(e)[:MAX_REASON]}"
    if not isinstance(value, dict):
        return None, f"JSON {type(value).__name__}, not an object"
    try:
        error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(value))
    except (jsonschema.SchemaError, RecursionError) as e:
        return None, f"schema check failed: {str(e)[:MAX_REASON]}"
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "answer"
        return None, f"schema: {where}: {error.message[:MAX_REASON]}"
    return value, None


# -- the answer as the model writes it ("wire" form) ------------------------------------------------
# Structured-output APIs want a JSON object at the top. A scenario whose answer is not an object of
# fields (a string, a number, a list) declares that schema; the core wraps it as {"answer": ...} on
# the way out (request schema, shots, fine-tuning targets) and unwraps it on the way in.
WRAP_KEY = "answer"


def is_wrapped(schema: dict[str, Any]) -> bool:
    return schema.get("type") != "object"


_SCHEMAS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def answer_schema(scenario) -> dict[str, Any]:
    """`scenario.answer_schema()`, computed once per scenario object and shared (do not mutate it):
    a pydantic model's JSON schema costs ~1.5 ms to build, and every request, shot and parsed
    answer needs it (bench/overhead.py: 14 of 17 s of the harness's own time on 1,000 queries)."""
    try:
        return _SCHEMAS[scenario]
    except (KeyError, TypeError):
        pass
    schema = scenario.answer_schema()
    try:
        _SCHEMAS[scenario] = schema
    except TypeError:  # not weak-referenceable: computed each time
        pass
    return schema


def wire_schema(scenario) -> dict[str, Any]:
    """The schema the model answers in: the scenario's, wrapped in an object when it is not one."""
    schema = answer_schema(scenario)
    if not is_wrapped(schema):
        return schema
    return {"type": "object", "properties": {WRAP_KEY: schema}, "required": [WRAP_KEY], "additionalProperties": False}


def wire_answer(scenario, gold: Any) -> Any:
    """A gold answer as the model should write it: the scenario's encoding, wrapped like wire_schema."""
    encode = getattr(scenario, "encode_answer", None)
    value = encode(gold) if encode is not None else gold
    return {WRAP_KEY: value} if is_wrapped(answer_schema(scenario)) else value


# -- "answer, or say the text cannot answer it" (self-route, Li et al. 2024) ----------------------------
# The form is part of the core so that a reader can be fine-tuned on it (harness finetune) and any
# strategy can ask it: {"answerable": true, "answer": <the wire answer>} or {"answerable": false,
# "answer": null}. An object at the top, so hosted structured-output APIs accept it too.
ANSWERABLE_NOTE = (
    "If the text below does not contain what is needed to answer the question, reply "
    '{"answerable": false, "answer": null}; otherwise reply {"answerable": true, "answer": ANSWER}, '
    "with ANSWER the JSON object described above."
)


def answerable_instructions(scenario) -> str:
    """The scenario's instructions with ANSWERABLE_NOTE after them: the task statement of the answerable form
    (one place, so a strategy that asks it and a reader tuned on it see the same words)."""
    return scenario.instructions.rstrip() + "\n" + ANSWERABLE_NOTE


def answerable_schema(scenario) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "answerable": {"type": "boolean"},
            "answer": {"anyOf": [wire_schema(scenario), {"type": "null"}]},
        },
        "required": ["answerable", "answer"],
        "additionalProperties": False,
    }


def answerable_answer(scenario, gold: Any | None) -> dict[str, Any]:
    """The answerable form of a gold answer; None: the text does not answer the question."""
    if gold is None:
        return {"answerable": False, "answer": None}
    return {"answerable": True, "answer": wire_answer(scenario, gold)}


def read_answerable(raw: str, scenario) -> tuple[bool | None, str | None, str | None]:
    """(answerable, the answer's wire text or None, reason when unreadable) of an answerable-form reply.

    A reply that says answerable but gives no answer counts as not answerable."""
    value, reason = parse_answer(raw, answerable_schema(scenario))
    if value is None:
        return None, None, reason
    if not value.get("answerable") or value.get("answer") is None:
        return False, None, None
    return True, json.dumps(value["answer"], ensure_ascii=False, separators=(",", ":")), None


# The paper's own one-call form (Li et al. 2024's Self-Route prompt): the answer itself, or the word
# "unanswerable". One JSON value either way (a root anyOf: vLLM's structured output takes it, OpenAI's
# strict mode does not; the answerable form above is the one for hosted endpoints).
UNANSWERABLE = "unanswerable"
UNANSWERABLE_NOTE = (
    'If the text below does not contain what is needed to answer the question, reply "unanswerable"; '
    "otherwise reply with the JSON object described above."
)


def unanswerable_schema(scenario) -> dict[str, Any]:
    return {"anyOf": [wire_schema(scenario), {"type": "string", "enum": [UNANSWERABLE]}]}


def read_unanswerable(raw: str, scenario) -> tuple[bool | None, str | None, str | None]:
    """(answerable, the answer's wire text or None, reason when unreadable) of a reply in the one-call form:
    "unanswerable" (quoted or not, any case) is not answerable; a valid answer is."""
    text = (raw or "").strip() if isinstance(raw, str) else ""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = text
    if isinstance(value, str) and value.strip().lower() == UNANSWERABLE:
        return False, None, None
    answer, reason = parse_answer(text, wire_schema(scenario))
    if answer is None:
        return None, None, reason
    return True, json.dumps(answer, ensure_ascii=False, separators=(",", ":")), None


def read_answer(raw: str, scenario, schema: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """The scored form of a model's answer, or (None, reason): parse against the wire schema, unwrap,
    then the scenario's decoding."""
    answer, reason = parse_answer(raw, schema if schema is not None else wire_schema(scenario))
    if answer is None:
        return None, reason
    if is_wrapped(answer_schema(scenario)):
        answer = answer.get(WRAP_KEY)
    decode = getattr(scenario, "decode_answer", None)
    if decode is None:
        return answer, None
    try:
        return decode(answer), None
    except Exception as e:  # a schema-valid answer the scenario cannot decode: its bug, kept as the reason
        return None, f"decoding the answer failed: {type(e).__name__}: {str(e)[:MAX_REASON]}"


_VALIDATORS: dict[str, Any] = {}


def _validator(schema: dict[str, Any]):
    """The schema's validator, checked and built once per schema (not once per answer: ~14 ms)."""
    key = json.dumps(schema, sort_keys=True, default=str)
    validator = _VALIDATORS.get(key)
    if validator is None:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = _VALIDATORS[key] = cls(schema)
    return validator


def mark(scenario, answer: Any, gold: Any) -> tuple[dict[str, float], float]:
    """Per-field marks (1/0, or a fraction for set-valued fields) and their mean; an invalid answer
    gets every field wrong. A scorer that raises marks every field wrong too: use `mark_checked`
    to keep the reason."""
    marks, score, _ = mark_checked(scenario, answer, gold)
    return marks, score


def mark_checked(scenario, answer: Any, gold: Any) -> tuple[dict[str, float], float, str | None]:
    """`mark`, plus the scorer's exception as a one-line reason (a scorer bug must not sink a
    paid-for query, nor pass for a wrong answer: the record says the scoring failed)."""
    error = None
    if answer is None:
        marks = {f: 0.0 for f in scenario.fields}
    else:
        try:
            marks = {f: _mark_value(v) for f, v in scenario.score(answer, gold).items()}
        except Exception as e:
            marks = {f: 0.0 for f in scenario.fields}
            error = f"{type(e).__name__}: {str(e)[:MAX_REASON]}"
    return marks, (sum(marks.values()) / len(marks) if marks else 0.0), error


def _mark_value(v: Any) -> float:
    """True/False -> 1.0/0.0; a number (set precision, recall, F1) is kept, clipped to [0, 1]."""
    if isinstance(v, bool) or v is None:
        return float(bool(v))
    try:
        return min(1.0, max(0.0, float(v)))
    except (TypeError, ValueError):
        return float(bool(v))


# -- set-valued answers -----------------------------------------------------------------------------
def _norm_item(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def set_precision_recall(predicted: Any, gold: Any, normalize=_norm_item) -> tuple[float, float]:
    """(precision, recall) of a predicted list against a gold list, as sets after `normalize`
    (default: strings compared case- and whitespace-insensitively, anything else by its JSON).

    Duplicates count once. An empty prediction has precision 1 only when the gold is empty too
    (saying "none" when there are some is not precise, it is wrong); an empty gold has recall 1.
    Anything but a list scores (0, 0)."""
    if not isinstance(predicted, list) or not isinstance(gold, list):
        return 0.0, 0.0
    got = {normalize(v) for v in predicted}
    want = {normalize(v) for v in gold}
    hit = len(got & want)
    precision = hit / len(got) if got else float(not want)
    recall = hit / len(want) if want else 1.0
    return precision, recall
