"""Real biographies end to end on the real embedded model: label, then a bio-needle compare.

Labeling is measured on generated biographies whose true labels are known (the agreement per
field is printed: the 270M base model is a poor labeller, and the number says how poor). The end
to end test takes files as people have them — a wiki_bio-style parquet file, an unlabeled
haystack, needles with LLM-written labels — through check, import-wikibio (anonymization), label
and `harness.api.compare` on a one-cell grid. Server work: 8 + 3 labeling requests, 3 queries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import api
from harness.config import EndpointConfig, RunConfig
from harness.store import RunStore
from scenarios.bio_needle import BioNeedle
from scenarios.bio_needle.generator import BioGenerator
from scenarios.bio_needle.labeling import label
from scenarios.bio_needle.loader import load_jsonl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from wikibio_rows import HAND, generated, write_parquet  # noqa: E402

pytestmark = pytest.mark.server


def _endpoint(vllm_server):
    return api.open_endpoint(EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"))


def _harness(*args: str, env: dict, log: list[str]) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900
    )
    log.append(f"$ harness {' '.join(args)}\n{p.stdout}{p.stderr}")
    return p


def test_labeling_generated_biographies_agrees_with_the_truth_as_printed(vllm_server, tmp_path, monkeypatch):
    from harness.endpoints.cache import ResponseCache

    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "cache.sqlite"))
    people = BioGenerator(seed=31).records("needles", 8)
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(r.to_json_line() + "\n" for r in people))
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({"name": r.name, "bio": r.bio}) + "\n" for r in people))
    scenario = BioNeedle()
    with _endpoint(vllm_server) as (ep, _), ResponseCache(tmp_path / "cache.sqlite") as cache:
        filled = label(bare, ep, cache=cache, concurrency=2, shots=2)
        audit = label(truth, ep, cache=cache, concurrency=2, shots=2, audit=True)
    print("\n".join(filled.lines() + audit.lines()))
    assert filled.labelled + filled.failed == 8 and filled.skipped == 0 and filled.from_cache == 0
    assert audit.from_cache == 8  # the same requests: answered from the cache, no model call
    assert truth.read_text() == "".join(r.to_json_line() + "\n" for r in people)  # audit writes nothing
    got = {r.name: r.labels for r in load_jsonl(bare)}
    assert len([lab for lab in got.values() if lab is not None]) == filled.labelled
    assert all(
        json.loads(line).get("labeled_by") == vllm_server.model
        for line in bare.read_text().splitlines()
        if "json" in json.loads(line)
    )
    # the printed agreement is the written labels' agreement with the truth, field by field
    if filled.labelled:
        assert audit.compared == filled.labelled
        for f in scenario.fields:
            agree = sum(
                scenario.score(got[r.name].model_dump(), r.labels.model_dump())[f]
                for r in people
                if got[r.name] is not None
            )
            assert audit.agreement[f] == pytest.approx(agree / filled.labelled)


def test_real_style_files_through_check_import_label_and_compare(vllm_server, tmp_path, monkeypatch, capsys):
    env = {**os.environ, "HARNESS_RESPONSE_CACHE": str(tmp_path / "cache.sqlite"), "COLUMNS": "200"}
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", env["HARNESS_RESPONSE_CACHE"])
    log: list[str] = []
    # 1. what a person has: a wiki_bio-style parquet file (hand-written edge cases and 30 more people)
    gen = generated(30, seed=41)
    source = write_parquet(tmp_path / "train-00000-of-00001.parquet", [r for r, _ in HAND] + [r for r, _ in gen])
    data = tmp_path / "data"
    p = _harness(
        "data", "import-wikibio", "--source", str(source), "--out", str(data), "--needles", "3", env=env, log=log
    )
    assert p.returncode == 0
    assert "read 39 entries; wrote 34 (3 needles, 31 haystack)" in p.stdout
    assert "entries where the original name still occurs: 0" in p.stdout
    # 2. check: the imported files are clean; the needles still need labels
    p = _harness("data", "check", str(data / "haystack.jsonl"), str(data / "needles.jsonl"), env=env, log=log)
    assert p.returncode == 0 and "needles need labels" in p.stdout
    # 3. label the imported needles with the embedded model
    p = _harness(
        "data",
        "label",
        str(data / "needles.jsonl"),
        "--endpoint",
        vllm_server.base_url,
        "--model",
        vllm_server.model,
        "--api",
        "completions",
        "--concurrency",
        "2",
        env=env,
        log=log,
    )
    assert p.returncode == 0 and "labelled" in p.stdout
    labelled = [r for r in load_jsonl(data / "needles.jsonl") if r.labels is not None]
    # 4. needles as an LLM writes labels, in the published form, ahead of the model-labeled ones
    known = BioGenerator(seed=43).records("needles", 2)
    needles = tmp_path / "needles.jsonl"
    with open(needles, "w") as fh:
        for r in known:
            lab = r.labels.model_dump()
            fh.write(
                json.dumps(
                    {
                        "name": r.name,
                        "bio": r.bio,
                        "json": {
                            "nationality": f" {lab['nationality'].title()} ",
                            "date_of_birth": {k: (str(v) if v else None) for k, v in lab["date_of_birth"].items()},
                            "date_of_death": lab["date_of_death"] if any(lab["date_of_death"].values()) else None,
                            "sportsperson": "yes" if lab["sportsperson"] else "no",
                            "politician": "true" if lab["politician"] else "false",
                        },
                    }
                )
                + "\n"
            )
        for r in labelled:
            fh.write(r.to_json_line() + "\n")
    p = _harness("data", "check", str(needles), env=env, log=log)
    assert p.returncode == 0 and "2 biographies, first on line 1" in p.stdout
    # 5. a one-cell compare on the real server: the unlabeled, anonymized haystack and those needles
    n = 2 + min(1, len(labelled))
    out = tmp_path / "run"
    capsys.readouterr()
    api.compare(
        RunConfig(
            strategies=["full-context"],
            lengths=[1000],
            depths=[50.0],
            needles=n,
            shots=1,
            out=out,
            scenario_params={"haystack_file": str(data / "haystack.jsonl"), "needles_file": str(needles)},
            endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
        )
    )
    printed = capsys.readouterr()
    with capsys.disabled():  # what each step printed (pytest -s shows it)
        print("\n".join(log) + printed.err[-3000:] + printed.out[:3000])
    config = yaml.safe_load((out / "config.yaml").read_text())
    source_line = f"needle labels of {2 + len(labelled)} biographies; haystack unlabeled"
    assert config["null_source"] == source_line
    assert any(
        "date parts: numbers written as strings (2 biographies, first on line 1)" in note
        for note in config["input_notes"]
    )
    assert f"note: {needles}: booleans written as words" in " ".join(printed.err.split())
    records = RunStore(out).latest_records()
    assert len(records) == n and all(r.error is None for r in records)
    assert [r.gold for r in sorted(records, key=lambda r: r.needle_index)][:2] == [r.labels.model_dump() for r in known]
    haystack_names = {r.name for r in load_jsonl(data / "haystack.jsonl")}
    sample = RunStore(out).read_samples()[0]
    assert all(d.id.startswith("n") or d.id.startswith("h") for d in sample.documents)
    assert haystack_names and len(sample.documents) > 3
    assert f"null baseline ({source_line})" in " ".join(printed.out.split())
    assert f"({source_line})" in (out / "report.html").read_text()
