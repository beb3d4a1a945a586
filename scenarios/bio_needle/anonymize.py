"""Put a fake name in place of a real person's, everywhere in their biography, and prove it is gone.

A real biography in the haystack lets a model answer from memory instead of from the text, which
is what the benchmark measures; so every mention of the person is replaced by a fake name drawn
the way the synthetic people are named (generator.draw_name, the "haystack" split: never the
name of a synthetic needle or shot):

  * the name's forms come from every name the source gives (infobox name, full/birth name, the
    article title), cleaned of wiki_bio's tokenization (`-lrb- footballer -rrb-` disambiguators
    dropped, a maiden name after "née" kept, quotes and nicknames kept);
  * a mention is a run of the name's words in the text, joined by spaces, hyphens, apostrophes,
    quotes or an initial's full stop ("j. r. r. tolkien", "tolkien 's", "jean-paul sartre",
    'john "jack" smith'): a run of given names only becomes the fake given name, a run without given names or initials the fake
    surname, anything else the fake full name. Particles ("de", "van") count only next to the
    name's words ("of", "the" never start a mention); single letters only as initials of the name;
  * a nickname the text quotes inside the name (john "jack" smith) is a given name too;
  * pronouns and every other word are left alone;
  * `leaks` then looks for each of the name's words (two letters or more, particles aside) as a
    whole word in the result, independently of how it was replaced: the importer refuses to
    write data where any remains.

A name whose words are ones the labels are read from ("may", "english", "born") cannot be
replaced without changing the facts, so `collisions` names them and the entry is left out.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from scenarios.bio_needle import vocabulary as V
from scenarios.bio_needle.generator import draw_name

_TOKEN = re.compile(r"[^\W_]+")
_BRACKETS = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}", "``": '"', "''": '"'}
_BRACKET_RE = re.compile("|".join(re.escape(k) for k in _BRACKETS))
_PAREN = re.compile(r"\(([^()]*)\)")
_MAIDEN = re.compile(r"\b(?:née|nee|né)\s+(.+)", re.IGNORECASE)

# Particles that start a mention only as ordinary words ("son of john of gaunt"); "van der berghe"
# and "de la cruz" keep theirs.
_LEADING_NOT_NAME = frozenset({"of", "the", "and", "y", "e", "st", "sir", "dame", "lord", "lady", "dr"})
PARTICLES = frozenset(
    {
        "de",
        "da",
        "das",
        "do",
        "dos",
        "del",
        "della",
        "di",
        "du",
        "des",
        "la",
        "le",
        "van",
        "von",
        "der",
        "den",
        "ter",
        "ten",
        "zu",
        "y",
        "e",
        "bin",
        "ibn",
        "ben",
        "al",
        "el",
        "bint",
        "mac",
        "st",
        "of",
        "the",
        "and",
        "jr",
        "sr",
        "ii",
        "iii",
        "iv",
        "sir",
        "dame",
        "lord",
        "lady",
        "dr",
        "née",
        "nee",
    }
)
# Words the labels are read from, or that hold a sentence together: a name made of one of them
# cannot be replaced everywhere without changing what the text says.
_MONTHS = {m.lower() for m in V.MONTHS}
_WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
_FUNCTION = {
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "been",
    "but",
    "by",
    "for",
    "from",
    "had",
    "has",
    "have",
    "he",
    "her",
    "hers",
    "him",
    "his",
    "in",
    "into",
    "is",
    "it",
    "its",
    "no",
    "not",
    "on",
    "one",
    "or",
    "she",
    "so",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "they",
    "this",
    "to",
    "two",
    "was",
    "were",
    "what",
    "when",
    "where",
    "which",
    "who",
    "will",
    "with",
    "would",
    "yes",
    "can",
    "may",
    "might",
    "must",
    "up",
    "out",
    "over",
    "after",
    "before",
    "during",
    "new",
    "old",
    "first",
    "last",
    "also",
    "all",
    "more",
}
_LABEL_WORDS = {
    "born",
    "died",
    "death",
    "birth",
    "age",
    "aged",
    "alive",
    "former",
    "retired",
    "late",
    "nationality",
    "citizen",
    "citizenship",
    "national",
    "player",
    "politician",
    "minister",
    "senator",
    "president",
    "mayor",
    "governor",
    "member",
    "parliament",
    "party",
    "athlete",
    "footballer",
    "cricketer",
    "olympic",
    "olympics",
    "champion",
    "elected",
    "candidate",
    "unknown",
    "english",
    "scottish",
    "welsh",
    "african",
    "european",
    "asian",
    "latin",
    "roman",
    "jewish",
    "arab",
    "persian",
    "north",
    "south",
    "east",
    "west",
}
COMMON_WORDS = frozenset(_MONTHS | _WEEKDAYS | _FUNCTION | _LABEL_WORDS | set(V.DEMONYMS))


def detokenize(text: str) -> str:
    """wiki_bio's bracket and quote tokens back to characters ('-lrb- born 1950 -rrb-' -> '( born 1950 )')."""
    return _BRACKET_RE.sub(lambda m: _BRACKETS[m.group(0)], text)


