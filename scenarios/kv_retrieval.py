"""kv-retrieval: find one key's value among synthetic key-value pairs.

After the UUID key-value task of Liu et al. 2023 ("Lost in the Middle") and the synthetic
retrieval tasks of Xiong et al. 2024 ("From Artificial Needles to Real Haystacks"). Each document
is one pair written as a JSON object, `{"<uuid key>": "<uuid value>"}`; the question names the
needle's key and the model writes its value. Scored exactly (case-insensitively).

Variants (`-P variant=...`):
  uuid          every key is a random UUID; the background is the same for every needle and
                depth of a length.
  multi_subkey  every background key shares 2-3 of its five groups (in place) with the needle's
                key, so a key cannot be matched by any part of it: the whole key has to be read
                (Xiong et al.'s multi-subkey task). The background is the needle's own, the same
                at every depth.

Splits (`-P split=...`): "test" (what compare asks) and "train" (fine-tuning data). Test UUIDs are
version-4 UUIDs, whose variant digit (the first of the fourth group) is always 8, 9, a or b; every
training UUID has a variant digit 0-7 instead, so no training key or value can be a test one.

Lengths are haystack tokens in the served model's tokenizer (harness.haystack.fill); the needle
goes at the document boundary nearest depth% of the background's tokens. Needle i is the same
pair at every depth and length (the pairing the verdict's tests rely on). Chance level: the
most common value among 1,000 background pairs, i.e. about 0 (values are all distinct).
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import Field

from harness.plugin import (
    SEP_TOKENS,
    Document,
    Grounding,
    Sample,
    Scenario,
    ScenarioParams,
    Shot,
    TokenCache,
    TokenCounter,
    UsageError,
    Words,
    depth_index,
    fill,
    grid,
    joined_tokens,
)

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
REFERENCE_SIZE = 1000

INSTRUCTIONS = """\
Each document below is a key-value pair written as a JSON object {"KEY": "VALUE"}; keys and values \
are UUIDs. Find the pair whose key is exactly the key the question names (every character of it) \
and reply with a JSON object {"answer": VALUE}, VALUE being that pair's value."""


class KVParams(ScenarioParams):
    split: Literal["test", "train"] = Field(
        "test", description="test: the pairs compare asks about; train: fine-tuning pairs, never in any test split"
    )
    variant: Literal["uuid", "multi_subkey"] = Field(
        "uuid", description="uuid: random keys; multi_subkey: background keys share 2-3 of the needle key's 5 groups"
    )


def _uuid(rng: random.Random, train: bool = False) -> str:
    """A version-4 UUID (variant digit 8-b); for the training split, the variant digit mapped to 0-7."""
    text = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return text[:19] + "%x" % (int(text[19], 16) & 7) + text[20:] if train else text


def _near_key(rng: random.Random, key: str, train: bool = False) -> str:
    """A key sharing 2 or 3 of `key`'s five groups, in place; the others drawn anew (never equal)."""
    groups = key.split("-")
    keep = set(rng.sample(range(5), rng.choice((2, 3))))
    fresh = _uuid(rng, train).split("-")
    out = [g if i in keep else f for i, (g, f) in enumerate(zip(groups, fresh))]
    if out == groups:  # all redrawn groups equal by chance: change one hex digit
        i = next(i for i in range(5) if i not in keep)
        out[i] = ("1" if out[i][0] != "1" else "2") + out[i][1:]
    return "-".join(out)


def pair_text(key: str, value: str) -> str:
    return json.dumps({key: value})


def question_for(key: str) -> str:
    return f'What is the value of the key "{key}"?'


