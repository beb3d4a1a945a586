"""The guide's example scenario (docs/examples/flight_gates.py), so docs/adding-a-scenario.md cannot rot:
the guide quotes the file verbatim; the file registers through --include; its samples keep the
promises the guide makes; `harness compare --include` runs it end to end (a stand-in server here,
the real one in test_scenarios_e2e.py); the guide's quick `harness finetune` trains a reader on its
training split (a few steps, no server)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import registry
from harness.errors import UsageError
from harness.scoring.answers import mark, read_answer, wire_answer
from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "flight_gates.py"
GUIDE = ROOT / "docs" / "adding-a-scenario.md"
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402


def words(texts):
    return [len(t.split()) + 2 for t in texts]


@pytest.fixture(scope="module")
def cls():
    registry.include(EXAMPLE)
    return registry.get("scenario", "flight-gates")


def test_the_guide_quotes_the_example_verbatim():
    source = EXAMPLE.read_text()
    guide = GUIDE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    assert len(blocks) >= 6
    for block in blocks:
        assert block.rstrip("\n") in source, block[:200]
    marked = re.findall(r"# --8<-- \[start:(\w+)\]", source)
    assert len(blocks) == len(marked)  # every marked part of the file is in the guide


def test_the_readme_links_the_guide():
    assert "docs/adding-a-scenario.md" in (ROOT / "README.md").read_text()


def test_harness_scenarios_lists_an_included_file():
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", "scenarios", "--include", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    assert "flight-gates  city_in_question=False" in p.stdout and "kv-retrieval" in p.stdout


def test_the_example_keeps_the_guides_promises(cls):
    sc = cls(seed=0)
    samples = sc.samples([300, 600], [0, 50, 100], 3, words)
    again = cls(seed=0).samples([300, 600], [0, 50, 100], 3, words)
    assert [s.model_dump() for s in samples] == [s.model_dump() for s in again]
    assert len(samples) == 18 and len({s.id for s in samples}) == 18
    for s in samples:
        assert s.context_tokens <= s.length
        (needle,) = [d for d in s.documents if d.id in s.gold_ids]
        assert f"gate {s.gold['gate']} at {s.gold['time']}." in needle.text and s.subject in s.question
        assert sum(s.subject in d.text for d in s.documents) == 1
        answer, reason = read_answer(json.dumps(wire_answer(sc, s.gold)), sc)
        assert reason is None and mark(sc, answer, s.gold)[1] == 1.0
        cell = [x for x in samples if x.length == s.length and x.needle_index == s.needle_index]
        assert {x.gold["gate"] + x.gold["time"] for x in cell} == {s.gold["gate"] + s.gold["time"]}
        assert len({tuple(d.id for d in x.documents if d.id not in x.gold_ids) for x in cell}) == 1
    first = [s for s in samples if s.depth == 0]
    last = [s for s in samples if s.depth == 100]
    assert all(s.documents[0].id in s.gold_ids for s in first)
    assert all(s.documents[-1].id in s.gold_ids for s in last)
    module = sys.modules[cls.__module__]
    codes = {split: {f[0] for f, _ in zip(module.flights(0, split), range(2000))} for split in module.SPLITS}
    assert not (codes["needles"] & codes["board"]) and not (codes["needles"] & codes["shots"])
    shot = sc.shots(2)
    assert all(d.text not in {x.text for s in samples for x in s.documents} for sh in shot for d in sh.documents)
    null = sc.null_answer(sc.reference_labels())
    assert set(null) == {"gate", "time"}
    g = sc.grounding()
    s = samples[0]
    other = next(d.text for d in s.documents if d.id not in s.gold_ids)
    assert g.supports("gate", s.gold["gate"], next(d.text for d in s.documents if d.id in s.gold_ids))
    assert not g.supports("gate", "Z99", other)


def test_compare_runs_the_included_scenario_end_to_end(tmp_path):
    """Through the CLI against the stand-in server (canned answers: every one invalid for this
    scenario, which is fine here: samples, records, summary and report are what is checked)."""
    out = tmp_path / "run"
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HARNESS_RESPONSE_CACHE=str(tmp_path / "cache"))
    with fake_openai.running() as url:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "compare",
                "--endpoint",
                url,
                "--model",
                fake_openai.MODEL,
                "--api",
                "completions",
                "--include",
                str(EXAMPLE),
                "--scenario",
                "flight-gates",
                "--lengths",
                "300",
                "--depths",
                "0,100",
                "--needles",
                "2",
                "-s",
                "full-context",
                "--shots",
                "1",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env=env,
        )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = RunStore(out).rows()
    assert len(rows) == 4 and {r["sample_id"] for r in rows} == {
        f"flight-gates/L300/d{d}/n{i}" for d in (0, 100) for i in (0, 1)
    }
    assert all(r["valid"] is False for r in rows)
    assert "null baseline" in p.stdout
    assert (out / "report.html").exists() and "flight · gold" in (out / "report.html").read_text()
    r = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]


def guide_command(start: str) -> list[str]:
    """The guide's shell line that starts with `start` (continuation lines joined, comment dropped), as argv."""
    text = re.sub(r"\s*\\\n\s*", " ", GUIDE.read_text())
    (line,) = [ln for ln in text.splitlines() if ln.startswith(start)]
    return shlex.split(line, comments=True)


