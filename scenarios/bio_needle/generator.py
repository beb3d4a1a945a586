"""Synthetic biographies whose labels are exact by construction.

Each person is drawn first (name, gender, nationality, dates, occupation) and the prose is
then written from those facts, so the labels never depend on parsing text. Fake names keep
a model from answering from memory; varied sentence shapes, date formats and two styles
(normal prose and wiki_bio's lowercase tokenized text) keep it from answering by pattern.

Labelling rules (what the text must say for a label to hold):
  nationality  the demonym the text attributes to the person: "is/was a [former|retired]
               <demonym> <occupation>", "the [former|retired] <demonym> <occupation> <name>", "is/was
               <demonym> by nationality", "holds/held <demonym> citizenship". Birthplace,
               places of work or study, clubs abroad, a foreign spouse or coach and tournament
               names ("French Open") do NOT state it. With no statement the label is "unknown".
  sportsperson the person competed as an athlete (see vocabulary.Role).
  politician   the person held or stood for political office (see vocabulary.Role).
  dates        exactly the parts the text gives, 0 for the rest; date_of_death is all zeros
               for living people.

Splits ("haystack", "needles", "shots") use separate random streams, so asking for more of
one never changes another, and a split is prefix-stable: its first n people are the same
whatever n is asked for later. Surnames are unique across all splits of a seed: each split
only accepts surnames whose hash falls in its own third of the name space.

The training split ("train-needles", "train-haystack": fine-tuning data) lies outside that name
space altogether: its surnames always hold a "j" or a "w", letters no test surname can contain,
so no training person is ever a test person, for any seed. It is also written only with *seen*
forms (`Forms`): some sentence shapes, a date format, nationalities, occupations and filler
sentences are held out of it, so a tuned reader can be tested on biographies written only with
forms it never saw (`needle_forms="held-out"`). It also draws from nationalities no test text
has (vocabulary.TRAIN_NATIONALITIES) and opens some biographies in shapes no test text uses
(TRAIN_SHAPES), so that a nationality is something to copy, wherever it stands, not to choose.
"""

from __future__ import annotations

import calendar
import random
import re
import string
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from scenarios.bio_needle import vocabulary as V
from scenarios.bio_needle.loader import BioDate, BioLabels, BioRecord

SPLITS: tuple[str, ...] = ("haystack", "needles", "shots")  # the test side; the hash modulus: never extend
TRAIN_SPLITS: tuple[str, ...] = ("train-needles", "train-haystack")
TRAIN = "train"  # surname_split() of every training surname
# Word-count bounds per split: shots are short so a few of them fit in any prompt.
WORD_RANGE: dict[str, tuple[int, int]] = {
    "haystack": (40, 150),
    "needles": (40, 150),
    "shots": (40, 80),
    "train-needles": (40, 150),
    "train-haystack": (40, 150),
}
# Training surnames hold one of these syllables; test surnames are made of V.SYLLABLES and
# V.SURNAME_ENDINGS, which hold neither letter (tested).
TRAIN_LETTERS = frozenset("jw")
TRAIN_SYLLABLES: tuple[str, ...] = ("ja", "je", "jo", "ju", "wa", "we", "wi", "wo", "jan", "wen", "jor", "wal")
NOW = 2024  # the "present" of the corpus: living people are younger than 90 then
P_UNKNOWN_NATIONALITY = 0.15
P_ALIVE = 0.4
P_WIKI_STYLE = 0.5

_FORMATTER = string.Formatter()
_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def surname_terms(name: str) -> list[str]:
    """What an agent searching for a person should type at least: the surname (the rarest part of a name)."""
    return name.split()[-1:]


@dataclass(frozen=True)
class Person:
    """A generated person: the facts, the role behind the booleans, and the finished record."""

    name: str
    surname: str
    gender: str  # "m" or "f"
    role: V.Role
    style: str  # "prose" or "wiki"
    record: BioRecord

    @property
    def labels(self) -> BioLabels:
        return self.record.labels


# ------------------------------------------------------------------------------ forms
_SHAPES = ("paren", "comma_born", "was_born_on", "desc_first", "born_first", "the_desc", "from", "is_then_born")
# Opening shapes only training text has: the description away from "is a", so the reader learns to
# find a nationality wherever the sentence puts it (the held-out shapes stay unseen).
TRAIN_SHAPES = ("appositive", "described_as")
_NATIONALITY_SENTENCES = ("citizenship", "by_nationality")
_DEATH_SENTENCES = ("in_city", "plain", "age")