def clean_name(raw: str) -> str:
    """A name field as words: tokens restored, disambiguators in brackets dropped (a maiden name
    after "née" kept), lower-cased, spaces collapsed."""
    text = detokenize(raw).replace("\n", " ")

    def keep_maiden(m: re.Match) -> str:
        maiden = _MAIDEN.search(m.group(1))
        return f" {maiden.group(1)} " if maiden else " "

    text = _PAREN.sub(keep_maiden, text)
    text = text.replace('"', " ")
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class NameForms:
    """The words of one person's names, sorted into the roles a mention may give them."""

    words: frozenset[str]  # two letters or more, not particles
    given: frozenset[str]  # the first word of each name (a nickname in quotes too)
    initials: frozenset[str]  # single letters the names give, or the first letters of their given names
    particles: frozenset[str]

    def kind(self, token: str) -> str | None:
        t = token.lower()
        if t in self.words:
            return "word"
        if t in self.initials:
            return "initial"
        if t in self.particles:
            return "particle"
        return None


def name_forms(names: list[str]) -> NameForms | None:
    """The forms of a person's names (raw fields as the source gives them); None when none has a word."""
    words: set[str] = set()
    given: set[str] = set()
    initials: set[str] = set()
    particles: set[str] = set()
    for raw in names:
        quoted = re.findall(r'"([^"]+)"', detokenize(raw))
        tokens = [t.lower() for t in _TOKEN.findall(clean_name(raw))]
        substantive = [t for t in tokens if len(t) >= 2 and t not in PARTICLES and not t.isdigit()]
        if not substantive:
            continue
        words.update(substantive)
        particles.update(t for t in tokens if t in PARTICLES)
        initials.update(t for t in tokens if len(t) == 1)
        first = next(t for t in tokens if t not in PARTICLES)
        if len(first) >= 2:
            given.add(first)
        for t in substantive[:-1]:  # "john ronald reuel tolkien" is also "j. r. r. tolkien"
            initials.add(t[0])
        for q in quoted:  # william "bill" smith: "bill" is a given name
            given.update(t.lower() for t in _TOKEN.findall(q) if len(t) >= 2)
    if not words:
        return None
    # A word that is both a given name and a surname somewhere ("james james") counts as given only
    # where it stands alone; in a run it is part of the full name either way.
    return NameForms(frozenset(words), frozenset(given & words), frozenset(initials), frozenset(particles))


def with_nicknames(forms: NameForms, text: str) -> NameForms:
    """`forms` plus the nicknames the text puts in quotes inside the name: john "jack" smith."""
    words = "|".join(re.escape(w) for w in sorted(forms.words, key=len, reverse=True))
    pattern = re.compile(
        rf"(?<![^\W_])(?:{words})\s*[\"“]\s*([^\"”\n]{{1,40}}?)\s*[\"”]\s*(?:{words})(?![^\W_])", re.IGNORECASE
    )
    nick = {
        t.lower()
        for m in pattern.finditer(text)
        for t in _TOKEN.findall(m.group(1))
        if len(t) >= 2 and not t.isdigit() and t.lower() not in PARTICLES
    }
    if not nick - forms.words:
        return forms
    return NameForms(forms.words | nick, forms.given | nick, forms.initials, forms.particles)


