"""`harness finetune` and `harness data export-finetune` as the CLI runs them: the job, then what it
made, what it cost and how to use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.ui import console, err


def finetune(config, command: str = "", name: str | None = None) -> Path:
    """Train a LoRA adapter of the embedded model on a scenario's training split (harness.finetune);
    print where it is, what it cost and how to use it. `config` is a harness.finetune.config.FinetuneConfig."""
    from harness.finetune.merge import read_provenance
    from harness.finetune.run import finetune as run_finetune

    out = run_finetune(config, command=command, name=name)
    info = read_provenance(out)
    size = sum(f.stat().st_size for f in out.iterdir() if f.name.startswith("adapter_"))
    console.print(f"adapter: {out} ({size / 1e6:.1f} MB), {info['served_name']}")
    console.print(
        f"  {info['steps']} steps on {info['examples']} examples (data {info['data_hash'][:12]}) in "
        f"{info['train_seconds'] / 60:.1f} min; loss {info['final_loss']} (training), "
        f"{info['eval_loss']} (held-out test split)",
        highlight=False,
    )
    console.print(f"  harness compare --adapter {out}    (or `harness serve --adapter {out}`)")
    return out


def export_finetune(config) -> list[dict[str, Any]]:
    """Write fine-tuning examples as chat-format JSONL (harness.finetune.export); print token statistics."""
    from rich.table import Table

    from harness.finetune.export import export

    with err.status("building examples…"):
        stats = export(config)
    table = Table(title=f"{config.out}: tokens per split and length (embedded model's tokenizer)")
    for col in ("split", "length", "rows", "prompt mean", "prompt max", "answer mean", "answer max", "tokens"):
        table.add_column(col, justify="left" if col in ("split", "length") else "right")
    for r in stats:
        table.add_row(
            r["split"],
            r["length"],
            str(r["rows"]),
            f"{r['prompt_mean']:,}",
            f"{r['prompt_max']:,}",
            f"{r['answer_mean']:g}",
            str(r["answer_max"]),
            f"{r['tokens']:,}",
        )
    console.print(table)
    console.print(f"wrote {sum(r['rows'] for r in stats)} examples to {config.out}")
    return stats
