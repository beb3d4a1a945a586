"""A grid longer than the window a started server would get is refused before the server starts
(minutes of start-up otherwise, then the runner's refusal): the window comes from --max-model-len or
the model's own config, not from a running server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import api, launch
from harness.config import EndpointConfig, RunConfig
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_cli_refuses_100k_on_the_embedded_model_in_one_line_without_a_server(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", "compare", "--lengths", "100k", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 2, p.stderr
    assert "does not fit the 32,768-token window the embedded model" in p.stderr
    assert "--max-model-len 131072" in p.stderr  # the fix, with the YaRN factor it implies
    assert "starting vLLM" not in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "r").exists()


def test_no_server_is_started_for_an_unfit_grid(tmp_path, monkeypatch):
    def no_server(*a, **k):
        raise AssertionError("a server was started for a grid that cannot fit its window")

    monkeypatch.setattr(launch, "launch_server", no_server)
    with pytest.raises(UsageError, match="100,000-token haystack"):
        api.compare(RunConfig(strategies=["full-context"], lengths=[1000, 100_000], out=tmp_path / "x"))
    with pytest.raises(UsageError, match="--max-model-len"):  # a window asked for, still too short
        api.compare(RunConfig(lengths=[40_000], endpoint=EndpointConfig(max_model_len=32_768), out=tmp_path / "y"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_planned_window_comes_from_the_flag_or_the_models_config(tmp_path):
    assert launch.planned_window(EndpointConfig()) == (32_768, 32_768)
    assert launch.planned_window(EndpointConfig(max_model_len=131_072)) == (131_072, 32_768)
    launch.refuse_unfit_lengths([100_000], EndpointConfig(max_model_len=131_072))  # fits: no refusal
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 4096}))
    assert launch.planned_window(EndpointConfig(model=str(folder))) == (4096, 4096)
    with pytest.raises(UsageError, match=f"4,096-token window {folder}"):
        launch.refuse_unfit_lengths([4000], EndpointConfig(model=str(folder)))
    # only the server can say: another's endpoint, a RoPE factor without --max-model-len
    assert launch.planned_window(EndpointConfig(url="http://127.0.0.1:9/v1", model="m")) is None
    assert launch.planned_window(EndpointConfig(rope_factor=4.0)) is None
