"""Parse a model's raw text into an answer and mark it field by field, never raising.

A response that is not JSON, not an object, or does not fit the scenario's schema is
*invalid*: every field scores 0 and the reason is kept, so the run goes on and the
report can show why.
"""

from __future__ import annotations

import json
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


def mark(scenario, answer: dict[str, Any] | None, gold: dict[str, Any]) -> tuple[dict[str, bool], float]:
    """Per-field marks and their mean; an invalid answer gets every field wrong."""
    if answer is None:
        marks = {f: False for f in scenario.fields}
    else:
        try:
            marks = {f: bool(v) for f, v in scenario.score(answer, gold).items()}
        except Exception:  # a scorer bug must not sink a paid-for query
            marks = {f: False for f in scenario.fields}
    return marks, (sum(marks.values()) / len(marks) if marks else 0.0)
