"""How soon `harness compare --scenario qa` asks its first query about a 1,000-row file with 20 documents a row.

    python bench/qa_file.py --endpoint http://127.0.0.1:8100/v1 [--rows 1000] [--docs 20] [--dir /tmp/qa-bench]

Writes a Lost-in-the-Middle-style JSONL file (question, answers, 20 ctxs of about 100 words with
title, text, isgold), then, against a server that is already up:
  * in this process: QA.check() (every row read and validated), the default grid's samples
    (lengths 1k, 2k, 4k x depths 0, 25, 50, 75, 100 x 2 rows, counted by the server's /tokenize) and
    the null baseline's population;
  * `harness compare` as a user runs it (full-context and rag-dense, the default grid), in a fresh
    process, through a byte-forwarding proxy that notes when the first generation request passes:
    seconds until the first query is asked, and until its first record is written (asked and
    answered: that adds the server's latency, which a busy shared server makes long); the run is
    then stopped with Ctrl-C (--all lets it finish and prints its total).
The documents are made-up sentences drawn from a small vocabulary; every row has its own answer.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "river harbour lantern market bridge valley council tower garden library canal mill orchard "
    "village winter summer bell ferry island quarry chapel meadow forest road station school"
).split()


def write_file(path: Path, rows: int, docs: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(rows):
            answer = f"Name{i:04d}"
            gold = rng.randrange(docs)
            ctxs = []
            for j in range(docs):
                text = " ".join(rng.choice(WORDS) for _ in range(95))
                if j == gold:
                    text = f"The keeper of tower {i} was {answer}. " + text
                ctxs.append({"title": f"Doc {i}-{j}", "text": text, "hasanswer": j == gold, "isgold": j == gold})
            fh.write(
                json.dumps({"question": f"who was the keeper of tower {i}", "answers": [answer], "ctxs": ctxs}) + "\n"
            )


class FirstRequest:
    """A TCP proxy to the server that notes when the first generation request goes through it."""

    def __init__(self, upstream: str):
        from urllib.parse import urlsplit

        u = urlsplit(upstream)
        self.host, self.port, self.path = u.hostname, u.port or 80, u.path
        self.at: float | None = None
        self.listen_port = 0

    def start(self) -> str:
        import asyncio
        import threading

        ready = threading.Event()

        async def pipe(reader, writer, watch: bool):
            try:
                while data := await reader.read(65536):
                    if (
                        watch
                        and self.at is None
                        and (b"POST /v1/completions" in data or b"POST /v1/chat/completions" in data)
                    ):
                        self.at = time.perf_counter()
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(cr, cw):
            ur, uw = await asyncio.open_connection(self.host, self.port)
            await asyncio.gather(pipe(cr, uw, True), pipe(ur, cw, False))

        async def run():
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.listen_port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        threading.Thread(target=lambda: asyncio.run(run()), daemon=True).start()
        ready.wait(10)
        return f"http://127.0.0.1:{self.listen_port}{self.path}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True, help="an OpenAI-compatible server that is up (…/v1)")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/qa-bench"))
    ap.add_argument("--all", action="store_true", help="let the compare finish (minutes on a CPU)")
    ap.add_argument("--strategies", default="full-context,rag-dense", help="compare's --strategies")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"qa-{args.rows}x{args.docs}.jsonl"
    write_file(path, args.rows, args.docs)
    print(f"file: {path} ({path.stat().st_size / 1e6:.1f} MB, {args.rows:,} rows x {args.docs} documents)")

    from harness.endpoints.client import Endpoint
    from scenarios.qa import QA

    endpoint = Endpoint(args.endpoint, args.model, api="completions")
    t0 = time.perf_counter()
    sc = QA(QA.Params(file=path))
    sc.check()
    t1 = time.perf_counter()
    samples = sc.samples([1000, 2000, 4000], [0, 25, 50, 75, 100], 2, endpoint.count_tokens)
    t2 = time.perf_counter()
    sc.null_answer(sc.reference_labels())
    t3 = time.perf_counter()
    print(
        f"check: {t1 - t0:.2f} s; samples ({len(samples)}, served tokens): {t2 - t1:.2f} s; null baseline: {t3 - t2:.2f} s"
    )

    out = args.dir / f"run-{int(time.time())}"
    proxy = FirstRequest(args.endpoint)
    via = proxy.start()
    cmd = [
        sys.executable, "-m", "harness.cli", "compare", "--scenario", "qa", "-P", f"file={path}",
        "--endpoint", via, "--model", args.model, "--api", "completions", "--out", str(out), "--no-cache", "--strategies", args.strategies,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    records = out / "records.jsonl"
    while proc.poll() is None:
        if first is None and records.exists() and records.stat().st_size > 0:
            first = time.perf_counter() - start
            if not args.all:
                proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    total = time.perf_counter() - start
    if first is None:
        print(proc.stderr.read()[-2000:])
        raise SystemExit(proc.returncode or 1)
    asked = proxy.at - start if proxy.at is not None else float("nan")
    print(
        f"compare: first query asked after {asked:.2f} s; first record written after {first:.2f} s (asked and answered)"
    )
    if args.all:
        print(f"compare: {records.read_text().count(chr(10))} queries in {total:.1f} s")


if __name__ == "__main__":
    main()
