"""How an answer is marked against a row's answers (`-P metric=`), and JSON answers per field (`-P schema=`).

  em        exact match after SQuAD's normalisation (lower case, no punctuation, no a/an/the, single
            spaces) against any of the answers: 1 or 0
  f1        SQuAD's token F1 against the best of the answers: a fraction
  contains  some answer, normalised, occurs in the normalised answer as whole words (the accuracy of
            Lost in the Middle and FlashRAG's "acc")
  numeric   the first number in the answer equals an answer's within -P tolerance= (a fraction of
            the answer: 0.01 is 1%; default 0: exact)
  regex     the answer, stripped, fully matches one of the answers read as regular expressions
            (case-insensitive)

JSON answers (`-P schema=schema.json`): one mark per property of the schema; strings by the metric
above (em unless given), numbers within the tolerance, lists as sets of normalised items, anything
else by equality.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Literal

Metric = Literal["em", "f1", "contains", "numeric", "regex"]
METRICS: tuple[str, ...] = ("em", "f1", "contains", "numeric", "regex")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, punctuation and articles removed, spaces collapsed."""
    return " ".join(_ARTICLES.sub(" ", str(text).lower().translate(_PUNCT)).split())


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def number(value: Any) -> float | None:
    """A number, or the first number written in a string ("1,024 km" -> 1024); None when there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    m = _NUMBER.search(str(value))
    return float(m.group().replace(",", "")) if m else None


def close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance * abs(b) if tolerance else a == b


def mark(prediction: Any, answers: list[str], metric: str, tolerance: float = 0.0) -> float:
    """The mark of one answer against a row's answers, in [0, 1]."""
    if prediction is None or isinstance(prediction, bool | dict | list):
        return 0.0
    text = str(prediction)
    if metric == "numeric":
        got = number(prediction)
        return float(
            got is not None and any(close(got, number(a), tolerance) for a in answers if number(a) is not None)
        )
    if metric == "regex":
        return float(any(re.fullmatch(a, text.strip(), re.IGNORECASE) for a in answers))
    if not text.strip():
        return 0.0
    if metric == "f1":
        return round(max(token_f1(text, a) for a in answers), 4)
    got = normalize(text)
    if metric == "contains":
        return float(any(f" {normalize(a)} " in f" {got} " for a in answers if normalize(a)))
    return float(any(got == normalize(a) for a in answers))


def mark_value(prediction: Any, gold: Any, metric: str, tolerance: float = 0.0) -> float:
    """One field of a JSON answer against its gold value."""
    if isinstance(gold, bool) or gold is None:
        return float(prediction == gold)
    if isinstance(gold, int | float):
        got = number(prediction)
        return float(got is not None and close(got, float(gold), tolerance))
    if isinstance(gold, str):
        return mark(prediction, [gold], "em" if metric == "numeric" else metric, tolerance)
    if isinstance(gold, list):
        if not isinstance(prediction, list):
            return 0.0
        return float({normalize(str(x)) for x in prediction} == {normalize(str(x)) for x in gold})
    return float(prediction == gold)


def check_answers(answers: list[str], metric: str) -> str | None:
    """Why these answers cannot be scored by `metric` (None: they can)."""
    if metric == "numeric":
        if all(number(a) is None for a in answers):
            return f"{answers[0]!r} is not a number, nor is any other answer (-P metric=numeric)"
    if metric == "regex":
        for a in answers:
            try:
                re.compile(a)
            except re.error as e:
                return f"{a!r} is not a regular expression ({e})"
    if metric in ("em", "f1", "contains") and not any(normalize(a) for a in answers):
        return "every answer is empty once normalised (only punctuation or articles)"
    return None
