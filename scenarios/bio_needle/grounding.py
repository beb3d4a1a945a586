"""Judge-free grounding for bio-needle: does a biography's text state a predicted field value?

The generic scorer (harness.scoring.grounding) asks `supports(field, value, text)` for each
document the model was shown (or the part of it a retriever showed). "Supported" is about
the text, not about whose biography it is, so a value lifted from a neighbour's biography is
supported — by the wrong document — and counts as distractor confusion.

Rules (text is compared lowercased, with commas and brackets turned into spaces, so the
prose style "12 March 1950", "March 12, 1950" and wiki_bio's "march 12 , 1950" all match):

  nationality    the demonym as a word ("french"), or, for a known demonym, its country
                 ("France") or one of its cities ("Lyon"): a model that answers "french"
                 because the person studied in France or was born in Lyon read that text.
                 "unknown" is an abstention, not a claim.
  dates          a full date as "12 march 1950", "march 12 1950" or "the 12th of march
                 1950"; a month-precision date as "march 1950" (also found inside a full
                 date: the claim is consistent with it); a year-only date as the number 1950
                 anywhere (so years are weak evidence: "won the league in 1950" supports
                 born 1950). A date with year 0 (including all zeros: alive / not given) is
                 an abstention.
  sportsperson,  true is a claim, supported when the text uses the field's vocabulary
  politician     (the scenario's athlete nouns, "Olympic", "medal", "competed", ...; "mayor",
                 "parliament", "senate", "elected", "party", ...), including the trap roles'
                 words ("sports journalist", "political scientist") and family asides ("his
                 father was a footballer"): those are exactly what lures a model into a wrong
                 true. false says "no such evidence": an abstention, like "unknown".
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from harness.plugin import Grounding
from scenarios.bio_needle import vocabulary as V

MONTHS = [m.lower() for m in V.MONTHS]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _words(words) -> re.Pattern:
    alts = sorted({re.escape(w.lower()).replace(r"\ ", r"\s+") for w in words}, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(alts) + r")(?:s|es)?\b")


def _role_nouns(flag: str) -> set[str]:
    """Nouns of the roles that set `flag` ("footballer and politician" gives both parts)."""
    return {part for r in V.ROLES.values() if getattr(r, flag) for noun in r.nouns for part in noun.split(" and ")}


_SPORT_NOUNS = _role_nouns("sportsperson") - {"politician"}
SPORT = _words(
    _SPORT_NOUNS
    | set(V.SLOTS["sport"])
    | set(V.SLOTS["position"])
    | set(V.SLOTS["slam"])
    | {
        "athlete",
        "athletic",
        "olympic",
        "olympics",
        "olympic games",
        "medal",
        "medallist",
        "sport",
        "sports",
        "sportsman",
        "sportswoman",
        "competed",
        "played for",
        "played as",
        "football",
        "championship",
        "world cup",
        "tour de france",
        "marathon",
        "boxing",
        "bout",
        "rowed",
        "swam",
        "sprint",
        "league",
        "professional tour",
        "the ring",
    }
)
POLITICS = _words(
    (_role_nouns("politician") - _SPORT_NOUNS - {"teacher", "lawyer"})
    | set(V.SLOTS["party"])
    | {
        "politician",
        "politics",
        "political",
        "mayor",
        "parliament",
        "parliamentary",
        "senate",
        "senator",
        "minister",
        "prime minister",
        "cabinet",
        "city council",
        "councillor",
        "governor",
        "party",
        "elected",
        "election",
        "candidate",
        "national assembly",
        "member of parliament",
        "ran for",
        "stood as",
    }
)
_VOCAB = {"sportsperson": SPORT, "politician": POLITICS}


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    t = text.lower()
    t = re.sub(r"[,()\[\];]", " ", t)
    t = re.sub(r"\s*[–—]\s*|\s+--\s+", " – ", t)
    return re.sub(r"\s+", " ", t).strip()


@lru_cache(maxsize=256)
def _nationality_pattern(value: str) -> re.Pattern:
    names = {value}
    if value in V.NATIONALITIES:
        country, cities = V.NATIONALITIES[value]
        names.add(country.lower().removeprefix("the "))
        names.update(c.lower() for c in cities)
    alts = sorted((re.escape(n).replace(r"\ ", r"\s+") for n in names), key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)")


@lru_cache(maxsize=4096)
def _date_pattern(day: int, month: int, year: int) -> re.Pattern:
    y = rf"{year}(?!\d)"
    if month and day:
        m = MONTHS[month - 1]
        alts = [rf"\b{day} {m} {y}", rf"\b{m} {day} {y}", rf"\bthe {_ordinal(day)} of {m} {y}"]
    elif month:
        alts = [rf"\b{MONTHS[month - 1]} {y}"]
    else:
        alts = [rf"(?<![\d:.]){y}"]
    return re.compile("|".join(alts))


def _date(value: Any) -> tuple[int, int, int] | None:
    if not isinstance(value, dict):
        return None
    try:
        d, m, y = (int(value.get(k) or 0) for k in ("day", "month", "year"))
    except (TypeError, ValueError):
        return None
    if not (0 <= m <= 12 and 0 <= d <= 31):
        return None
    return d, m, y


class BioGrounding(Grounding):
    def is_claim(self, field: str, value: Any) -> bool:
        if field == "nationality":
            return isinstance(value, str) and value.strip().lower() not in ("", "unknown")
        if field in ("date_of_birth", "date_of_death"):
            parts = _date(value)
            return parts is not None and parts[2] != 0
        if field in _VOCAB:
            return value is True
        return value is not None

    def supports(self, field: str, value: Any, text: str) -> bool:
        if not self.is_claim(field, value):
            return False
        norm = normalize(text)
        if field == "nationality":
            v = " ".join(value.split()).lower()
            return bool(_nationality_pattern(v).search(norm))
        if field in ("date_of_birth", "date_of_death"):
            d, m, y = _date(value)  # type: ignore[misc]
            return bool(_date_pattern(d, m, y).search(norm))
        if field in _VOCAB:
            return bool(_VOCAB[field].search(norm))
        return False


def make_grounding(scenario) -> BioGrounding:
    return BioGrounding()
