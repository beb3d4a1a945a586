"""A two-field scenario for summaries built from synthetic records (no generator, no prompt)."""

from __future__ import annotations


class TwoFieldScenario:
    """Just what `summarize` and `render_report` ask of a scenario: its fields, a scorer, a null answer."""

    fields = ["a", "b"]

    def score(self, answer, gold):
        return {f: answer[f] == gold[f] for f in self.fields}

    def null_answer(self, golds):
        return {"a": 0, "b": 0}
