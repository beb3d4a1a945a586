"""ragas Faithfulness (opt-in): offline, telemetry off, every outcome counted — never dropped.

Most tests run ragas for real against a tiny scripted OpenAI-compatible judge on 127.0.0.1 (no
model): it answers ragas's two prompts, or fails on purpose, depending on the response being
judged. The network is closed for the duration (only loopback connects) and tiktoken's file
loader raises, so a download attempt would fail the test. The last test uses the real vLLM
server as the judge.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("ragas")
pytest.importorskip("langchain_openai")

from test_report_html import make_run  # noqa: E402  (the synthetic run folder shared by the report tests)

from harness.scoring import faithfulness as F  # noqa: E402
from harness.store import RunStore  # noqa: E402


# -- a scripted judge --------------------------------------------------------------------------------
def _judge_reply(prompt: str) -> tuple[int, str, str]:
    """(HTTP status, completion text, finish_reason) for one ragas prompt."""
    tail = prompt.rsplit("Now perform the same with the following input", 1)[-1]
    if "GARBAGE" in tail:
        return 200, "I think it is fine, no JSON here", "stop"
    if "LOOP" in tail:
        return 200, '{"statements": ["and again', "length"
    if "BROKEN" in tail:
        return 500, "", "stop"
    if "analyze the complexity of each sentence" in prompt:  # statement extraction
        if "EMPTY" in tail:
            return 200, json.dumps({"statements": []}), "stop"
        return 200, json.dumps({"statements": ["The person is french.", "The person was born in 1950."]}), "stop"
    if "judge the faithfulness" in prompt:  # NLI verdicts
        return (
            200,
            json.dumps(
                {
                    "statements": [
                        {"statement": "The person is french.", "reason": "stated", "verdict": 1},
                        {"statement": "The person was born in 1950.", "reason": "not stated", "verdict": 0},
                    ]
                }
            ),
            "stop",
        )
    return 200, "??", "stop"  # e.g. ragas's fix-the-format prompt: still no JSON


class _Judge(BaseHTTPRequestHandler):
    calls: list[str] = []
    prompts: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/chat/completions"):
            prompt = "\n".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str))
        else:
            prompt = body["prompt"][0] if isinstance(body["prompt"], list) else body["prompt"]
        type(self).calls.append(self.path)
        type(self).prompts.append(prompt)
        status, text, finish = _judge_reply(prompt)
        if status != 200:
            payload = {"error": {"message": "judge exploded", "type": "server_error"}}
        elif self.path.endswith("/chat/completions"):
            payload = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        else:
            payload = {
                "id": "x",
                "object": "text_completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    _Judge.calls = []
    _Judge.prompts = []
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Only loopback connects; tiktoken cannot load an encoding file; telemetry env unset at start."""
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            raise OSError(f"network is closed in this test: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    import tiktoken.load

    def no_files(*a, **k):
        raise AssertionError("tiktoken tried to load an encoding file")

    monkeypatch.setattr(tiktoken.load, "read_file", no_files)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_files)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-tiktoken-cache"))
    monkeypatch.delenv("RAGAS_DO_NOT_TRACK", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield


def _rewrite_raw(run: Path, marker_for) -> list[dict]:
    """Give each record a response carrying a marker the scripted judge reacts to."""
    store = RunStore(run)
    records = store.rows()
    for i, r in enumerate(records):
        marker = marker_for(i, r)
        if marker is not None:
            r["raw"] = (r.get("raw") or "") + f" {marker}"
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_every_outcome_is_counted_offline(tmp_path, judge_url, offline):
    run = make_run(tmp_path)
    markers = ["GARBAGE", "EMPTY", "LOOP", "BROKEN", None]
    records = _rewrite_raw(run, lambda i, r: markers[i % len(markers)])
    records[-1]["error"], records[-1]["raw"] = "HTTP 500: boom", None  # a failed request: skipped
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    store = RunStore(run)
    judge = F.Judge(url=judge_url, model="judge", api="completions", concurrency=3, max_tokens=256)
    counts = F.run_ragas(run, store.latest_records(), store.read_samples(), judge)

    assert os.environ["RAGAS_DO_NOT_TRACK"] == "true"
    from ragas import _analytics

    assert _analytics.do_not_track() is True
    assert sum(counts.values()) == len(records)  # nothing dropped
    results = F.read_results(run)
    assert len(results) == len(records)
    by_marker = {}
    for r in records:
        row = results[(r["strategy"], r["sample_id"])]
        key = next((m for m in markers if m and r.get("raw") and r["raw"].endswith(m)), "normal")
        if r.get("error"):
            key = "failed"
        by_marker.setdefault(key, set()).add(row["status"])
        if row["status"] == "ok":
            assert row["score"] == pytest.approx(0.5) and row["verdicts"] == [1, 0]
            assert row["statements"] == ["The person is french.", "The person was born in 1950."]
    assert by_marker["GARBAGE"] == {"parse_failure"}
    assert by_marker["EMPTY"] == {"nan"}
    assert by_marker["LOOP"] == {"truncated"}
    assert by_marker["BROKEN"] == {"error"}
    assert by_marker["normal"] == {"ok"}
    assert by_marker["failed"] == {"skipped"}
    assert all(c.endswith("/completions") and "chat" not in c for c in _Judge.calls)

    # a second run judges nothing new; an errored one is retried
    before = len(_Judge.calls)
    counts = F.run_ragas(run, store.latest_records(), store.read_samples(), judge)
    broken = [r for r in records if not r.get("error") and str(r.get("raw")).endswith("BROKEN")]
    assert counts["error"] == len(broken) > 0
    assert sum(counts.values()) == counts["error"]
    assert len(_Judge.calls) > before


def test_summary_and_report_show_failures(tmp_path, judge_url, offline):
    from harness.report.html import write_report
    from harness.report.summary import summarize_run
    from scenarios.bio_needle import BioNeedle

    run = make_run(tmp_path)
    _rewrite_raw(run, lambda i, r: "GARBAGE" if (i // 2) % 2 else None)  # half of each strategy's
    store = RunStore(run)
    F.run_ragas(
        run,
        store.latest_records(),
        store.read_samples(),
        F.Judge(url=judge_url, model="judge", api="chat", concurrency=2, max_tokens=128),
    )
    assert all(c.endswith("/chat/completions") for c in _Judge.calls)
    summary, records, samples = summarize_run(store, BioNeedle())
    assert summary["faithfulness"]["available"]
    total = {k: sum(s[k] for s in summary["by_strategy"]) for k in ("ragas_scored", "ragas_parse_failure", "ragas_nan")}
    assert total["ragas_parse_failure"] == len(records) // 2
    assert total["ragas_scored"] == len(records) - len(records) // 2
    for s in summary["by_strategy"]:
        assert s["ragas_faithfulness"] == pytest.approx(0.5)
    html = write_report(run, summary, records, samples, BioNeedle()).read_text()
    assert "parse failures" in html and 'id="faithfulness"' in html


def test_judge_sees_what_the_model_was_shown(tmp_path):
    run = make_run(tmp_path)
    store = RunStore(run)
    samples = {s.id: s for s in store.read_samples()}
    for item, r in zip(F.judge_items(store.latest_records(), samples.values()), store.latest_records()):
        if r.error:
            assert "skip" in item
            continue
        if r.strategy == "full-context":  # the haystack, split by document
            assert item["contexts"] == [d.text for d in samples[r.sample_id].documents]
        else:
            assert item["contexts"] == [p["text"] for p in r.shown.pieces]
        assert item["question"] == samples[r.sample_id].question


def test_offline_tiktoken_gives_a_local_encoding(offline):
    import tiktoken

    with F.offline_tiktoken():
        enc = tiktoken.get_encoding("o200k_base")
        assert enc.decode(enc.encode("héllo <script>")) == "héllo <script>"
        assert tiktoken.encoding_for_model("gpt-4o").name == enc.name
    with pytest.raises(AssertionError, match="encoding file"):
        tiktoken.get_encoding("r50k_base")


def test_cli_rejects_bad_faithfulness_flags(tmp_path):
    import subprocess
    import sys

    run = make_run(tmp_path)
    for args in (
        ["--faithfulness", "maybe"],
        ["--faithfulness", "ragas", "--judge-endpoint", "http://x"],
        ["--judge-api", "smoke"],
        ["--judge-statements", "vibes"],
    ):
        p = subprocess.run(
            [sys.executable, "-m", "harness.cli", "report", str(run), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode != 0
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.server
def test_real_judge_counts_every_query(vllm_server, tmp_path, offline):
    """The embedded base model as judge over /v1/completions: it may well fail ragas's format; that is counted."""
    run = make_run(tmp_path)
    store = RunStore(run)
    records = [r for r in store.latest_records() if not r.error][:2]
    judge = F.Judge(url=vllm_server.base_url, model=vllm_server.model, api="completions", concurrency=2, max_tokens=96)
    counts = F.run_ragas(run, records, store.read_samples(), judge)
    assert sum(counts.values()) == len(records)
    rows = F.read_results(run)
    assert len(rows) == len(records) and {row["status"] for row in rows.values()} <= set(F.STATUSES)
    for row in rows.values():
        # the judge was reached and answered every query: a failed request would be "error"; what the
        # base model writes either scores in [0, 1] or is classified with the reason kept
        assert row["status"] not in ("error", "skipped"), row
        assert (row["status"] == "ok" and 0.0 <= row["score"] <= 1.0) or row["detail"] or row["status"] == "nan", row


def test_judge_training_prompts_are_the_bytes_ragas_sends(judge_url, offline):
    """harness finetune's judge examples (judge_share) teach ragas's two prompts exactly as ragas renders and
    sends them over /v1/completions, so a reader tuned on them is asked what it learned."""
    import asyncio

    from harness.finetune.judge import statement_prompt, verdict_prompt

    item = {
        "strategy": "full-context",
        "sample_id": "s0",
        "length": 100,
        "digest": "d",
        "question": "What is known about Ana Bo?",
        "response": '{"nationality":"french","born":"1950"}',
        "contexts": ["Ana Bo is a French painter.", "Born in 1950."],
    }
    rows = []
    asyncio.run(F._judge_all([item], F.Judge(url=judge_url, model="m"), rows.append))
    assert rows[0]["status"] == "ok" and len(_Judge.prompts) == 2
    assert _Judge.prompts[0] == statement_prompt(item["question"], item["response"])
    assert _Judge.prompts[1] == verdict_prompt(item["contexts"], rows[0]["statements"])


def test_judge_targets_parse_as_ragas_outputs_and_follow_the_grounding():
    """Targets are what ragas parses; the verdict is 1 exactly where the needle states the value, so a
    field swapped for another person's value (a distractor in the same context) is judged 0."""
    from ragas.metrics._faithfulness import NLIStatementOutput, StatementGeneratorOutput

    from harness.finetune.judge import judge_steps
    from scenarios.bio_needle.scenario import BioNeedle

    scen = BioNeedle().split("train", seed=5)
    sample = scen.samples([600], [50], 1, lambda texts: [len(t.split()) for t in texts])[0]
    contexts = [d.text for d in sample.documents]
    (_, said), (_, judged) = judge_steps(scen, sample, contexts, sample.gold)
    assert StatementGeneratorOutput.model_validate_json(said).statements
    assert all(s.verdict == 1 for s in NLIStatementOutput.model_validate_json(judged).statements)
    other = next(
        q for q in scen.questions(sample)[1:] if q.gold["nationality"] not in ("unknown", sample.gold["nationality"])
    )
    swapped = {**sample.gold, "nationality": other.gold["nationality"]}
    steps = judge_steps(scen, sample, contexts, swapped)
    verdicts = {s.statement: s.verdict for s in NLIStatementOutput.model_validate_json(steps[1][1]).statements}
    (nat,) = [text for field, _, text in F.field_statements(scen, sample.subject, swapped) if field == "nationality"]
    assert verdicts[nat] == 0 and sum(verdicts.values()) == len(verdicts) - 1


def test_judge_verdicts_are_compared_with_the_grounding_field_by_field():
    from types import SimpleNamespace

    record = SimpleNamespace(
        grounding={
            "fields": {
                "nationality": {"claim": True, "in_needle": True},
                "date_of_birth": {"claim": True, "in_needle": False},
                "date_of_death": {"claim": True, "in_needle": True},
                "sportsperson": {"claim": True, "in_needle": True},
                "politician": {"claim": False, "in_needle": False},
            }
        },
        answer={
            "nationality": "french",
            "date_of_birth": {"day": 0, "month": 3, "year": 1950},
            "date_of_death": {"day": 2, "month": 1, "year": 2001},
            "sportsperson": True,
            "politician": False,
        },
    )
    row = {
        "status": "ok",
        "statements": ["Ana Bo is French.", "Ana Bo's date of birth is March 1950.", "Ana Bo is a sportsperson."],
        "verdicts": [1, 1, 0],
    }
    assert F.judge_agreement(record, row) == {
        "yes/needle": 1,
        "yes/not": 1,
        "no/needle": 1,
        "no/not": 0,
        "unmatched": 1,  # the death date is named by no statement
    }
    assert F.judge_agreement(record, {**row, "status": "parse_failure"}) == dict.fromkeys(F.AGREEMENT, 0)


def test_statements_from_fields_skip_the_statement_prompt(tmp_path, judge_url, offline):
    """--judge-statements fields: the judge is sent ragas's verdict prompt only, over one statement per field the
    parsed answer claims; a rerun in ragas's own mode judges again (rows remember how they were made)."""
    from scenarios.bio_needle import BioNeedle

    run = make_run(tmp_path)
    store = RunStore(run)
    records = [r for r in store.latest_records() if not r.error and r.answer][:3]
    samples = {s.id: s for s in store.read_samples()}
    judge = F.Judge(url=judge_url, model="judge", statements="fields")
    F.run_ragas(run, records, samples.values(), judge, scenario=BioNeedle())
    assert _Judge.prompts and not any("analyze the complexity" in p for p in _Judge.prompts)
    rows = F.read_results(run)
    for r in records:
        want = [t for _, _, t in F.field_statements(BioNeedle(), samples[r.sample_id].subject, r.answer)]
        row = rows[(r.strategy, r.sample_id)]
        assert row["statements_from"] == "fields" and row["statements"] == want and want
        assert any(all(s in p for s in want) for p in _Judge.prompts)
    with pytest.raises(ValueError, match="scenario"):
        F.judge_items(records, samples.values(), None, "fields")
    n = len(_Judge.prompts)
    F.run_ragas(run, records, samples.values(), F.Judge(url=judge_url, model="judge"))
    assert any("analyze the complexity" in p for p in _Judge.prompts[n:])


def test_judge_statements_auto_follows_the_judge():
    from harness.report.finish import ReportOptions

    opts = ReportOptions()
    assert opts.judge("http://x", "gemma-3-270m-reader", "completions", None).statements == "fields"
    assert opts.judge("http://x", "gemma-3-270m", "completions", None).statements == "fields"
    assert opts.judge("http://x", "gpt-4o-mini", "chat", None).statements == "ragas"
    assert ReportOptions(judge_statements="ragas").judge("http://x", "gemma-3-270m", None, None).statements == "ragas"
