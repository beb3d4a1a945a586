"""flight-gates: the example scenario of docs/adding-a-scenario.md, complete in one file.

A departures board of made-up flights, one line per flight; the question asks for one flight's
gate and departure time. Run it with

    harness scenarios --include docs/examples/flight_gates.py
    harness compare --include docs/examples/flight_gates.py --scenario flight-gates --lengths 1k,2k
    harness finetune --include docs/examples/flight_gates.py --scenario flight-gates   # a reader of its own
"""

from __future__ import annotations

import random
import re
import zlib
from typing import Any, Literal

from pydantic import Field

from harness.plugin import (  # the plug-in surface: everything a scenario imports from the harness
    SEP_TOKENS,
    Document,
    Grounding,
    Sample,
    Scenario,
    ScenarioParams,
    Shot,
    TokenCache,
    UsageError,
    Words,
    check_grid,
    depth_index,
    fill,
    joined_tokens,
    register_scenario,
)

CITIES = ["Oslo", "Lima", "Perth", "Quito", "Turin", "Dakar", "Hanoi", "Porto", "Riga", "Sucre"]
SPLITS = ["needles", "board", "shots"]


# --8<-- [start:flights]
def flights(seed: int, split: str, train: bool = False):
    """An endless, deterministic stream of (code, city, gate, time); each split its own stream.
    A split only takes codes whose hash falls in its third, so splits never share a flight.
    train=True: the fine-tuning flights, of airlines (a code's first letter) no test flight has."""
    rng = random.Random(f"flight-gates/{seed}/{split}" + ("/train" if train else ""))
    seen: set[str] = set()
    while True:
        code = f"{rng.choice('MPRT' if train else 'QXZJ')}{rng.choice('KVWY')}-{rng.randint(100, 9999)}"
        if code in seen or zlib.crc32(code.encode()) % len(SPLITS) != SPLITS.index(split):
            continue
        seen.add(code)
        gate = f"{rng.choice('ABCDE')}{rng.randint(1, 40)}"
        time = f"{rng.randint(0, 23):02d}:{rng.choice(range(0, 60, 5)):02d}"
        yield code, rng.choice(CITIES), gate, time


def line(flight) -> str:
    code, city, gate, time = flight
    return f"Flight {code} to {city} departs from gate {gate} at {time}."
# --8<-- [end:flights]


# --8<-- [start:params]
class FlightParams(ScenarioParams):
    """Options a user sets with -P key=value (validated; unknown keys are refused)."""

    city_in_question: bool = Field(False, description="name the destination in the question too")
    split: Literal["test", "train"] = Field("test", description="train: the flights `harness finetune` learns from")
# --8<-- [end:params]


# --8<-- [start:class]
@register_scenario("flight-gates")
class FlightGates(Scenario):
    """Find one flight's gate and departure time on a long departures board."""

    Params = FlightParams
    fields = ["gate", "time"]  # the answer's fields, in the order the report shows them
    words = Words(document="departure", documents="departures", subject="flight")

    instructions = (
        "Each document below is one line of a departures board. Answer the question about the "
        'flight it names with a JSON object {"gate": GATE, "time": "HH:MM"}, using only that flight\'s line.'
    )

    def answer_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"gate": {"type": "string", "pattern": "^[A-E][0-9]{1,2}$"},
                           "time": {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$"}},
            "required": ["gate", "time"],
            "additionalProperties": False,
        }

    def question(self, flight) -> str:
        code, city = flight[0], flight[1]
        to = f" to {city}" if self.params.city_in_question else ""
        return f"From which gate, and at what time, does flight {code}{to} depart?"
# --8<-- [end:class]

    # --8<-- [start:samples]
    def samples(self, lengths, depths, needles, count_tokens) -> list[Sample]:
        check_grid(self.name, lengths, depths, needles)
        cache = TokenCache(count_tokens)  # counts each distinct text once, in batches
        stream = flights(self.seed, "needles", self.training)
        targets = [next(stream) for _ in range(needles)]  # needle i: the same flight everywhere
        target_tokens = cache.count([line(f) for f in targets])
        out = []
        for L in lengths:
            if L <= max(target_tokens) + SEP_TOKENS:
                raise UsageError(f"flight-gates: length {L} is too small for one departure")
            # One background per length, the same at every depth and for every needle.
            board = flights(self.seed, "board", self.training)
            background = fill(board, L - max(target_tokens) - SEP_TOKENS, cache, text=line)
            docs = [Document(id=f"b{j}", text=line(f)) for j, f in enumerate(background)]
            counts = [cache[d.text] for d in docs]
            for depth in depths:
                k = depth_index(counts, depth)  # the boundary nearest depth% of the tokens
                for i, flight in enumerate(targets):
                    out.append(Sample(
                        id=f"flight-gates/L{L}/d{depth:g}/n{i}", scenario=self.name, length=L,
                        depth=depth, needle_index=i,
                        documents=docs[:k] + [Document(id=f"n{i}", text=line(flight))] + docs[k:],
                        gold_ids=[f"n{i}"], subject=flight[0], question=self.question(flight),
                        gold={"gate": flight[2], "time": flight[3]},
                        context_tokens=joined_tokens(counts[:k] + [target_tokens[i]] + counts[k:]),
                    ))
        return out
    # --8<-- [end:samples]

    # --8<-- [start:score]
    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, bool]:
        return {f: str(answer.get(f, "")).strip().upper() == gold[f].upper() for f in self.fields}

    def shots(self, n: int) -> list[Shot]:
        stream = flights(self.seed, "shots")  # a split of its own: never a test flight
        out = []
        for _ in range(n):
            board = [next(stream) for _ in range(3)]
            target = board[1]
            out.append(Shot(documents=[Document(id=f[0], text=line(f)) for f in board],
                            question=self.question(target), answer={"gate": target[2], "time": target[3]}))
        return out

    def reference_labels(self) -> list[dict[str, Any]]:
        stream = flights(self.seed, "board", self.training)  # drawn like the needles, never asked about
        return [{"gate": f[2], "time": f[3]} for f in (next(stream) for _ in range(1000))]

    null_source = "gates and times of 1,000 board flights"
    # --8<-- [end:score]

    # --8<-- [start:train]
    # "train": what `harness finetune` learns from. With a `split` parameter, the core's split(name, seed)
    # rebuilds the scenario with it set (seed: another board, one per training example) and
    # `self.training` says which split a sample comes from.
    splits = ("test", "train")
    # --8<-- [end:train]

    # --8<-- [start:grounding]
    def grounding(self) -> Grounding:
        return FlightGrounding()


class FlightGrounding(Grounding):
    """A gate or time is supported by a line that states it (another flight's line: a distractor)."""

    def supports(self, field: str, value: Any, text: str) -> bool:
        word = "gate " if field == "gate" else "at "
        return re.search(re.escape(word + str(value).strip()) + r"\b", text, re.IGNORECASE) is not None
# --8<-- [end:grounding]
