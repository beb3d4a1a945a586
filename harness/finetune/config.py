"""What `harness finetune` and `harness data export-finetune` were asked, as pydantic models.

Saved with the adapter (`finetune.json`), so the adapter says how it was made and an interrupted
run resumes only with the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class DataConfig(BaseModel):
    """Which training examples: the scenario's training split, shown and prompted as `compare` does."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = "bio-needle"
    scenario_params: dict[str, Any] = Field(default_factory=dict)
    includes: list[str] = Field(default_factory=list)
    lengths: list[int] = Field(default_factory=lambda: [256, 2000])
    length_range: bool = Field(
        True,
        description="True: each example's length is drawn log-uniformly between "
        "the two lengths; False: one of the lengths",
    )
    strategies: list[str] = Field(
        default_factory=lambda: ["full-context"],
        description="one-shot strategies that show the training contexts, in turn",
    )
    questions: int = Field(8, ge=1, description="questions asked of one full context (one forward pass)")
    answerable_share: float = Field(
        0.3,
        ge=0,
        le=1,
        description="share of contexts asked in the answerable form "
        "(self-route); half the questions about absent people",
    )
    balance: float = Field(
        0.5,
        ge=0,
        le=1,
        description="1: every combination of the boolean answer fields equally often; 0: as the split draws them",
    )
    retrieved_answerable: bool = Field(
        False,
        description="answerable-form contexts shown by a retriever keep their partial views: a context that "
        "cut part of the gold documents (needle coverage below 1) is a not-answerable example (self-route's "
        "decision on retrieved chunks); off: such a view is drawn again",
    )
    absent_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="answerable form, one question a context (a retriever's): share of those asked about a person "
        "of another draw, absent from the context (the rest: present)",
    )
    partial_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="with retrieved_answerable: share of answerable-form contexts drawn again until the retriever "
        "cut the asked person's gold documents (a partial view: not answerable). At default top_k such views are "
        "rare (8 of 52 contexts), and a reader shown so few said answerable whenever the person was there; 0: as drawn",
    )
    agent_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of contexts made into agent trajectories (search the subject, read the hit, answer; "
        "then the answer over what was read), in the exact bytes of the agent strategy's action prompts; 0: none",
    )
    agent_recovery: float = Field(
        0.5, ge=0, le=1, description="share of trajectories that open with a search that misses (recovery)"
    )
    agent: str = Field("agentic:driver=json", description="the strategy whose action protocol is demonstrated")
    judge_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of contexts made into ragas Faithfulness judge examples (its statement prompt and its "
        "verdict prompt, targets from the grounding rules: harness.finetune.judge); 0: none",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _lengths(self):
        if self.partial_share > 0 and not self.retrieved_answerable:
            raise ValueError("partial_share needs retrieved_answerable (partial views are kept only then)")
        if not self.lengths or any(n < 1 for n in self.lengths):
            raise ValueError("lengths must be positive token counts")
        if self.length_range and len(self.lengths) != 2:
            raise ValueError("a length range is two lengths, lo..hi")
        self.lengths = sorted(self.lengths)
        return self


class MixPart(BaseModel):
    """Another scenario (or form of one) trained into the same adapter: a multi-task reader."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig
    share: float = Field(gt=0, lt=1, description="share of the training contexts drawn from this part")


class FinetuneConfig(BaseModel):
    """One LoRA training run of the embedded model."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    mix: list[MixPart] = Field(
        default_factory=list,
        description="other scenarios learned by the same adapter, each a share of the contexts; `data` has the "
        "rest. One merged model then reads every one of them (served once)",
    )
    steps: int = Field(
        200,
        ge=1,
        description="optimizer steps (a step on 2 cores: 4.1 s with AMX, 5.2-8.3 s with AVX512-BF16, 8.5 s in float32 on AVX2)",
    )
    batch: int = Field(1, ge=1, description="contexts per step (gradients accumulated), each with its questions")
    lr: float = Field(1e-3, gt=0)
    warmup: int = Field(20, ge=0, description="steps of linear warm-up; then linear decay to 10%")
    decision_weight: float = Field(
        10.0,
        ge=1,
        description="loss weight of the answer's true/false tokens: each decides a whole field, one token among "
        "~40 (at 1 the reader learned only the prior; docs/finetune.md)",
    )
    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    targets: list[str] = Field(default_factory=lambda: list(LORA_TARGETS))
    bf16: bool | None = Field(
        None,
        description="frozen base in bfloat16, matmuls under bfloat16 autocast (LoRA factors and "
        "optimizer stay float32); False: everything float32; None: bfloat16 where the CPU computes "
        "it natively (AVX512-BF16, AMX), float32 elsewhere (torch emulates bf16 there, several "
        "times slower); decided when the config is made, so finetune.json records the choice",
    )
    eval_n: int = Field(16, ge=0, description="test-split contexts whose answer loss is reported at the end")
    checkpoint_every: int = Field(25, ge=1)
    threads: int | None = Field(None, description="torch threads; default: every allowed CPU")
    out: Path | None = None

    @model_validator(mode="after")
    def _bf16_from_cpu(self):
        if self.bf16 is None:
            from harness.endpoints.cpu import read_facts

            self.bf16 = read_facts().native_bf16
        return self

    @model_validator(mode="after")
    def _shares(self):
        if sum(p.share for p in self.mix) >= 1:
            raise ValueError("the mix's shares must leave some contexts to the main data (they sum to 1 or more)")
        return self

    @property
    def examples(self) -> int:
        return self.steps * self.batch

    def parts(self, n: int) -> list[tuple[DataConfig, int]]:
        """(data, contexts) of every part for n contexts in all: each mixed part its share (rounded), the
        main data the rest."""
        mixed = [(p.data, max(1, round(p.share * n))) if n else (p.data, 0) for p in self.mix]
        return [(self.data, max(0, n - sum(k for _, k in mixed))), *mixed]

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the interrupted one (not where it writes, nor threads). An
        empty mix is left out, so single-scenario adapters keep the identity they were made with."""
        exclude = {"out", "threads", "checkpoint_every"} | (set() if self.mix else {"mix"})
        return self.model_dump(mode="json", exclude=exclude)


class ExportConfig(BaseModel):
    """`harness data export-finetune`: the same examples as training, as chat-format JSONL."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    n: int = Field(1000, ge=1, description="training contexts (each asked up to `questions` questions, a row each)")
    test_n: int = Field(100, ge=0, description="held-out contexts from the test split")
    out: Path = Path("train.jsonl")