class KVRetrieval(Scenario):
    """Find one key's value among synthetic UUID key-value pairs (Lost in the Middle's task; multi_subkey variant)."""

    name = "kv-retrieval"
    Params = KVParams
    fields = ["value"]
    words = Words(document="key-value pair", documents="key-value pairs", subject="key")
    splits = ("test", "train")

    def __init__(self, params: ScenarioParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        self._cache: TokenCache | None = None

    def _stream(self, what: str) -> str:
        """The random stream's name: the training split draws from streams of its own."""
        return f"kv-retrieval/{self.seed}/" + ("train-" if self.training else "") + what

    @property
    def instructions(self) -> str:
        return INSTRUCTIONS

    def answer_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": UUID_PATTERN}  # the core wraps it: {"answer": "..."}

    # -- the pairs ------------------------------------------------------------------------------
    def needles(self, n: int) -> list[tuple[str, str]]:
        rng, t = random.Random(self._stream("needles")), self.training
        return [(_uuid(rng, t), _uuid(rng, t)) for _ in range(n)]

    def background(self, needle_key: str, index: int) -> Iterator[tuple[str, str, str]]:
        """(document id, key, value), endless; the same for every depth (and, for uuid, every needle)."""
        variant = self.params.variant
        rng = random.Random(self._stream("haystack") + (f"/{index}" if variant == "multi_subkey" else ""))
        prefix = f"h{index}." if variant == "multi_subkey" else "h"
        t = self.training
        j = 0
        while True:
            key = _near_key(rng, needle_key, t) if variant == "multi_subkey" else _uuid(rng, t)
            value = _uuid(rng, t)
            if key != needle_key:
                yield f"{prefix}{j}", key, value
                j += 1

    def reference_labels(self) -> list[dict[str, Any]]:
        rng = random.Random(f"kv-retrieval/{self.seed}/haystack")
        out = []
        for _ in range(REFERENCE_SIZE):
            _uuid(rng)
            out.append({"value": _uuid(rng)})
        return out

    @property
    def null_source(self) -> str:
        return f"values of {REFERENCE_SIZE:,} haystack pairs, all distinct"

    # -- the grid ---------------------------------------------------------------------------------
    def samples(
        self, lengths: Sequence[int], depths: Sequence[float], needles: int, count_tokens: TokenCounter
    ) -> list[Sample]:
        lengths, depths = grid(self.name, lengths, depths, needles)
        cache = self._cache = TokenCache.reuse(self._cache, count_tokens)
        pairs = self.needles(needles)
        texts = [pair_text(k, v) for k, v in pairs]
        needle_tokens = cache.count(texts)
        shared = self.params.variant == "uuid"
        out: list[Sample] = []
        for L in lengths:
            for i in range(len(pairs)):
                if L < needle_tokens[i] + SEP_TOKENS + 1:
                    raise UsageError(f"kv-retrieval: length {L} is too small for a pair ({needle_tokens[i]} tokens)")
            for i, (key, value) in enumerate(pairs):
                # uuid: one background per length, sized for the largest needle, shared by all needles.
                budget = L - (max(needle_tokens) if shared else needle_tokens[i]) - SEP_TOKENS
                bg = fill(self.background(key, 0 if shared else i), budget, cache, text=lambda x: pair_text(x[1], x[2]))
                docs = [Document(id=d, text=pair_text(k, v)) for d, k, v in bg]
                counts = [cache[d.text] for d in docs]
                for d in depths:
                    k = depth_index(counts, d)
                    documents = docs[:k] + [Document(id=f"n{i}", text=texts[i])] + docs[k:]
                    out.append(
                        Sample(
                            id=f"kv-retrieval/L{L}/d{d:g}/n{i}",
                            scenario=self.name,
                            length=L,
                            depth=d,
                            needle_index=i,
                            documents=documents,
                            gold_ids=[f"n{i}"],
                            subject=key,
                            question=question_for(key),
                            gold={"value": value},
                            context_tokens=joined_tokens(counts[:k] + [needle_tokens[i]] + counts[k:]),
                            meta={
                                "needle_position": k,
                                "haystack_documents": len(docs),
                                "variant": self.params.variant,
                            },
                        )
                    )
        out.sort(key=lambda s: (s.length, s.depth, s.needle_index))
        return out

    def questions(self, sample: Sample) -> list[Sample]:
        """The sample's own question, then one about every other pair in its context (fine-tuning asks
        several of one context at once)."""
        out = [sample]
        for doc in sample.documents:
            if doc.id in sample.gold_ids:
                continue
            ((key, value),) = json.loads(doc.text).items()
            out.append(
                sample.model_copy(
                    update={
                        "id": f"{sample.id}/q/{doc.id}",
                        "subject": key,
                        "question": question_for(key),
                        "gold": {"value": value},
                        "gold_ids": [doc.id],
                    }
                )
            )
        return out

    # -- few-shot -----------------------------------------------------------------------------------
    def shots(self, n: int) -> list[Shot]:
        if n < 0:
            raise UsageError(f"kv-retrieval: number of shots must be >= 0 (got {n})")
        rng = random.Random(f"kv-retrieval/{self.seed}/shots")
        out = []
        for j in range(n):
            key = _uuid(rng)
            pairs = [(key, _uuid(rng))]
            for _ in range(2):
                other = _near_key(rng, key) if self.params.variant == "multi_subkey" else _uuid(rng)
                pairs.append((other, _uuid(rng)))
            rng.shuffle(pairs)
            value = dict(pairs)[key]
            out.append(
                Shot(
                    documents=[Document(id=f"s{j}.{m}", text=pair_text(k, v)) for m, (k, v) in enumerate(pairs)],
                    question=question_for(key),
                    answer={"value": value},
                )
            )
        return out

    # -- marking ----------------------------------------------------------------------------------------
    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, bool]:
        got = answer.get("value")
        return {"value": isinstance(got, str) and got.strip().lower() == gold["value"].lower()}

    def grounding(self) -> Grounding:
        return KVGrounding()


class KVGrounding(Grounding):
    """A value is supported by a text that contains it (so a neighbour's value is a distractor)."""

    def is_claim(self, field: str, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def supports(self, field: str, value: Any, text: str) -> bool:
        return bool(re.search(re.escape(value.strip().lower()), text.lower()))
