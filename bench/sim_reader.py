"""A simulated reader: an OpenAI-compatible server whose accuracy depends on what the prompt holds.

The only model that runs on the CPU box (Gemma 3 270M, a base model) is near chance on the
biography needle, so strategies hardly differ on it. This stand-in reads like a real long-context
model does: it knows the gold answers of the bio-needle scenario (the needle split of the same
seed), finds the question's subject, and answers

  * when the needle is in the context (its biography, or at least the subject's name, in the
    task's "Documents:" block, never in the shots or the question): each field right with
    probability  p = clamp(base - decay * context_tokens / 1000 - middle * (1 - |2 pos - 1|))
    where pos is the needle's relative position in the context (0 start, 1 end) -- accuracy falls
    with length and is lowest in the middle ("lost in the middle"); a wrong field gets a plausible
    wrong value (another nationality, a shifted year, the other boolean);
  * when it is not: the null answer (nationality "unknown", zero dates, false booleans).

Deterministic: each field's draw is seeded by a hash of (seed, field, prompt), so one prompt always
gets one answer (temperature-0 semantics), while other needles, depths and lengths vary.

    python bench/sim_reader.py [--port 0] [--seed 0] [--max-needles 64] [--base 0.97] [--decay 0.04]
                               [--middle 0.15] [--max-model-len 131072]
    -> prints "listening http://127.0.0.1:PORT/v1" and serves until killed

Routes are bench/fake_openai.py's (its HTTP server is reused): GET /v1/models, /version, /health,
/__stats, POST /tokenize (count = characters / 4), /v1/completions and /v1/chat/completions (usage:
prompt tokens = prompt characters / 4, completion tokens = answer characters / 4).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import fake_openai  # noqa: E402

NULL_DATE = {"day": 0, "month": 0, "year": 0}
NULL_ANSWER = {
    "nationality": "unknown",
    "date_of_birth": dict(NULL_DATE),
    "date_of_death": dict(NULL_DATE),
    "sportsperson": False,
    "politician": False,
}
FIELDS = tuple(NULL_ANSWER)
_DOCS = "Documents:\n"
_QUESTION = "\nQuestion: "
_SUBJECT = re.compile(r"What is known about (.+?)\?\s*$", re.S)


@dataclass(frozen=True)
class Task:
    """The part of a prompt the reader answers: the task's context and its question."""

    context: str
    question: str


def split_task(prompt: str | list[dict[str, Any]]) -> Task | None:
    """The last "Documents: ... Question: ..." block of a completion prompt or of chat messages.

    harness/prompting.py puts instructions and shots first and the task last, so the last
    "Documents:" block is the task's context; the shots' documents are never searched.
    """
    if isinstance(prompt, list):
        users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        text = users[-1] if users and isinstance(users[-1], str) else ""
    else:
        text = prompt
    start = text.rfind(_DOCS)
    if start < 0:
        return None
    start += len(_DOCS)
    q = text.rfind(_QUESTION)
    if q < start:
        return None
    question = text[q + len(_QUESTION) :]
    question = question.split("\nAnswer:", 1)[0].strip()
    return Task(context=text[start:q].strip(), question=question)


def subject_of(question: str) -> str | None:
    m = _SUBJECT.search(question)
    return m.group(1).strip() if m else None


class Reader:
    """The answering logic, apart from HTTP (tests call it directly)."""

    def __init__(
        self, seed: int = 0, max_needles: int = 64, base: float = 0.97, decay: float = 0.04, middle: float = 0.15
    ):
        from harness import registry

        scen = self.scenario = registry.get("scenario", "bio-needle")(seed=seed)
        # The needle split is prefix-stable: these are the needles of any run with this seed and
        # at most max_needles needles per cell.
        records = scen.generator.records("needles", max_needles)
        self.gold: dict[str, tuple[str, dict[str, Any]]] = {
            r.name.strip().casefold(): (r.bio, r.labels.model_dump()) for r in records
        }
        self.seed, self.base, self.decay, self.middle = seed, base, decay, middle
        from scenarios.bio_needle.vocabulary import DEMONYMS

        self.demonyms = list(DEMONYMS)

    # -- where is the needle --------------------------------------------------------------
    @staticmethod
    def locate(context: str, name: str, bio: str) -> float | None:
        """Relative position (0 start .. 1 end) of the needle in the context, None when it is not there."""
        i = context.find(bio)
        span = len(context) - len(bio)
        if i < 0:  # a retrieved chunk may hold part of the biography: the name is enough
            i = context.casefold().find(name.casefold())
            span = len(context) - len(name)
        if i < 0:
            return None
        return min(1.0, max(0.0, i / span)) if span > 0 else 0.0

    def p_correct(self, context_tokens: float, pos: float) -> float:
        p = self.base - self.decay * context_tokens / 1000 - self.middle * (1 - abs(2 * pos - 1))
        return min(1.0, max(0.0, p))

    # -- the answer -----------------------------------------------------------------------
    def answer(self, prompt: str | list[dict[str, Any]]) -> dict[str, Any]:
        task = split_task(prompt)
        name = subject_of(task.question) if task else None
        hit = self.gold.get(name.casefold()) if name else None
        if task is None or hit is None:
            return _copy(NULL_ANSWER)
        bio, gold = hit
        pos = self.locate(task.context, name, bio)
        if pos is None:
            return _copy(NULL_ANSWER)
        p = self.p_correct(len(task.context) / 4, pos)
        key = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
        out = {}
        for f in FIELDS:
            rng = random.Random(hashlib.sha256(f"{self.seed}\x00{f}\x00{key}".encode()).digest())
            out[f] = _copy(gold[f]) if rng.random() < p else self.wrong(f, gold[f], rng)
        return out

    def wrong(self, field: str, gold: Any, rng: random.Random) -> Any:
        """A plausible wrong value for one field."""
        if field == "nationality":
            return rng.choice([d for d in self.demonyms if d != str(gold).strip().lower()])
        if field in ("date_of_birth", "date_of_death"):
            if gold["year"] == 0:  # no date given: invent one
                return {"day": rng.randint(1, 28), "month": rng.randint(1, 12), "year": rng.randint(1900, 2010)}
            shift = rng.choice([-1, 1]) * rng.randint(1, 9)
            year = gold["year"] + shift if 1 <= gold["year"] + shift <= 2100 else gold["year"] - shift
            return {**gold, "year": year}
        return not gold