@dataclass(frozen=True)
class Forms:
    """The surface forms a biography may be written with.

    ALL is what the test splits use (and byte for byte what they used before forms existed);
    SEEN leaves out every held-out form; the training split uses it (as TRAIN_FORMS, which adds
    nationalities and opening shapes that only training text has); HELD_OUT
    keeps, wherever a dimension has held-out variants, only those: a reader tuned on SEEN text is
    tested on forms it never saw. Where a person's facts rule out every allowed variant (a death
    sentence with the age needs two full dates), the others are used.
    """

    demonyms: tuple[str, ...]  # nationality labels
    world: tuple[str, ...]  # nationalities whose demonyms, countries and cities may appear anywhere
    roles: frozenset[str]  # vocabulary.Role keys
    shapes: tuple[str, ...]  # opening sentence shapes
    ordinal: str  # dates as "the 3rd of June 1941": "never", "sometimes" (30% of one shape) or "always"
    nationality_sentences: tuple[str, ...]
    death_sentences: tuple[str, ...]
    education: tuple[str, ...]
    family: tuple[str, ...]
    asides: tuple[str, ...]
    later_alive: tuple[str, ...]
    later_dead: tuple[str, ...]

    @property
    def cities(self) -> tuple[str, ...]:
        return tuple(c for d in self.world for c in _NATIONS[d][1])


# What the training split never shows. Nationalities whose word is not also a language the
# generator names ("translated books from Japanese"), so they are truly absent from training text.
HELD_OUT_DEMONYMS = ("swiss", "kenyan", "chilean", "hungarian", "canadian", "egyptian")
HELD_OUT_ROLES = frozenset(
    {"fencer", "skier", "governor", "senator", "boxer_mp", "stadium_architect", "pollster", "botanist", "chef"}
)  # at least one of every role group, so either side can draw any group
HELD_OUT_SHAPES = ("born_first", "the_desc")
HELD_OUT_TEMPLATES = {  # filler sentences
    "education": (V.EDUCATION[3],),
    "family": (V.FAMILY[1],),
    "asides": (V.ASIDES[3], V.ASIDES[5]),
    "later_alive": (V.LATER_ALIVE[2],),
    "later_dead": (V.LATER_DEAD[2],),
}


# Every nationality a biography may be written with: the test ones, then the training-only ones.
_NATIONS = V.NATIONALITIES | V.TRAIN_NATIONALITIES


