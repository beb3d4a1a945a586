"""`harness data export-finetune`: the examples `harness finetune` trains on, as chat-format JSONL.

One object a line:
    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}],
     "prompt": ..., "completion": ...,   # the same example for completion-style (base model) trainers
     "split": "train" | "test", "meta": {scenario, form, needle_shown, strategy, length, depth, ...}}

"train" rows come from the scenario's training split (exactly `harness finetune`'s data for the same
settings and seed); "test" rows from its test split, whose people never appear in training. Rows of
one `meta.group` share their context (several questions asked of one full context).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.finetune.config import DataConfig, ExportConfig
from harness.finetune.data import Example, ExampleBuilder, build_scenario, build_strategies


def row(example: Example, scenario: str) -> dict[str, Any]:
    meta = example.model_dump(
        include={
            "group",
            "form",
            "needle_shown",
            "strategy",
            "length",
            "depth",
            "context_tokens",
            "subject",
            "sample_id",
            "seed",
        }
    )
    return {
        "messages": example.chat(),
        "prompt": example.prompt,
        "completion": example.target,
        "split": example.split,
        "meta": {"scenario": scenario, **meta},
    }


def length_bucket(length: int, data: DataConfig) -> str:
    """The length itself for a list of lengths; for a range, the doubling band from its low end it falls in."""
    if not data.length_range:
        return f"{length:,}"
    lo, hi = data.lengths
    k = int(math.log2(max(length, lo) / lo)) if length >= lo else 0
    a, b = lo * 2**k, min(hi, lo * 2 ** (k + 1))
    return f"{a:,}-{b:,}"


def token_stats(examples: Sequence[Example], data: DataConfig, tokenizer) -> list[dict[str, Any]]:
    """Per split and length band: rows, and mean/max of prompt tokens (as the server counts them,
    with <bos>) and of answer tokens (with <eos>)."""
    groups: dict[tuple[str, str], list[Example]] = {}
    for e in examples:
        groups.setdefault((e.split, length_bucket(e.length, data)), []).append(e)
    out = []
    for (split, band), rows in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "train", min(e.length for e in kv[1]))
    ):
        prompt = [len(ids) for ids in tokenizer([e.prompt for e in rows]).input_ids]
        answer = [len(ids) + 1 for ids in tokenizer([e.target for e in rows], add_special_tokens=False).input_ids]
        out.append(
            {
                "split": split,
                "length": band,
                "rows": len(rows),
                "prompt_mean": round(statistics.mean(prompt)),
                "prompt_max": max(prompt),
                "answer_mean": round(statistics.mean(answer), 1),
                "answer_max": max(answer),
                "tokens": sum(prompt) + sum(answer),
            }
        )
    return out


def export(config: ExportConfig) -> list[dict[str, Any]]:
    """Write the JSONL file; return the token statistics (one dict per split and length band)."""
    from transformers import AutoTokenizer

    from harness.build import cache_dir
    from harness.endpoints.embedded import prepare_embedded_model
    from harness.finetune.run import local_counter

    base = prepare_embedded_model()
    data = config.data
    scen = build_scenario(data)
    count = local_counter(base)
    builder = ExampleBuilder(scen, data, count, build_strategies(data.strategies, cache_dir(), count))
    examples = builder.build(config.n, "train") + builder.build(config.test_n, "test")
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as fh:
        for e in examples:
            fh.write(json.dumps(row(e, data.scenario), ensure_ascii=False) + "\n")
    tmp.replace(out)
    return token_stats(examples, data, AutoTokenizer.from_pretrained(str(base)))
