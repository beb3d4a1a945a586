"""Context extension: turn --max-model-len / --rope-scaling / --rope-factor / --original-max-len
into the vLLM arguments that serve a model past its native window.

The overrides are built from the model's own config.json, in the form the serving stack reads:

* nested per layer type (Gemma 3 under transformers 5: `rope_parameters = {"full_attention": {...},
  "sliding_attention": {...}}`): the scaling goes on every layer type except sliding-window ones
  (a sliding layer never sees a distance beyond its window, so it needs no extension); each layer
  type keeps its own `rope_theta`. vLLM replaces a dict-valued override whole, so every layer
  type is written out.
* flat `rope_parameters` (Llama, Qwen, Mistral under transformers 5):
  `{"rope_type": "yarn", "factor": F, "original_max_position_embeddings": N0, "rope_theta": T}`.
* `rope_scaling` (vLLM before the rope_parameters rework / transformers 4):
  `{"rope_type": "yarn", "factor": F, "original_max_position_embeddings": N0}`; `rope_theta`
  stays where it is.
* a multimodal config whose language model sits under `text_config` gets the same overrides
  nested under `text_config` (vLLM updates a nested config key by key).

`max_position_embeddings` is raised to N0 x F only where vLLM would otherwise refuse the length:
vLLM 0.32 derives the window as max_position_embeddings x factor for linear/dynamic scaling, but
takes max_position_embeddings as already scaled for YaRN (and for every Gemma 3 model), so
`--max-model-len 65536` with YaRN needs `max_position_embeddings: 65536` (measured: without it
vLLM refuses the length). Dynamic NTK reads max_position_embeddings as the *original* length,
so it is never raised; where vLLM would then refuse (Gemma 3), dynamic is refused here with the
alternatives.

"One flag": `--max-model-len N` past the native window with no --rope-scaling implies YaRN with
factor ceil(N / native) (`ContextPlan.implied`, and a note saying so); `--rope-scaling none` turns
that off (vLLM then refuses the length, unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 is set).
Everything here is pure (no I/O) except `load_model_config` and `detect_rope_key`.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROPE_TYPES = ("yarn", "linear", "dynamic")
ROPE_CHOICES = ("yarn", "linear", "dynamic", "none")

# Keys that belong to a scaling type, dropped when the scaling is replaced.
_SCALING_KEYS = (
    "type",
    "rope_type",
    "factor",
    "original_max_position_embeddings",
    "low_freq_factor",
    "high_freq_factor",
    "short_factor",
    "long_factor",
    "beta_fast",
    "beta_slow",
    "attention_factor",
    "mscale",
    "mscale_all_dim",
    "truncate",
    "alpha",
    "max_trained_positions",
    "short_mscale",
    "long_mscale",
)


class RopeError(ValueError):
    """A context-extension request that cannot be served; the message says what to do instead."""


@dataclass(frozen=True)
class RopeRequest:
    """What the user asked for (all optional)."""

    max_model_len: int | None = None
    rope_scaling: str | None = None  # yarn | linear | dynamic | none
    factor: float | None = None
    original_max_len: int | None = None

    def wants_scaling(self) -> bool:
        return (
            bool(self.rope_scaling and self.rope_scaling != "none")
            or self.factor is not None
            or self.original_max_len is not None
        )


@dataclass
class ContextPlan:
    """The decision: the --max-model-len to pass and the --hf-overrides (None: none needed)."""

    max_model_len: int | None
    hf_overrides: dict[str, Any] | None = None
    native_max_len: int | None = None
    rope_type: str | None = None
    factor: float | None = None
    original_max_len: int | None = None
    implied: bool = False
    rope_key: str | None = None
    notes: list[str] = field(default_factory=list)

    def args(self) -> list[str]:
        """The vLLM arguments (after the model): --max-model-len N [--hf-overrides JSON]."""
        out: list[str] = []
        if self.max_model_len is not None:
            out += ["--max-model-len", str(int(self.max_model_len))]
        if self.hf_overrides:
            out += ["--hf-overrides", json.dumps(self.hf_overrides, separators=(",", ":"))]
        return out

    def describe(self) -> dict[str, Any]:
        """What goes into the run's config.yaml (with the server's own read-back beside it)."""
        return {
            "requested_max_model_len": self.max_model_len,
            "native_max_len": self.native_max_len,
            "rope_scaling": self.rope_type,
            "rope_factor": self.factor,
            "original_max_len": self.original_max_len,
            "implied": self.implied,
            "hf_overrides": self.hf_overrides,
        }


# ---------------------------------------------------------------------------------------- reading


def text_config(config: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(the language model's config, the key it sits under or None when top level)."""
    sub = config.get("text_config")
    if isinstance(sub, dict) and (
        "max_position_embeddings" in sub or "rope_parameters" in sub or "rope_theta" in sub or "rope_scaling" in sub
    ):
        return sub, "text_config"
    return config, None


