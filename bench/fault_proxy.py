"""A fault-injecting HTTP proxy in front of an OpenAI-compatible server, on 127.0.0.1 only.

    python bench/fault_proxy.py --target http://127.0.0.1:8000 [--rate 0.2] [--seed 0] [--port 0]
    -> prints "listening http://127.0.0.1:PORT/v1"

A fraction `--rate` of requests gets a fault instead of the server's answer, drawn with a seeded
RNG: HTTP 429 (half of them with `Retry-After: 1`), HTTP 500, or -- generation requests only -- a
timeout (the proxy holds the request without forwarding it until the client gives up). Faulted
requests never reach the server, so it sees each successful request exactly once, as in a clean
run. Every other request is forwarded as is (headers minus hop-by-hop ones) and its answer
returned. GET /__faults returns the counts of injected faults and forwarded requests.

--die-at N: the proxy forwards N generation requests and then, when the next one arrives, the
process exits with that request unanswered (a replica lost with a request in flight; the server
behind it never sees that request). Connections are then refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai import HTTPServer, serve  # noqa: E402

GENERATION = (b"/v1/completions", b"/v1/chat/completions")


class FaultProxy(HTTPServer):
    def __init__(
        self,
        target: str,
        rate: float = 0.2,
        seed: int = 0,
        hang_s: float = 3600.0,
        timeouts: bool = True,
        force_first: bool = False,
        die_at: int | None = None,
    ):
        import httpx

        self.target = target.rstrip("/").removesuffix("/v1")
        self.rate = rate
        self.rng = random.Random(seed)
        self.hang_s = hang_s
        self.timeouts = timeouts
        self.counts = {"forwarded": 0, "429": 0, "500": 0, "timeout": 0}
        # --force-first: the first generation requests get a timeout, a 429 and a 500, in that order,
        # so a short run sees every kind of fault whatever the dice say.
        self.forced = ["timeout", "429", "500"] if force_first else []
        self.die_at = die_at
        self.client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=64))

    async def route(self, method: bytes, path: bytes, headers: dict, body: bytes) -> tuple:
        if path == b"/__faults":
            return 200, json.dumps(self.counts).encode()
        if self.die_at is not None and path in GENERATION:
            if self.die_at <= 0:
                import os

                os._exit(0)  # with this request in flight: its connection is reset, the port closes
            self.die_at -= 1
        kind = None
        if self.forced and path in GENERATION:
            kind = self.forced.pop(0)
        elif self.rng.random() < self.rate:
            kinds = ["429", "500"] + (["timeout"] if self.timeouts and path in GENERATION else [])
            kind = self.rng.choice(kinds)
        if kind is not None:
            self.counts[kind] += 1
            if kind == "429":
                extra = {b"retry-after": b"1"} if self.rng.random() < 0.5 else {}
                return 429, b'{"error": {"message": "rate limited (injected)"}}', extra
            if kind == "500":
                return 500, b'{"error": {"message": "internal error (injected)"}}'
            await asyncio.sleep(self.hang_s)  # the client's timeout ends it
            return 504, b'{"error": {"message": "gateway timeout (injected)"}}'
        self.counts["forwarded"] += 1
        fwd = {
            k.decode(): v.decode()
            for k, v in headers.items()
            if k not in (b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding")
        }
        r = await self.client.request(method.decode(), self.target + path.decode(), content=body, headers=fwd)
        return r.status_code, r.content


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hang", type=float, default=3600.0)
    ap.add_argument("--no-timeouts", action="store_true")
    ap.add_argument("--force-first", action="store_true")
    ap.add_argument("--die-at", type=int, default=None)
    a = ap.parse_args()

    async def go():
        await serve(a.port, FaultProxy(a.target, a.rate, a.seed, a.hang, not a.no_timeouts, a.force_first, a.die_at))

    asyncio.run(go())


if __name__ == "__main__":
    main()
