"""bio-multihop without a server: the two hops are in the text (and only there), the question never names
the coach, both biographies are gold, the training split never meets the test split, chance level,
grounding. The generic properties (determinism, pairing across depths, lengths in tokens) are checked
with the other built-ins in test_builtin_scenarios.py; the arms run it end to end in
test_bio_multihop_e2e.py."""

from __future__ import annotations

import re

from harness.scoring.answers import mark
from scenarios.bio_multihop import BioMultihop
from scenarios.bio_needle.generator import TRAIN_LETTERS


def words(texts):
    return [len(t.split()) * 4 // 3 + 1 for t in texts]


def grid(scenario=None, needles=6, lengths=(2000,), depths=(0, 50, 100)):
    sc = scenario or BioMultihop()
    return sc, sc.samples(list(lengths), list(depths), needles, words)


def test_the_answer_takes_two_hops():
    sc, samples = grid()
    for s in samples:
        person, coach = (next(d for d in s.documents if d.id == g) for g in s.gold_ids)
        name = s.meta["coach"]
        assert name in person.text or name.lower() in person.text  # hop 1: the person's biography names the coach
        assert name not in s.question and name.lower() not in s.question.lower()  # the question never does
        assert s.subject in s.question
        g = sc.grounding()
        assert g.supports("nationality", s.gold["nationality"], coach.text)  # hop 2: the coach's states it
        assert "coach" not in coach.text.lower()
        assert person.text.lower().count("coach") == 1  # no other coach to confuse the hop with
        others = [d for d in s.documents if d.id not in s.gold_ids]
        assert not any(name.lower() in d.text.lower() for d in others)


def test_the_persons_own_nationality_is_never_the_answer():
    sc, samples = grid(needles=12, depths=(50,))
    gen = sc.generator
    people = {p.name: p for p in gen.people("needles", 200)}
    for s in samples:
        assert people[s.subject].labels.nationality != s.gold["nationality"] != "unknown"


def test_coach_sits_elsewhere_at_every_depth():
    _, samples = grid()
    for s in samples:
        ids = [d.id for d in s.documents]
        person, coach = (ids.index(g) for g in s.gold_ids)
        assert abs(person - coach) >= 2, s.id  # other biographies between them
        assert (s.meta["person_position"], s.meta["coach_position"]) != (None, None)


def test_training_split_never_meets_the_test_split():
    test, test_samples = grid(needles=8, depths=(50,))
    train, train_samples = grid(BioMultihop().split("train"), needles=8, depths=(50,))
    test_names = {s.subject for s in test_samples} | {s.meta["coach"] for s in test_samples}
    for s in train_samples:
        for name in (s.subject, s.meta["coach"]):
            assert set(name.split()[-1].lower()) & TRAIN_LETTERS, name  # a training surname
        text = " ".join(d.text for d in s.documents).lower()
        assert not any(n.lower() in text for n in test_names)
    assert not any(set(n.split()[-1].lower()) & TRAIN_LETTERS for n in test_names)


def test_scores_and_chance_level():
    sc, samples = grid(needles=1, depths=(50,))
    gold = samples[0].gold
    assert mark(sc, {"nationality": " " + gold["nationality"].upper()}, gold)[1] == 1.0
    assert mark(sc, {"nationality": "unknown"}, gold)[1] == 0.0
    ref = sc.reference_labels()
    assert len(ref) > 500 and all(r["nationality"] != "unknown" for r in ref)
    null = sc.null_answer(ref)["nationality"]
    share = sum(r["nationality"] == null for r in ref) / len(ref)
    assert 0 < share < 0.2  # one nationality among many: chance is low, not 100%


def test_shots_are_two_hop_examples_of_other_people():
    sc, samples = grid(needles=4, depths=(50,))
    shots = sc.shots(3)
    asked = {s.subject for s in samples}
    for shot in shots:
        assert len(shot.documents) == 2 and re.search(r"coached by", " ".join(d.text for d in shot.documents), re.I)
        assert not any(name in shot.question for name in asked)