def _without(items: tuple[str, ...], held: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(x for x in items if x not in held)


ALL = Forms(
    demonyms=V.DEMONYMS,
    world=V.DEMONYMS,
    roles=frozenset(V.ROLES),
    shapes=_SHAPES,
    ordinal="sometimes",
    nationality_sentences=_NATIONALITY_SENTENCES,
    death_sentences=_DEATH_SENTENCES,
    education=V.EDUCATION,
    family=V.FAMILY,
    asides=V.ASIDES,
    later_alive=V.LATER_ALIVE,
    later_dead=V.LATER_DEAD,
)
SEEN = Forms(
    demonyms=_without(V.DEMONYMS, HELD_OUT_DEMONYMS),
    world=_without(V.DEMONYMS, HELD_OUT_DEMONYMS),
    roles=frozenset(V.ROLES) - HELD_OUT_ROLES,
    shapes=_without(_SHAPES, HELD_OUT_SHAPES),
    ordinal="never",
    nationality_sentences=("by_nationality",),
    death_sentences=("in_city", "plain"),
    **{k: _without(getattr(ALL, k), v) for k, v in HELD_OUT_TEMPLATES.items()},
)
# What the training split is written with: the seen forms, and nationalities and opening shapes
# no test text has.
TRAIN_FORMS = replace(
    SEEN,
    demonyms=SEEN.demonyms + tuple(V.TRAIN_NATIONALITIES),
    world=SEEN.world + tuple(V.TRAIN_NATIONALITIES),
    shapes=SEEN.shapes + TRAIN_SHAPES,
)
HELD_OUT = Forms(
    demonyms=HELD_OUT_DEMONYMS,
    world=V.DEMONYMS,
    roles=HELD_OUT_ROLES,
    shapes=HELD_OUT_SHAPES,
    ordinal="always",
    nationality_sentences=("citizenship",),
    death_sentences=("age",),
    **HELD_OUT_TEMPLATES,
)
FORMS: dict[str, Forms] = {"all": ALL, "seen": SEEN, "held-out": HELD_OUT}


def _choose(rng: random.Random, options: dict[str, str], allowed: tuple[str, ...]) -> str:
    """One of the options whose key is allowed (in the options' order), else one of all of them."""
    keys = [k for k in options if k in allowed] or list(options)
    return options[rng.choice(keys)]


# ------------------------------------------------------------------------------ dates
@dataclass(frozen=True)
class _Date:
    day: int
    month: int
    year: int
    precision: str  # "full", "month" or "year"

    def label(self) -> BioDate:
        return BioDate(
            day=self.day if self.precision == "full" else 0,
            month=self.month if self.precision != "year" else 0,
            year=self.year,
        )

    def bare(self, fmt: str) -> str:
        """'3 June 1941', 'June 3, 1941', 'June 1941' or '1941'."""
        month = V.MONTHS[self.month - 1]
        if self.precision == "year":
            return str(self.year)
        if self.precision == "month":
            return f"{month} {self.year}"
        if fmt == "mdy":
            return f"{month} {self.day}, {self.year}"
        if fmt == "ord":
            return f"the {_ordinal(self.day)} of {month} {self.year}"
        return f"{self.day} {month} {self.year}"

    def on(self, fmt: str) -> str:
        """'on 3 June 1941' for a full date, 'in 1941' / 'in June 1941' otherwise."""
        return ("on " if self.precision == "full" else "in ") + self.bare(fmt)

    def born(self, fmt: str) -> str:
        """wiki_bio's 'born 12 march 1950' or 'born in 1962'."""
        return ("born " if self.precision == "full" else "born in ") + self.bare(
            fmt if fmt in ("mdy", "ord") else "dmy"
        )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _draw_date(rng: random.Random, year: int, p_full: float, p_month: float) -> _Date:
    month = rng.randint(1, 12)
    day = rng.randint(1, calendar.monthrange(year, month)[1])
    r = rng.random()
    precision = "full" if r < p_full else "month" if r < p_full + p_month else "year"
    return _Date(day, month, year, precision)


def _age_at_death(birth: _Date, death: _Date) -> int:
    return death.year - birth.year - ((death.month, death.day) < (birth.month, birth.day))


# ------------------------------------------------------------------------------ names
def _clean_name(s: str) -> str:
    s = re.sub(r"([aeiou])\1+", r"\1", s)
    s = re.sub(r"(.)\1\1+", r"\1\1", s)
    return s.capitalize()


def _draw_given(rng: random.Random, gender: str) -> str:
    n = rng.choice((1, 2, 2, 2))
    return _clean_name("".join(rng.choice(V.SYLLABLES) for _ in range(n)) + rng.choice(V.GIVEN_ENDINGS[gender]))


def _draw_surname(rng: random.Random) -> str:
    n = rng.choice((1, 2, 2, 2, 3))
    return _clean_name("".join(rng.choice(V.SYLLABLES) for _ in range(n)) + rng.choice(V.SURNAME_ENDINGS))


def _draw_train_surname(rng: random.Random) -> str:
    parts = [rng.choice(V.SYLLABLES) for _ in range(rng.choice((1, 2, 2, 2, 3)))]
    parts[rng.randrange(len(parts))] = rng.choice(TRAIN_SYLLABLES)
    return _clean_name("".join(parts) + rng.choice(V.SURNAME_ENDINGS))


def surname_split(surname: str) -> str:
    """The only split allowed to use this surname (keeps splits disjoint without coordination):
    "train" for a surname with a training letter, else a test split chosen by hash."""
    key = surname.lower()
    if TRAIN_LETTERS & set(key):
        return TRAIN
    return SPLITS[zlib.crc32(key.encode("utf-8")) % len(SPLITS)]


# ------------------------------------------------------------------------------ text helpers
_AN = re.compile(r"\b([Aa]) (?=[aeiouAEIOUÉé])(?!(?:[Uu]ni|[Uu]k|[Uu]s[aeiu]|[Ee]u|[Oo]ne))")


def _fix_articles(text: str) -> str:
    return _AN.sub(lambda m: m.group(1) + "n ", text)


def wikify(text: str) -> str:
    """Lowercase and tokenize like wiki_bio: '( march 12 , 1950 -- june 3 , 2001 ) was ...'."""
    t = text.lower()
    t = re.sub(r"\s*–\s*", " -- ", t)
    t = re.sub(r"[();]", lambda m: f" {m.group(0)} ", t)
    t = re.sub(r",(?!\d)", " , ", t)
    t = re.sub(r"(\w{2,}|\d)\.(?=\s|$)", r"\1 .", t)
    t = re.sub(r"(\w)'s\b", r"\1 's", t)
    return re.sub(r"\s+", " ", t).strip()


def _fill(template: str, slots: dict[str, Any]) -> str | None:
    """Format a template, or None when a slot it needs has no value for this person."""
    for _, field, _, _ in _FORMATTER.parse(template):
        if field is not None and slots.get(field) is None:
            return None
    return template.format_map(slots)


def _pick_weighted(rng: random.Random, items):
    total = sum(w for _, w, _ in items)
    r = rng.random() * total
    for item in items:
        r -= item[1]
        if r < 0:
            return item
    return items[-1]


# ------------------------------------------------------------------------------ the generator
class BioGenerator:
    """Deterministic biographies for one seed; each split is an independent, growing list.

    `needle_forms` ("all", "seen", "held-out") is what the needles split is written with; the
    haystack and shots always use every form, the training splits only seen ones (TRAIN_FORMS).
    """

    def __init__(self, seed: int = 0, needle_forms: str = "all"):
        self.seed = seed
        streams = SPLITS + TRAIN_SPLITS
        self._rngs = {s: random.Random(f"bio-needle/{seed}/{s}") for s in streams}
        self._people: dict[str, list[Person]] = {s: [] for s in streams}
        # Surnames taken, per name class: the two training streams share theirs.
        self._surnames: dict[str, set[str]] = {s: set() for s in SPLITS + (TRAIN,)}
        self._forms = {s: ALL for s in SPLITS} | {s: TRAIN_FORMS for s in TRAIN_SPLITS}
        self._forms["needles"] = FORMS[needle_forms]

    def people(self, split: str, n: int) -> list[Person]:
        """The first `n` people of a split (generating more as needed)."""
        if split not in self._people:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(self._people)}")
        have = self._people[split]
        while len(have) < n:
            have.append(self._person(split))
        return have[:n]

    def records(self, split: str, n: int) -> list[BioRecord]:
        return [p.record for p in self.people(split, n)]

    def stream(self, split: str) -> Iterator[tuple[int, BioRecord]]:
        """(index, record) of a split in order, endlessly (generated 64 at a time)."""
        j = 0
        while True:
            for r in self.records(split, j + 64)[j:]:
                yield j, r
                j += 1

    # -- one person ---------------------------------------------------------------------
    def _person(self, split: str) -> Person:
        rng = self._rngs[split]
        name_class = TRAIN if split in TRAIN_SPLITS else split
        gender = rng.choice("mf")
        given, surname = draw_name(rng, gender, name_class, self._surnames[name_class])
        name = f"{given} {surname}"
        lo, hi = WORD_RANGE[split]
        return _write_person(rng, name, surname, gender, lo, hi, self._forms[split])


