"""The long-context arm's window on the real vLLM server (a `server` test): a length past the served window
is refused before any request, with the flags that would extend it. The path past the native window itself
(`--max-model-len 65536`, YaRN x2 implied, recorded as the server reports it, the server stopped after)
runs in tests/test_finetune_server.py on the tuned reader's server: one start for both.
"""

from __future__ import annotations

import httpx
import pytest

from harness.api import compare as run_compare
from harness.config import EndpointConfig, RunConfig
from harness.errors import UsageError

pytestmark = pytest.mark.server


def test_a_length_beyond_the_window_is_refused_before_any_request(vllm_server, tmp_path, monkeypatch):
    window = httpx.get(vllm_server.base_url + "/models", timeout=30).json()["data"][0]["max_model_len"]
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "cache.sqlite"))
    out = tmp_path / "run"
    config = RunConfig(
        strategies=["full-context"],
        lengths=[window + 1000],
        depths=[50.0],
        needles=1,
        shots=0,
        out=out,
        endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
    )
    with pytest.raises(UsageError) as e:
        run_compare(config, use_cache=False)
    msg = str(e.value)
    assert f"{window:,} tokens" in msg and "--max-model-len" in msg and "--rope-scaling yarn" in msg
    records = out / "records.jsonl"
    assert not records.exists() or not records.read_text().strip()