def is_nested(rope_parameters: Any) -> bool:
    """Per layer type: every value is a dict (Gemma 3: full_attention / sliding_attention)."""
    return (
        isinstance(rope_parameters, dict)
        and bool(rope_parameters)
        and all(isinstance(v, dict) for v in rope_parameters.values())
    )


def native_max_len(config: dict[str, Any]) -> int | None:
    cfg, _ = text_config(config)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = cfg.get(key)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _rope_sets(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    rp = cfg.get("rope_parameters")
    if is_nested(rp):
        return list(rp.values())
    if isinstance(rp, dict) and rp:
        return [rp]
    rs = cfg.get("rope_scaling")
    return [rs] if isinstance(rs, dict) and rs else []


def existing_scaling(config: dict[str, Any]) -> dict[str, Any] | None:
    """The model's own non-default RoPE scaling (e.g. Llama 3.1's llama3), else None."""
    cfg, _ = text_config(config)
    for p in _rope_sets(cfg):
        kind = p.get("rope_type") or p.get("type") or "default"
        if kind != "default":
            return p
    return None


def has_rope(config: dict[str, Any]) -> bool:
    cfg, _ = text_config(config)
    return bool(_rope_sets(cfg)) or "rope_theta" in cfg or cfg.get("rope_parameters") is not None


# ------------------------------------------------------------------------------------------- plan


def _fmt(n: float) -> str:
    return f"{n:g}"


def _vllm_multiplies(model_type: str, rope_type: str) -> bool:
    """Whether vLLM 0.32 derives the window as max_position_embeddings x factor (config/model.py:
    `_get_and_verify_max_len`): not for YaRN-like types, and never for Gemma 3."""
    return rope_type in ("linear", "dynamic") and "gemma3" not in model_type


def plan_context(
    config: dict[str, Any] | None,
    request: RopeRequest,
    *,
    rope_key: str = "rope_parameters",
    model_name: str = "the model",
) -> ContextPlan:
    """Decide --max-model-len and --hf-overrides for `request` on a model with this config.json.

    Raises RopeError with a one-line fix when the request cannot be served.
    """
    req = request
    if req.rope_scaling is not None and req.rope_scaling not in ROPE_CHOICES:
        raise RopeError(f"--rope-scaling must be one of {', '.join(ROPE_CHOICES)}, not {req.rope_scaling!r}")
    if req.max_model_len is not None and req.max_model_len <= 0:
        raise RopeError(f"--max-model-len must be positive, not {req.max_model_len}")
    if req.factor is not None and not (isinstance(req.factor, (int, float)) and req.factor > 1):
        raise RopeError(f"--rope-factor must be above 1, not {req.factor}")
    if req.original_max_len is not None and req.original_max_len <= 0:
        raise RopeError(f"--original-max-len must be positive, not {req.original_max_len}")
    if req.rope_scaling == "none" and (req.factor is not None or req.original_max_len is not None):
        raise RopeError("--rope-scaling none cannot take --rope-factor or --original-max-len")

    if config is None:
        if req.wants_scaling():
            raise RopeError(
                f"cannot read the config.json of {model_name}, which RoPE scaling is built from; "
                "give --model a local folder (or a Hugging Face id in the local cache)"
            )
        return ContextPlan(max_model_len=req.max_model_len)

    native = native_max_len(config)
    plan = ContextPlan(max_model_len=req.max_model_len, native_max_len=native, rope_key=rope_key)
    rope_type = req.rope_scaling if req.rope_scaling in ROPE_TYPES else None
    if (
        rope_type is None
        and req.rope_scaling != "none"
        and (req.factor is not None or req.original_max_len is not None)
    ):
        rope_type = "yarn"  # --rope-factor alone: YaRN, the usual choice
    beyond = native is not None and req.max_model_len is not None and req.max_model_len > native
    own = existing_scaling(config)

    if rope_type is None:
        if not beyond or req.rope_scaling == "none":
            if beyond:
                plan.notes.append(
                    f"--max-model-len {req.max_model_len:,} is past the native {native:,}-token window with "
                    "--rope-scaling none: vLLM refuses it unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"
                )
            return plan
        if own is not None:
            kind = own.get("rope_type") or own.get("type")
            raise RopeError(
                f"--max-model-len {req.max_model_len:,} is past {model_name}'s {native:,}-token window, which "
                f"already uses {kind} RoPE scaling; choose the new scaling explicitly: --rope-scaling yarn "
                f"--rope-factor F --original-max-len N (N = the pre-training length)"
            )
        rope_type = "yarn"
        plan.implied = True

    if not has_rope(config):
        raise RopeError(
            f"{model_name} has no RoPE parameters in its config.json: its window cannot be extended with RoPE scaling"
        )
    if native is None and req.original_max_len is None:
        raise RopeError(f"{model_name}'s config.json names no max_position_embeddings: give --original-max-len")

    original = req.original_max_len
    if original is None:
        prior = own.get("original_max_position_embeddings") if own else None
        original = int(prior) if isinstance(prior, (int, float)) and prior > 0 else native
    factor = req.factor
    if factor is None:
        if req.max_model_len is None:
            raise RopeError(f"--rope-scaling {rope_type} needs --rope-factor F or --max-model-len N")
        factor = float(max(2, math.ceil(req.max_model_len / original)))
    factor = float(factor)
    covered = int(original * factor)
    target = req.max_model_len if req.max_model_len is not None else covered
    if target > covered:
        need = math.ceil(target / original)
        raise RopeError(
            f"--rope-factor {_fmt(factor)} over {original:,} tokens covers {covered:,}, short of --max-model-len "
            f"{target:,}: use --rope-factor {need} or more"
        )
    plan.max_model_len = target
    plan.rope_type, plan.factor, plan.original_max_len = rope_type, factor, original

    cfg, under = text_config(config)
    model_type = str(cfg.get("model_type") or config.get("model_type") or "")
    overrides: dict[str, Any] = {}
    vllm_window = (native or original) * (factor if _vllm_multiplies(model_type, rope_type) else 1)
    if target > vllm_window:
        if rope_type == "dynamic":
            raise RopeError(
                f"vLLM takes {model_name}'s max_position_embeddings as already scaled, which dynamic NTK "
                "scaling reads as the original length: use --rope-scaling yarn (or linear) instead"
            )
        overrides["max_position_embeddings"] = covered

    def scaled(base: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in base.items() if k not in _SCALING_KEYS}
        out["rope_type"] = rope_type
        out["factor"] = factor
        if rope_type == "yarn":
            out["original_max_position_embeddings"] = original
        return out

    rp = cfg.get("rope_parameters")
    if rope_key == "rope_parameters":
        if is_nested(rp):
            new = {}
            for layer_type, params in rp.items():
                keep = "sliding" in layer_type  # local attention: distances stay under its window
                new[layer_type] = copy.deepcopy(params) if keep else scaled(params)
            if all("sliding" in k for k in rp):
                raise RopeError(f"{model_name} has only sliding-window attention layers: nothing to extend")
        else:
            base = dict(rp) if isinstance(rp, dict) else {}
            if "rope_theta" not in base and isinstance(cfg.get("rope_theta"), (int, float)):
                base["rope_theta"] = cfg["rope_theta"]
            if "rope_theta" not in base:
                base["rope_theta"] = 10000.0  # transformers' default when a config names none
            new = scaled(base)
        overrides["rope_parameters"] = new
    elif rope_key == "rope_scaling":
        overrides["rope_scaling"] = scaled({})
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown rope_key {rope_key!r}")

    plan.hf_overrides = {under: overrides} if under else overrides
    if plan.implied:
        plan.notes.append(
            f"--max-model-len {target:,} is past {model_name}'s native {native:,}-token window: extending it with "
            f"YaRN, factor {_fmt(factor)} (= --rope-scaling yarn --rope-factor {_fmt(factor)} --original-max-len "
            f"{original}; --rope-scaling none turns this off)"
        )
    else:
        plan.notes.append(
            f"RoPE scaling {rope_type}, factor {_fmt(factor)} over {original:,} tokens: window {target:,} tokens"
        )
    return plan


def extend_hint(window: int | None = None, needed: int | None = None, native: int | None = None) -> str:
    """How to serve a longer window (for the refusal of a too-long length)."""
    n = needed or (2 * window if window else 65536)
    n = 1 << max(0, (int(n) - 1).bit_length())  # next power of two
    base = native or window
    factor = max(2, math.ceil(n / base)) if base else 2
    return (
        f"serve a longer window: `--max-model-len {n}` (past the native window this implies "
        f"`--rope-scaling yarn --rope-factor {factor}`), or drop that length"
    )


# ------------------------------------------------------------------------------------------- I/O


def detect_rope_key() -> str:
    """`rope_parameters` when the installed vLLM reads it (the transformers 5 era), else `rope_scaling`.

    Reads vLLM's source text instead of importing it (an import costs seconds); without vLLM the
    installed transformers decides (5 and later: rope_parameters).
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        src = Path(spec.origin).parent / "transformers_utils" / "config.py"
        try:
            return "rope_parameters" if "rope_parameters" in src.read_text(errors="replace") else "rope_scaling"
        except OSError:
            pass
    try:
        from importlib.metadata import version

        return "rope_parameters" if int(version("transformers").split(".")[0]) >= 5 else "rope_scaling"
    except Exception:
        return "rope_parameters"


def is_local_model(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().is_dir()


def resolve_config_file(model: str, revision: str | None = None) -> Path | None:
    """config.json of a local folder, or of a Hugging Face id (downloaded unless HF_HUB_OFFLINE)."""
    if is_local_model(model):
        p = Path(model).expanduser() / "config.json"
        return p if p.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, "config.json", revision=revision))
    except Exception:
        return None


def load_model_config(model: str, revision: str | None = None, rope_key: str = "rope_parameters") -> dict | None:
    """The model's config as the serving stack sees it, or None when it cannot be read.

    A config.json already in the transformers-5 form (rope_parameters) is used as is; an older one is
    loaded through transformers' AutoConfig, which converts it the way vLLM will (e.g. a legacy Gemma 3
    `rope_theta` + `rope_local_base_freq` becomes nested per-layer-type rope_parameters).
    """
    path = resolve_config_file(model, revision)
    if path is None:
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    cfg, _ = text_config(raw)
    if rope_key != "rope_parameters" or "rope_parameters" in cfg:
        return raw
    try:  # legacy config.json under transformers 5: let transformers normalise it
        from transformers import AutoConfig

        loaded = AutoConfig.from_pretrained(str(path.parent), local_files_only=True).to_dict()
        return loaded if isinstance(loaded, dict) else raw
    except Exception:
        return raw


def snapshot_revision(path: str | os.PathLike) -> str | None:
    """The commit of a Hugging Face cache snapshot folder (`.../snapshots/<sha>/...`), else None."""
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part == "snapshots" and len(parts[i + 1]) >= 7:
            return parts[i + 1]
    return None