def codes(texts) -> set[str]:
    return {c for t in texts for c in re.findall(r"\bflight ([A-Z]{2}-\d+)", t, re.IGNORECASE)}


def test_the_training_split_flies_airlines_no_test_flight_has(cls):
    test = cls(seed=0).samples([300, 600], [0, 50, 100], 3, words)
    train = cls(seed=0).split("train", seed=7)
    assert train.training and train.seed == 7 and not cls(seed=0).training
    assert cls(seed=0).split("test", seed=7).samples([300], [50], 1, words)[0].subject[0] in "QXZJ"
    seen = codes(d.text for s in test for d in s.documents)
    learned = codes(d.text for s in train.samples([300, 600], [0, 50, 100], 3, words) for d in s.documents)
    assert {c[0] for c in seen} <= set("QXZJ") and {c[0] for c in learned} <= set("MPRT") and learned
    with pytest.raises(UsageError, match="no 'dev' split"):
        cls(seed=0).split("dev")


def test_the_guides_finetune_command_trains_a_reader_on_the_training_split(cls, tmp_path):
    """The guide's quick `harness finetune` through the CLI (a few steps on short boards: no server);
    then what `compare --adapter` and a reader/ folder beside the scenario make of the adapter."""
    from harness.api import resolve_reader
    from harness.config import EndpointConfig
    from harness.finetune.data import prompt_form

    argv = guide_command("harness finetune --include docs/examples/flight_gates.py --scenario flight-gates --steps")
    out = tmp_path / "ft"
    argv[argv.index("--out") + 1] = str(out)
    steps = int(argv[argv.index("--steps") + 1])
    assert steps <= 3
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", *argv[1:]], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"harness compare --adapter {out}" in p.stdout
    for name in ("adapter_config.json", "adapter_model.safetensors", "finetune.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "finetune.json").read_text())
    assert info["scenario"] == "flight-gates" and info["steps"] == steps and info["examples"] >= steps
    assert info["served_name"] == "gemma-3-270m-flight-gates" and info["command"].startswith("harness finetune")
    assert info["config"]["data"]["includes"] == ["docs/examples/flight_gates.py"]
    assert info["eval_loss"] is not None  # the held-out loss: test-split boards drawn with other seeds
    scen = cls(seed=0)
    assert info["trained_on"] == [{"scenario": "flight-gates", "scenario_params": {}, "prompt_form": prompt_form(scen)}]

    # What it learned from: training boards only (airlines M, P, R, T), asked as compare asks.
    examples = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(examples) == info["examples"] and {e["split"] for e in examples} == {"train"}
    learned = codes(e["prompt"] for e in examples)
    assert learned and {c[0] for c in learned} <= set("MPRT")
    assert all(e["subject"][0] in "MPRT" for e in examples)
    test = cls(seed=0).samples([300, 600], [0, 100], 8, words)
    assert not learned & codes(d.text for s in test for d in s.documents)

    # compare --adapter DIR: this reader, zero-shot, its provenance recorded.
    reader = resolve_reader(EndpointConfig(adapter=str(out)), scen)
    assert reader.tuned and reader.provenance["scenario"] == "flight-gates" and reader.default_shots() == 0
    # A reader/ folder beside the scenario's file: its default reader (no --adapter, no --model).
    assert resolve_reader(EndpointConfig(), scen).tuned is False
    mine = tmp_path / "my_scenario"
    mine.mkdir()
    shutil.copy(EXAMPLE, mine / "flight_gates.py")
    shutil.copytree(out, mine / "reader", ignore=shutil.ignore_patterns("train.json*"))
    try:
        registry.include(mine / "flight_gates.py")
        own = registry.get("scenario", "flight-gates")(seed=0)
        reader = resolve_reader(EndpointConfig(), own)
        assert reader.tuned and reader.endpoint.adapter == str(mine / "reader")
    finally:
        registry.include(EXAMPLE)  # the module's scenario again, for the tests after this one
