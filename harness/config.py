"""The whole configuration of a run, as one pydantic model.

The CLI fills it, the run folder saves it as config.yaml, and `harness compare --config`
replays it. Secrets never enter it: an API key is named by its environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_STRATEGIES = ["full-context", "rag-dense"]
DEFAULT_LENGTHS = [1000, 2000, 4000]
DEFAULT_DEPTHS = [0.0, 25.0, 50.0, 75.0, 100.0]
BASE_SHOTS = 2  # few-shot examples for a reader that was not tuned on the task (a tuned one gets 0)


class EndpointConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="OpenAI-compatible base URL; None starts the embedded vLLM")
    # More URLs serving the same model (`--endpoint` given again): one pool with `url`, balanced by
    # least outstanding requests, with failover (harness/endpoints/pool.py).
    replicas: list[str] = Field(default_factory=list)
    replica_concurrency: int = Field(0, ge=0, description="requests in flight per replica; 0: concurrency / replicas")
    model: str | None = None
    api: Literal["auto", "completions", "chat"] = "auto"
    api_key_env: str | None = "OPENAI_API_KEY"
    max_model_len: int | None = None
    # A server the harness starts (no url): context extension and GPU settings; see
    # harness/endpoints/rope.py and vllm_server.ServerOptions.
    rope_scaling: Literal["yarn", "linear", "dynamic", "none"] | None = None
    rope_factor: float | None = None
    original_max_len: int | None = None
    revision: str | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    adapter: str | None = Field(
        None,
        description="a LoRA adapter folder from `harness finetune`, merged into the "
        "embedded model and served under its own name",
    )
    concurrency: int = Field(
        0,
        ge=0,
        description="requests in flight (the whole run, every replica); 0 picks a "
        "default per endpoint (8 per --endpoint)",
    )
    timeout_s: float = Field(600.0, gt=0, description="seconds per request attempt")
    max_retries: int = Field(3, ge=0)
    max_tokens: int = 160

    @property
    def urls(self) -> list[str]:
        return ([self.url] if self.url else []) + list(self.replicas)


class AdaptiveConfig(BaseModel):
    """`--until-decided`: needles are added in rounds, per length, until the verdict there is settled.

    Rounds double the needles (the run's `needles` first, then 2x, 4x, ... up to `max_needles`).
    The verdict's confidence sequences are anytime-valid (harness/sequential.py), so every round's
    look is at the run's alpha and stopping at the first decision buys no false certainty; no
    split of alpha over the looks is needed. Saved with the run, so a resume replays the same rounds.
    """

    model_config = ConfigDict(extra="forbid")

    max_needles: int = Field(32, ge=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    tolerance: float = Field(0.02, ge=0, le=1, description="accuracy (0-1) within which strategies count as equal")

    def schedule(self, first: int) -> list[int]:
        """Needles per cell after each round: first, 2*first, ... capped at max_needles."""
        out = [min(first, self.max_needles)]
        while out[-1] < self.max_needles:
            out.append(min(2 * out[-1], self.max_needles))
        return out

    def first_round(self) -> int:
        """The fewest needles with which round one could settle anything: a comparison whose every
        needle differs by the whole scale (d = 1) is decided at this many, and at no fewer."""
        from harness.sequential import confidence_sequence

        for n in range(1, self.max_needles + 1):
            if confidence_sequence([1.0] * n, self.alpha).p_zero < self.alpha:
                return n
        return self.max_needles


class ExecutorConfig(BaseModel):
    """Where the grid runs: here (`local`, the default) or on a Ray cluster (harness/ray_executor.py).
    Not part of what a run is: a run started on one executor may be resumed on the other."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(
        None,
        description="a running cluster (ray://host:10001, auto); None: "
        "$RAY_ADDRESS or a local cluster started for the run",
    )
    workers: int = Field(0, ge=0, description="Ray actors preparing and answering cells; 0: one per cluster CPU")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = "bio-needle"
    scenario_params: dict[str, Any] = Field(default_factory=dict)
    strategies: list[str] = Field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    lengths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: list(DEFAULT_LENGTHS))
    depths: list[Annotated[float, Field(ge=0, le=100)]] = Field(default_factory=lambda: list(DEFAULT_DEPTHS))
    needles: int = Field(2, ge=1)
    # None: the reader's default, decided (and saved as a number) when the run starts: 0 for a tuned
    # reader (trained zero-shot), BASE_SHOTS otherwise.
    shots: int | None = Field(None, ge=0)
    seed: int = 0
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    includes: list[str] = Field(default_factory=list)
    adaptive: AdaptiveConfig | None = None  # --until-decided; `needles` is then the first round
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    out: Path | None = None

    @model_validator(mode="after")
    def _first_round_fits(self) -> RunConfig:
        if self.adaptive is not None and self.needles > self.adaptive.max_needles:
            raise ValueError(
                f"--needles {self.needles} (the first round) is more than --max-needles {self.adaptive.max_needles}"
            )
        return self

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