def draw_name(rng: random.Random, gender: str, split: str, taken: set[str]) -> tuple[str, str]:
    """(given name, possibly with a middle initial, surname): a fake name whose surname belongs to
    `split` and is not in `taken` (lower-cased; it is added). Names drawn for different splits
    never share a surname, so other tools (the wiki_bio anonymizer) draw from the "haystack" split
    and can never name someone like a synthetic needle or shot. `split` "train" draws training
    surnames (with a "j" or a "w")."""
    draw = _draw_train_surname if split == TRAIN else _draw_surname
    while True:
        surname = draw(rng)
        key = surname.lower()
        if surname_split(surname) == split and key not in taken and key not in V.BANNED_NAME_WORDS:
            break
    taken.add(key)
    while True:
        given = _draw_given(rng, gender)
        if given.lower() not in V.BANNED_NAME_WORDS:
            break
    if rng.random() < 0.1:
        given = f"{given} {rng.choice('ABCDEFGHJKLMNPRSTVW')}."
    return given, surname


def _write_person(
    rng: random.Random, name: str, surname: str, gender: str, lo: int, hi: int, forms: Forms = ALL
) -> Person:
    """Draw the facts for a named person and write the biography from them."""
    nationality = None if rng.random() < P_UNKNOWN_NATIONALITY else rng.choice(forms.demonyms)
    alive = rng.random() < P_ALIVE
    birth_year = rng.randint(1935, 2000) if alive else rng.randint(1880, 1980)
    birth = _draw_date(rng, birth_year, 0.75, 0.07)
    death = None
    if not alive:
        death = _draw_date(rng, rng.randint(birth_year + 40, min(birth_year + 98, NOW)), 0.70, 0.05)
    end = death.year if death else NOW
    style = "wiki" if rng.random() < P_WIKI_STYLE else "prose"
    fmt = rng.choice(("dmy", "dmy", "mdy")) if style == "prose" else rng.choice(("dmy", "mdy"))
    if forms.ordinal == "always":
        fmt = "ord"
    slots = _slots(rng, gender, nationality, alive, birth_year, end, surname, forms)
    role, key_sentence = _draw_role(rng, slots, birth_year, end, forms)

    # Known nationality: usually in the opening's description, otherwise its own sentence.
    nat_in_desc = nationality is not None and rng.random() < 0.85
    adj = ""
    if alive and role.sportsperson and NOW - birth_year > 40 and rng.random() < 0.5:
        adj = rng.choice(("former ", "retired "))
    noun = role.nouns[0 if gender == "m" else 1]
    desc = f"{adj}{nationality.capitalize() + ' ' if nat_in_desc else ''}{noun}"
    opening, death_in_opening = _opening(rng, name, desc, birth, death, style, fmt, slots, nationality, forms)

    required = [opening]
    He, be = slots["He"], slots["is"]
    if nationality is not None and not nat_in_desc:
        dem = nationality.capitalize()
        required.append(
            _choose(
                rng,
                {
                    "citizenship": f"{He} {'holds' if alive else 'held'} {dem} citizenship.",
                    "by_nationality": f"{He} {be} {dem} by nationality.",
                },
                forms.nationality_sentences,
            )
        )
    required.append(key_sentence)
    closing: list[str] = []
    if death is not None and (not death_in_opening or rng.random() < 0.4):
        options = {"in_city": f"{He} died in {slots['city4']} {death.on(fmt)}.", "plain": f"{He} died {death.on(fmt)}."}
        if birth.precision == "full" and death.precision == "full":
            options["age"] = f"{He} died {death.on(fmt)} at the age of {_age_at_death(birth, death)}."
        closing.append(_choose(rng, options, forms.death_sentences))

    body = _fit(rng, _optional(rng, role, slots, alive, forms), sum(map(count_words, required + closing)), lo, hi)
    text = _fix_articles(" ".join(required + body + closing))
    if style == "wiki":
        text = wikify(text)

    labels = BioLabels(
        nationality=nationality or "unknown",
        date_of_birth=birth.label(),
        date_of_death=death.label() if death else BioDate(day=0, month=0, year=0),
        sportsperson=role.sportsperson,
        politician=role.politician,
    )
    record = BioRecord(name=name, bio=text, labels=labels, occupation=noun)
    return Person(name=name, surname=surname, gender=gender, role=role, style=style, record=record)


