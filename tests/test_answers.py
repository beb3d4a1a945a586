"""Parsing never raises: anything that is not a schema-valid object is invalid, with a reason."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.scoring.answers import mark, parse_answer

SCHEMA = {
    "type": "object",
    "properties": {
        "nationality": {"type": "string", "maxLength": 40},
        "date_of_birth": {
            "type": "object",
            "properties": {k: {"type": "integer", "minimum": 0} for k in ("day", "month", "year")},
            "required": ["day", "month", "year"],
            "additionalProperties": False,
        },
        "sportsperson": {"type": "boolean"},
    },
    "required": ["nationality", "date_of_birth", "sportsperson"],
    "additionalProperties": False,
}
GOOD = {"nationality": "french", "date_of_birth": {"day": 1, "month": 2, "year": 1950}, "sportsperson": True}


def test_valid_answer_parses():
    answer, reason = parse_answer(json.dumps(GOOD), SCHEMA)
    assert answer == GOOD and reason is None


def test_invalid_answers_have_reasons():
    cases = {
        "": "empty",
        '{"nationality": "french", "date_of_birth": {"day": 1, "mon': "not JSON",
        "[1, 2]": "not an object",
        json.dumps({**GOOD, "extra": 1}): "schema",
        json.dumps({**GOOD, "sportsperson": "yes"}): "sportsperson",
    }
    for raw, why in cases.items():
        answer, reason = parse_answer(raw, SCHEMA)
        assert answer is None and why in reason, (raw, reason)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.binary().map(lambda b: b.decode("utf-8", "replace")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
        ).map(json.dumps),
    )
)
def test_parse_never_raises(raw):
    answer, reason = parse_answer(raw, SCHEMA)
    assert (answer is None) != (reason is None)


class _Scen:
    fields = ["a", "b"]

    def score(self, answer, gold):
        return {f: answer.get(f) == gold[f] for f in self.fields}


def test_mark_invalid_is_all_wrong_and_valid_is_mean():
    assert mark(_Scen(), None, {"a": 1, "b": 2}) == ({"a": False, "b": False}, 0.0)
    assert mark(_Scen(), {"a": 1, "b": 3}, {"a": 1, "b": 2}) == ({"a": True, "b": False}, 0.5)