def _copy(x: Any) -> Any:
    return json.loads(json.dumps(x))


class SimServer(fake_openai.Server):
    """fake_openai's server with the reader's answers on the generation routes."""

    def __init__(self, reader: Reader, model: str = fake_openai.MODEL, max_model_len: int = 131072):
        super().__init__(model=model, max_model_len=max_model_len)
        self.reader = reader
        self._models = json.dumps(
            {
                "object": "list",
                "data": [{"id": model, "object": "model", "root": f"sim/{model}", "max_model_len": max_model_len}],
            }
        ).encode()

    async def route(self, method: bytes, path: bytes, headers: dict, body: bytes) -> tuple[int, bytes]:
        if path not in (b"/v1/completions", b"/v1/chat/completions"):
            return await super().route(method, path, headers, body)
        self.generations += 1
        try:
            req = json.loads(body)
        except ValueError:
            return 400, b'{"error": {"message": "bad json"}}'
        chat = path == b"/v1/chat/completions"
        prompt = req.get("messages") if chat else req.get("prompt")
        if not isinstance(prompt, (str, list)):
            return 400, b'{"error": {"message": "no prompt"}}'
        answer = self.reader.answer(prompt)
        schema = ((req.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
        if "born" in (schema.get("properties") or {}):  # bio-needle's compact answer form
            answer = self.reader.scenario.encode_answer(answer)
        text = json.dumps(answer, separators=(",", ":"))
        flat = prompt if isinstance(prompt, str) else json.dumps(prompt)
        usage = {"prompt_tokens": max(1, len(flat) // 4), "completion_tokens": max(1, len(text) // 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        usage["prompt_tokens_details"] = {"cached_tokens": 0}
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            if chat
            else {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
        )
        return 200, json.dumps(
            {
                "id": "sim",
                "object": "chat.completion" if chat else "text_completion",
                "created": 0,
                "model": self.model,
                "choices": [choice],
                "usage": usage,
            }
        ).encode()


def start_subprocess(*args: str):
    """Start the simulated reader in a child process; (Popen, base_url)."""
    return fake_openai.start_subprocess(*args, script=__file__)


def running(*args: str):
    """The simulated reader for the length of a `with` block: yields its base URL."""
    return fake_openai.running(*args, script=__file__)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="the harness run's --seed (the needles' identity)")
    ap.add_argument("--max-needles", type=int, default=64, help="needles per cell the reader knows the gold of")
    ap.add_argument("--base", type=float, default=0.97, help="per-field accuracy at zero length, needle at an end")
    ap.add_argument("--decay", type=float, default=0.04, help="accuracy lost per 1,000 context tokens")
    ap.add_argument("--middle", type=float, default=0.15, help="extra loss with the needle in the middle")
    ap.add_argument("--model", default=fake_openai.MODEL)
    ap.add_argument("--max-model-len", type=int, default=131072)
    a = ap.parse_args()
    if a.max_needles < 1:
        ap.error("--max-needles must be at least 1")
    reader = Reader(seed=a.seed, max_needles=a.max_needles, base=a.base, decay=a.decay, middle=a.middle)
    asyncio.run(fake_openai.serve(a.port, SimServer(reader, model=a.model, max_model_len=a.max_model_len)))


if __name__ == "__main__":
    main()