def _slots(
    rng: random.Random,
    gender: str,
    nationality: str | None,
    alive: bool,
    birth_year: int,
    end: int,
    surname: str,
    forms: Forms = ALL,
) -> dict[str, Any]:
    """Every value a template may ask for, drawn once per person."""
    own_cities = _NATIONS[nationality][1] if nationality else ()
    others = [d for d in forms.world if d != nationality]
    foreign = rng.sample([_NATIONS[d][0] for d in others], 2)
    cities = rng.sample(forms.cities, 4)
    # Offices and local fame are usually in the person's own country (when it has one).
    city2 = rng.choice(own_cities) if own_cities and rng.random() < 0.8 else cities[1]
    oly = [y for y in V.SUMMER_OLYMPICS if birth_year + 17 <= y <= min(birth_year + 36, end)]
    woly = [y for y in V.WINTER_OLYMPICS if birth_year + 17 <= y <= min(birth_year + 36, end)]
    pro = {"m": ("He", "he", "His", "his", "him"), "f": ("She", "she", "Her", "her", "her")}[gender]
    slots: dict[str, Any] = {k: rng.choice(v) for k, v in V.SLOTS.items()}
    slots["is"] = "is" if alive else "was"  # a keyword, so not in the update() below
    parents = rng.sample(V.SLOTS["parent"], 2)
    slots.update(
        He=pro[0],
        he=pro[1],
        His=pro[2],
        his=pro[3],
        him=pro[4],
        Surname=surname,
        has="has" if alive else "had",
        city=cities[0],
        city2=city2,
        city3=cities[2],
        city4=cities[3],
        country2=foreign[0],
        country3=foreign[1],
        spouse_dem=rng.choice(others).capitalize(),
        coach_dem=rng.choice(others).capitalize(),
        parent=parents[0],
        parent2=parents[1],
        n1=rng.randint(2, 9),
        n2=rng.randint(12, 140),
        mm=f"{rng.randint(5, 25):02d}",
        ss=f"{rng.randint(0, 59):02d}",
        oly=rng.choice(oly) if oly else None,
        woly=rng.choice(woly) if woly else None,
        y_award=rng.randint(min(birth_year + 30, end), end),
        y_honour=rng.randint(min(birth_year + 35, end), end),
        y_married=rng.randint(birth_year + 20, min(birth_year + 45, end)),
        y_moved=rng.randint(birth_year + 18, min(birth_year + 60, end)),
    )
    return slots