def collisions(forms: NameForms) -> list[str]:
    """The name's words that are also words the text's facts are read from (months, demonyms, ...)."""
    return sorted(w for w in forms.words if w in COMMON_WORDS)


@dataclass(frozen=True)
class FakeName:
    given: str  # may carry a middle initial ("Kovan T.")
    surname: str

    @property
    def full(self) -> str:
        return f"{self.given} {self.surname}"

    @property
    def first(self) -> str:
        return self.given.split()[0]


class FakeNames:
    """Fake names for imported people: unique surnames, drawn like the generator's, reproducible per seed."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(f"bio-needle/import/{seed}")
        self.taken: set[str] = set()

    def draw(self, gender: str, avoid: str) -> FakeName:
        """A name none of whose words occur in `avoid` (the person's text and names, lower-cased)."""
        present = set(_TOKEN.findall(avoid.lower()))
        while True:
            given, surname = draw_name(self.rng, gender, "haystack", self.taken)
            given = given.split()[0]  # no middle initial: the text must hold the name a question asks about
            if not {t.lower() for t in _TOKEN.findall(f"{given} {surname}")} & present:
                return FakeName(given, surname)


def gender_of(text: str) -> str:
    """'m' or 'f' from the pronouns a biography uses (so the fake given name agrees with them); 'm' on a tie."""
    words = _TOKEN.findall(text.lower())
    he = sum(w in ("he", "his", "him", "himself") for w in words)
    she = sum(w in ("she", "her", "hers", "herself") for w in words)
    return "f" if she > he else "m"


def _joined(text: str, left: re.Match, right: re.Match) -> bool:
    """Whether two adjacent tokens can belong to one mention of a name."""
    sep = text[left.end() : right.start()]
    if sep in ("-", "'", "’") or re.fullmatch(r"\s*[\"“”]\s*", sep):  # jean-luc, o'brien, john "jack" smith
        return True
    if len(left.group(0)) == 1 and re.fullmatch(r"\.\s*", sep):
        return True
    return bool(sep) and sep.isspace() and "\n" not in sep


def anonymize(text: str, forms: NameForms, fake: FakeName, lowercase: bool = False) -> tuple[str, int]:
    """(text with every mention of the person replaced, mentions replaced)."""
    tokens = list(_TOKEN.finditer(text))
    kinds = [forms.kind(t.group(0)) for t in tokens]
    out: list[str] = []
    pos = replaced = 0
    i = 0
    while i < len(tokens):
        if kinds[i] is None:
            i += 1
            continue
        j = i
        while j + 1 < len(tokens) and kinds[j + 1] is not None and _joined(text, tokens[j], tokens[j + 1]):
            j += 1
        a, b = i, j
        while a <= b and kinds[a] == "particle" and tokens[a].group(0).lower() in _LEADING_NOT_NAME:
            a += 1
        while b >= a and kinds[b] in ("particle", "initial"):
            b -= 1
        run = [tokens[k].group(0).lower() for k in range(a, b + 1) if kinds[k] == "word"]
        if run:
            has_initial = any(kinds[k] == "initial" for k in range(a, b + 1))
            if len(forms.words) == 1:  # "pelé": a one-word name is the whole fake name
                new = fake.full
            elif not has_initial and all(w in forms.given for w in run):
                new = fake.first
            elif not has_initial and not any(w in forms.given for w in run):
                new = fake.surname
            else:
                new = fake.full
            out.append(text[pos : tokens[a].start()])
            out.append(new.lower() if lowercase else new)
            pos = tokens[b].end()
            replaced += 1
        i = j + 1
    out.append(text[pos:])
    return "".join(out), replaced


def leaks(text: str, forms: NameForms) -> list[str]:
    """The person's name words still in `text` as whole words (case-insensitive): must be none."""
    if not forms.words:
        return []
    pattern = re.compile(
        r"(?<![^\W_])(?:" + "|".join(re.escape(w) for w in sorted(forms.words, key=len, reverse=True)) + r")(?![^\W_])",
        re.IGNORECASE,
    )
    return sorted({m.group(0).lower() for m in pattern.finditer(text)})
