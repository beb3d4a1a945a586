"""The synthetic biographies: labels agree with the text, and the pool is deterministic."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from scenarios.bio_needle.generator import SPLITS, BioGenerator, count_words, surname_split, wikify
from scenarios.bio_needle.loader import BioRecord
from scenarios.bio_needle.vocabulary import DEMONYMS, MONTHS

N = 2000


@pytest.fixture(scope="module")
def people():
    return BioGenerator(seed=0).people("haystack", N)


_DEM = "|".join(sorted(DEMONYMS, key=len, reverse=True))
_STATEMENTS = [
    re.compile(rf"\b(?:is|was) an? (?:former |retired )?({_DEM})\b"),  # "is a former french footballer"
    re.compile(rf"\b(?:is|was) ({_DEM}) by nationality\b"),
    re.compile(rf"\b(?:holds|held) ({_DEM}) citizenship\b"),
]


def stated_nationalities(text: str, name: str) -> set[str]:
    """Demonyms the text attributes to the person (the generator's documented rule)."""
    t = text.lower()
    found = {m.group(1) for pat in _STATEMENTS for m in pat.finditer(t)}
    # "the [former] french painter marek tovani"
    the_desc = re.compile(rf"\bthe (?:former |retired )?({_DEM}) [a-z\- ]+ {re.escape(name.lower())}\b")
    found |= {m.group(1) for m in the_desc.finditer(t)}
    return found


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


# ------------------------------------------------------------------------------ labels vs text
def test_records_are_valid_jsonl_records(people):
    for p in people[:200]:
        line = p.record.to_json_line()
        assert BioRecord.model_validate(json.loads(line)) == p.record
        assert set(json.loads(line)) == {"name", "bio", "json", "occupation"}  # occupation: unscored, see BioRecord


def test_name_appears(people):
    for p in people:
        assert p.name.lower() in p.record.bio.lower(), p.record.bio


def test_known_nationality_is_stated_and_no_other(people):
    known = [p for p in people if p.labels.nationality != "unknown"]
    assert len(known) > N * 0.7
    for p in known:
        bio, nat = p.record.bio, p.labels.nationality
        assert nat in DEMONYMS and nat == nat.lower()
        assert nat in words_of(bio)
        assert stated_nationalities(bio, p.name) == {nat}, bio


def test_unknown_nationality_has_no_statement(people):
    unknown = [p for p in people if p.labels.nationality == "unknown"]
    assert N * 0.1 < len(unknown) < N * 0.2  # about 15%
    for p in unknown:
        assert stated_nationalities(p.record.bio, p.name) == set(), p.record.bio
    # Distractor nationalities and places still occur in unknown-nationality bios.
    with_demonym = [p for p in unknown if words_of(p.record.bio) & set(DEMONYMS)]
    assert len(with_demonym) > len(unknown) * 0.2


def test_distractor_nationalities_occur(people):
    """Other demonyms appear (foreign spouse, coach, tournaments) without being the label."""
    distracted = 0
    for p in people:
        nat = p.labels.nationality
        others = (words_of(p.record.bio) & set(DEMONYMS)) - {nat}
        distracted += bool(others)
    assert distracted > N * 0.2


def test_birth_date_appears(people):
    for p in people:
        bio, dob = p.record.bio.lower(), p.labels.date_of_birth
        assert dob.year > 0 and str(dob.year) in bio
        if dob.month:
            assert MONTHS[dob.month - 1].lower() in bio
        if dob.day:
            assert dob.month, "a day without a month"
            assert re.search(rf"\b{dob.day}(?:st|nd|rd|th)?\b", bio), bio


def test_death_stated_iff_dead(people):
    dead = alive = 0
    for p in people:
        bio, dod = p.record.bio.lower(), p.labels.date_of_death
        if dod.year:
            dead += 1
            assert str(dod.year) in bio
            assert dod.year >= p.labels.date_of_birth.year
            if dod.month:
                assert MONTHS[dod.month - 1].lower() in bio
            # stated by a date range or a "died" sentence
            assert "died" in words_of(bio) or "--" in bio or "–" in bio, bio
        else:
            alive += 1
            assert dod.day == dod.month == 0
            assert not words_of(bio) & {"died", "death", "dead"}
            assert "--" not in bio and "–" not in bio
            assert " is " in f" {bio} " or " lives " in bio or "born" in bio
    assert dead > N * 0.4 and alive > N * 0.3


def test_pronouns_match_gender(people):
    male = {"he", "him", "his", "himself"}
    female = {"she", "her", "hers", "herself"}
    for p in people:
        w = words_of(p.record.bio)
        if p.gender == "m":
            assert not w & female, p.record.bio
        else:
            assert not w & male, p.record.bio
    genders = Counter(p.gender for p in people)
    assert min(genders.values()) > N * 0.4


def test_living_people_use_present_tense(people):
    for p in people:
        if p.labels.date_of_death.year == 0:
            assert re.search(r"\b(?:is|lives|holds|has)\b", p.record.bio.lower()), p.record.bio


# The labels are about the person's own occupation; these traps must be in the corpus with
# the right labels (expected values written out here, not read from the generator).
TRAPS = {
    # role key: (telltale phrase in the bio, sportsperson, politician)
    "club_chairman": ("chairman of the football club", False, False),
    "sports_journalist": ("covered football", False, False),
    "commentator": ("commentated on", False, False),
    "team_doctor": ("team doctor", False, False),
    "coach_non_player": ("never competed", False, False),
    "political_scientist": ("political science", False, False),
    "campaign_strategist": ("election campaigns", False, False),
    "speechwriter": ("speeches for the prime minister", False, False),
    "mayor": ("mayor of", False, True),
    "mp": ("elected to parliament", False, True),
    "candidate": ("candidate for parliament", False, True),
    "rower": ("summer olympics", True, False),
    "footballer_senator": ("before entering politics", True, True),
}


def test_occupation_traps_present_with_right_labels(people):
    by_role: dict[str, list] = {}
    for p in people:
        by_role.setdefault(p.role.key, []).append(p)
    for key, (phrase, sport, pol) in TRAPS.items():
        assert by_role.get(key), f"no {key} in {N} bios"
        for p in by_role[key]:
            assert phrase in p.record.bio.lower(), (key, p.record.bio)
            assert (p.labels.sportsperson, p.labels.politician) == (sport, pol), key


def test_trap_phrases_never_flip_labels(people):
    """Text-only check: whoever is described by a trap phrase keeps the trap's labels."""
    for p in people:
        bio = p.record.bio.lower()
        if "chairman of the football club" in bio or "covered football for" in bio:
            assert not p.labels.sportsperson and not p.labels.politician
        if "taught political science" in bio or "ran the election campaigns" in bio:
            assert not p.labels.politician
        if "served as mayor of" in bio or "served in the senate" in bio:
            assert p.labels.politician


def test_label_balance(people):
    sport = sum(p.labels.sportsperson for p in people)
    pol = sum(p.labels.politician for p in people)
    both = sum(p.labels.sportsperson and p.labels.politician for p in people)
    assert N * 0.2 < sport < N * 0.45
    assert N * 0.15 < pol < N * 0.4
    assert both > N * 0.03


# ------------------------------------------------------------------------------ prose variety
def test_lengths_in_range(people):
    lengths = [count_words(p.record.bio) for p in people]
    assert min(lengths) >= 40 and max(lengths) <= 150
    assert max(lengths) - min(lengths) > 80  # varied, not one size
    shots = BioGenerator(seed=0).people("shots", 300)
    assert all(40 <= count_words(p.record.bio) <= 80 for p in shots)


def test_both_styles_and_many_date_formats(people):
    bios = [p.record.bio for p in people]
    wiki = [b for b in bios if b == b.lower() and b.endswith(" .")]
    prose = [b for b in bios if b[0].isupper()]
    assert len(wiki) > N * 0.3 and len(prose) > N * 0.3
    formats = {
        "wiki range": r"\( (?:[a-z]+ \d{1,2} , \d{4}|\d{1,2} [a-z]+ \d{4}) -- ",
        "wiki born": r"\( born (?:\d{1,2} [a-z]+|[a-z]+ \d{1,2} ,) \d{4} \)",
        "born 12 march 1950": r"\bborn \d{1,2} [a-z]+ \d{4}\b",
        "was born on 3 June 1941": r"was born on \d{1,2} [A-Z][a-z]+ \d{4}",
        "June 3, 1941": r"[A-Z][a-z]+ \d{1,2}, \d{4}",
        "(1950–2001)": r"\(\d{4}–\d{4}\)",
        "born in 1962": r"\bborn in \d{4}\b",
        "the 3rd of June": r"the \d{1,2}(?:st|nd|rd|th) of [A-Z][a-z]+ \d{4}",
        "month and year only": rf"\bin (?i:{'|'.join(MONTHS)}) \d{{4}}\b",
    }
    for label, pattern in formats.items():
        assert any(re.search(pattern, b) for b in bios), label


def test_many_opening_shapes(people):
    """At least six distinct ways of starting a biography."""
    shapes = Counter()
    for p in people:
        first = p.record.bio.lower()
        n = p.name.lower()
        if first.startswith("the "):
            shapes["the desc"] += 1
        elif first.startswith("born "):
            shapes["born first"] += 1
        elif first.startswith(f"{n} ("):
            shapes["paren"] += 1
        elif first.startswith(f"{n} ,") or first.startswith(f"{n},"):
            shapes["comma born"] += 1
        elif first.startswith(f"{n} was born"):
            shapes["was born"] += 1
        elif first.startswith(f"{n} is") or first.startswith(f"{n} was"):
            shapes["is a"] += 1
    assert len(shapes) >= 6, shapes
    assert all(c > 20 for c in shapes.values()), shapes


def test_wikify_matches_wiki_bio_tokenization():
    assert wikify("Marek J. Tovani (March 12, 1950 – June 3, 2001) was a French painter.") == (
        "marek j. tovani ( march 12 , 1950 -- june 3 , 2001 ) was a french painter ."
    )


# ------------------------------------------------------------------------------ determinism
def test_same_seed_same_output_different_seed_different():
    a = BioGenerator(seed=7).records("haystack", 60)
    b = BioGenerator(seed=7).records("haystack", 60)
    c = BioGenerator(seed=8).records("haystack", 60)
    assert a == b
    assert [r.name for r in a] != [r.name for r in c]
    assert sum(x.bio != y.bio for x, y in zip(a, c)) > 55


def test_haystack_is_prefix_stable_and_splits_independent():
    short = BioGenerator(seed=3).records("haystack", 25)
    g = BioGenerator(seed=3)
    g.records("needles", 40)  # other splits drawn first must not disturb the haystack
    g.records("shots", 10)
    long = g.records("haystack", 200)
    assert long[:25] == short
    g2 = BioGenerator(seed=3)
    g2.records("haystack", 10)
    assert g2.records("haystack", 25) == short  # growing in steps changes nothing


def test_names_unique_across_splits():
    g = BioGenerator(seed=0)
    people = [p for split, n in (("haystack", 1500), ("needles", 100), ("shots", 200)) for p in g.people(split, n)]
    names = [p.name for p in people]
    surnames = [p.surname for p in people]
    assert len(set(names)) == len(names)
    assert len(set(surnames)) == len(surnames)
    for split in SPLITS:
        assert all(surname_split(p.surname) == split for p in g.people(split, 50))
    # Fake: no name word is a demonym or pronoun.
    for p in people:
        for w in p.name.lower().replace(".", "").split():
            assert w not in DEMONYMS and w not in {"he", "she", "his", "her", "him"}