def _draw_role(
    rng: random.Random, slots: dict[str, Any], birth_year: int, end: int, forms: Forms = ALL
) -> tuple[V.Role, str]:
    """An occupation whose defining sentence (career[0]) fits this person's years."""
    while True:
        _, _, roles = _pick_weighted(rng, V.ROLE_GROUPS)
        role = rng.choice([r for r in roles if r.key in forms.roles])
        athlete = role.sportsperson
        start = max(birth_year + role.min_age, role.min_year)
        latest = min(end - 2, birth_year + role.min_age + (12 if athlete else 30))
        if start > latest:
            continue
        y1 = rng.randint(start, latest)
        slots.update(y1=y1, y2=rng.randint(y1 + 1, min(end, y1 + (15 if athlete and not role.politician else 25))))
        suffixes = {
            "rower": ("Rowing Club", "Boat Club"),
            "rower_minister": ("Rowing Club",),
            "cyclist": ("Cycling", "Velo"),
        }.get(role.key, V.CLUB_SUFFIXES)
        clubs = rng.sample(forms.cities, 2)
        slots.update(club=f"{clubs[0]} {rng.choice(suffixes)}", club2=f"{clubs[1]} {rng.choice(suffixes)}")
        key_sentence = _fill(role.career[0], slots)
        if key_sentence is not None:
            return role, key_sentence


