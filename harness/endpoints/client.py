"""An OpenAI-compatible endpoint: vLLM (ours or anyone's) or a hosted API.

Why the official `openai` client: it already does connection pooling, retries with
backoff on 429/5xx/timeouts, and both completion APIs. What it lacks (vLLM's
`/tokenize`, `/v1/models` details) goes through httpx against the same server.
API keys are read from an environment variable at call time and never stored.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from harness.errors import EndpointError
from harness.prompting import Prompt

Api = Literal["completions", "chat"]


class Completion(BaseModel):
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    latency_s: float


class Endpoint:
    """One model behind an OpenAI-compatible base URL (ending in /v1)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api: Api = "chat",
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 600.0,
        max_retries: int = 3,
    ):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.root = self.base_url[: -len("/v1")]
        self.model = model
        self.api = api
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._tokenize_ok: bool | None = None
        self._token_cache: dict[str, int] = {}

    # -- identity -----------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def describe(self) -> dict[str, Any]:
        """Check the endpoint answers and return what it says about the model (one-line error if not)."""
        try:
            r = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=10)
        except httpx.HTTPError as e:
            raise EndpointError(f"cannot reach {self.base_url}: {type(e).__name__}: {e}") from None
        if r.status_code != 200:
            raise EndpointError(f"{self.base_url}/models answered HTTP {r.status_code}: {r.text[:200]}")
        models = {m.get("id"): m for m in r.json().get("data", [])}
        if models and self.model not in models:
            raise EndpointError(
                f"model {self.model!r} is not served at {self.base_url}; it serves: {', '.join(models)}"
            )
        info = dict(models.get(self.model, {}))
        try:
            v = httpx.get(f"{self.root}/version", timeout=5)
            if v.status_code == 200:
                info["server_version"] = v.json().get("version")
        except httpx.HTTPError:
            pass
        return info

    # -- tokens ---------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text in the served model's own tokenizer (vLLM `/tokenize`), no special tokens.

        Each unique text is counted once per endpoint. Servers without `/tokenize`
        (hosted APIs) get an approximation of 4 characters a token, flagged in `token_counter`.
        """
        todo = [t for t in dict.fromkeys(texts) if t not in self._token_cache]
        if todo:
            counts = asyncio.run(self._tokenize_many(todo)) if self._tokenize_ok is not False else None
            if counts is None:
                counts = [max(1, round(len(t) / 4)) for t in todo]
            self._token_cache.update(zip(todo, counts))
        return [self._token_cache[t] for t in texts]

    @property
    def token_counter(self) -> str:
        return "server /tokenize" if self._tokenize_ok is not False else "approx 4 chars/token"

    async def _tokenize_many(self, texts: list[str]) -> list[int] | None:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(timeout=60, limits=limits, headers=self._headers()) as client:
            sem = asyncio.Semaphore(16)

            async def one(t: str) -> int | None:
                async with sem:
                    r = await client.post(
                        f"{self.root}/tokenize",
                        json={"model": self.model, "prompt": t, "add_special_tokens": False},
                    )
                if r.status_code == 404:
                    return None
                r.raise_for_status()
                return int(r.json()["count"])

            try:
                first = await one(texts[0])
            except httpx.HTTPError as e:
                raise EndpointError(f"{self.root}/tokenize failed: {e}") from None
            if first is None:
                self._tokenize_ok = False
                return None
            self._tokenize_ok = True
            rest = await asyncio.gather(*(one(t) for t in texts[1:]))
            return [first, *[int(c or 0) for c in rest]]

    async def count_prompt_tokens(self, prompt: Prompt) -> int | None:
        """Tokens of a whole prompt as the server will see it (special tokens included)."""
        body: dict[str, Any] = {"model": self.model}
        if self.api == "chat":
            body["messages"] = prompt.messages
        else:
            body["prompt"] = prompt.text
        async with httpx.AsyncClient(timeout=60, headers=self._headers()) as client:
            r = await client.post(f"{self.root}/tokenize", json=body)
        return int(r.json()["count"]) if r.status_code == 200 else None

    # -- generation -------------------------------------------------------------------
    def client(self):
        from openai import AsyncOpenAI

        return AsyncOpenAI(
            base_url=self.base_url,
            api_key=(os.environ.get(self.api_key_env) if self.api_key_env else None) or "EMPTY",
            timeout=self.timeout_s,
            max_retries=self.max_retries,
        )

    async def complete(
        self, client, prompt: Prompt, schema: dict[str, Any] | None, max_tokens: int
    ) -> Completion:
        """One request at temperature 0, JSON-schema constrained when a schema is given."""
        extra: dict[str, Any] = {}
        if schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        t0 = time.perf_counter()
        if self.api == "chat":
            resp = await client.chat.completions.create(
                model=self.model,
                messages=prompt.messages,
                temperature=0,
                max_tokens=max_tokens,
                **({"response_format": extra["response_format"]} if extra else {}),
            )
            choice = resp.choices[0]
            text = choice.message.content or ""
        else:
            resp = await client.completions.create(
                model=self.model,
                prompt=prompt.text,
                temperature=0,
                max_tokens=max_tokens,
                extra_body=extra or None,
            )
            choice = resp.choices[0]
            text = choice.text or ""
        latency = time.perf_counter() - t0
        usage = resp.usage
        cached = None
        if usage is not None and getattr(usage, "prompt_tokens_details", None) is not None:
            cached = getattr(usage.prompt_tokens_details, "cached_tokens", None)
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cached_tokens=cached,
            finish_reason=choice.finish_reason,
            latency_s=latency,
        )