def _opening(
    rng: random.Random,
    name: str,
    desc: str,
    birth: _Date,
    death: _Date | None,
    style: str,
    fmt: str,
    slots: dict[str, Any],
    nationality: str | None,
    forms: Forms = ALL,
) -> tuple[str, bool]:
    """The first sentence(s): name, dates and description in one of several shapes.

    Returns the text and whether it already gives the death date.
    """
    He, be, a_desc = slots["He"], slots["is"], f"a {desc}"
    own_cities = _NATIONS[nationality][1] if nationality else ()
    place = rng.choice(own_cities) if own_cities and rng.random() < 0.75 else rng.choice(forms.cities)
    if rng.random() < 0.3:
        place = f"{place}, {_CITY_COUNTRY[place]}"
    if death is None:
        paren = f"(born {birth.bare(fmt)})"
    elif birth.precision == "year" and death.precision == "year" and style == "prose":
        paren = f"({birth.year}–{death.year})"
    else:
        paren = f"({birth.bare(fmt)} – {death.bare(fmt)})"

    shape = rng.choice(forms.shapes)
    if shape == "paren":
        text = f"{name} {paren} {be} {a_desc}."
    elif shape == "comma_born":
        text = f"{name}, {birth.born(fmt)} in {place}, {be} {a_desc}."
    elif shape == "was_born_on":
        born_fmt = "ord" if style == "prose" and rng.random() < 0.3 else fmt
        if forms.ordinal != "sometimes":
            born_fmt = fmt
        text = f"{name} was born {birth.on(born_fmt)} in {place}. {He} {be} {a_desc}."
    elif shape == "desc_first":
        text = f"{name} {be} {a_desc}, born {birth.on(fmt)} in {place}."
    elif shape == "born_first":
        text = f"Born {birth.on(fmt)} in {place}, {name} {be} {a_desc}."
    elif shape == "the_desc":
        text = f"The {desc} {name} {paren} {_where_active(rng, death is None, slots)}."
    elif shape == "appositive":
        text = f"{name} {paren}, {a_desc}, {_where_active(rng, death is None, slots)}."
    elif shape == "described_as":
        text = f"Described as {a_desc}, {name} was born {birth.on(fmt)} in {place}."
    elif shape == "from":
        text = f"{name} {paren} {be} {a_desc} from {slots['city3']}."
    else:
        text = f"{name} {be} {a_desc}. {He} was born in {place} {birth.on(fmt)}."
    return text, shape in ("paren", "the_desc", "from", "appositive")


def _where_active(rng: random.Random, alive: bool, slots: dict[str, Any]) -> str:
    verbs = (
        ("lives and works in {city}", "has worked mainly in {city}")
        if alive
        else ("spent most of {his} life in {city}", "worked mainly in {city}", "was active for many years in {city}")
    )
    return rng.choice(verbs).format_map(slots)


def _optional(
    rng: random.Random, role: V.Role, slots: dict[str, Any], alive: bool, forms: Forms = ALL
) -> list[tuple[str, str]]:
    """Candidate follow-on sentences as (section, text), in no particular order.

    Family and other asides carry the distractors: a foreign spouse or coach, a parent who
    was a mayor or footballer, study and work abroad. None of them uses a pronoun for
    anyone but the subject.
    """
    fill = lambda t: _fill(t, slots)  # noqa: E731
    out = [("career", fill(t)) for t in role.career[1:]]
    out.append(("education", fill(rng.choice(forms.education))))
    marriage = rng.choice(
        ("{He} {is} married to a {spouse_dem} {spouse}.", "{He} married a {spouse} from {city3} in {y_married}.")
    )
    out += [("family", fill(t)) for t in [marriage] + _sample(rng, forms.family, 2)]
    if role.sportsperson:
        out.append(("extra", fill("{He} trained under a {coach_dem} coach in {city3}.")))
    out += [("extra", fill(t)) for t in _sample(rng, forms.asides, 3)]
    out.append(("extra", fill("{He} received the {award} in {y_award}.")))
    later = forms.later_alive if alive else forms.later_dead
    out += [("later", fill(t)) for t in _sample(rng, later, 2)]
    return [(section, s) for section, s in out if s]


def _sample(rng: random.Random, items: tuple[str, ...], k: int) -> list[str]:
    return rng.sample(items, min(k, len(items)))


_SECTIONS = ("career", "education", "family", "extra", "later")


def _fit(rng: random.Random, optional: list[tuple[str, str]], words: int, lo: int, hi: int) -> list[str]:
    """Pick follow-on sentences until a random target length in [lo, hi] words is reached."""
    order = list(range(len(optional)))
    rng.shuffle(order)
    target = rng.randint(lo, hi)
    chosen: set[int] = set()
    for i in order:
        if words >= target:
            break
        w = count_words(optional[i][1])
        if words + w <= hi:
            chosen.add(i)
            words += w
    for i in order:  # a short draw: take anything that still fits
        if words >= lo:
            break
        w = count_words(optional[i][1])
        if i not in chosen and words + w <= hi:
            chosen.add(i)
            words += w
    return [s for section in _SECTIONS for i, (p, s) in enumerate(optional) if i in chosen and p == section]


_CITY_COUNTRY = {c: country for country, cities in _NATIONS.values() for c in cities}
