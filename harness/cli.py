"""`harness`: compare long-context stuffing with retrieval on the same haystacks.

This module only parses arguments into typed configuration and calls `harness.api`. Every user
error ends as one line on stderr and a non-zero exit; tracebacks are for bugs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from harness import api as harness_api
from harness import registry
from harness.config import AdaptiveConfig, EndpointConfig, RunConfig
from harness.errors import HarnessError, UsageError
from harness.ui import console, err

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Long context or RAG? Measure both on the same data: field accuracy, grounding, cost per query.",
)


class DataGroup(TyperGroup):
    """`harness data`: the core's own data commands (`@data_app.command()`) plus those plug-ins declare
    in the `harness.data_commands` entry-point group, each imported only when it is run or listed."""

    def list_commands(self, ctx) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(registry.names("data_command")))

    def get_command(self, ctx, name: str):
        cmd = super().get_command(ctx, name)
        if cmd is None and name in registry.names("data_command"):
            cmd = plugin_command(name)
            self.add_command(cmd, name)
        return cmd


def plugin_command(name: str):
    """The click command of a registered data command: a typer-style function, a Typer app or a click command."""
    obj = registry.get("data_command", name)
    if isinstance(obj, typer.Typer):
        cmd = typer.main.get_command(obj)
    elif callable(obj) and not hasattr(obj, "main"):
        sub = typer.Typer(add_completion=False)
        sub.command(name=name)(obj)
        cmd = typer.main.get_command(sub)
    elif hasattr(obj, "main"):  # already a click command
        cmd = obj
    else:
        raise UsageError(f"data command {name!r} is neither a function nor a command")
    cmd.name = name
    return cmd


data_app = typer.Typer(
    cls=DataGroup,
    no_args_is_help=True,
    help="Data files of the scenarios: the core's commands (check, export-finetune) and those the scenarios' plug-ins add (import, label, inspect).",
)
app.add_typer(data_app, name="data")


# -- parsing helpers --------------------------------------------------------------------------
def parse_lengths(text: str) -> list[int]:
    """'1k,2k,4000' -> [1000, 2000, 4000] (k = 1000 tokens)."""
    out = []
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        mult = 1000 if part.endswith("k") else 1
        try:
            value = int(float(part.rstrip("k")) * mult)
        except ValueError:
            raise UsageError(f"--lengths: {part!r} is not a token count (e.g. 2000 or 2k)") from None
        if value <= 0:
            raise UsageError(f"--lengths: {part!r} must be positive")
        out.append(value)
    if not out:
        raise UsageError("--lengths: give at least one length")
    return sorted(set(out))


def parse_depths(text: str) -> list[float]:
    out = []
    for part in filter(None, (p.strip().rstrip("%") for p in text.split(","))):
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"--depths: {part!r} is not a percentage") from None
        if not 0 <= value <= 100:
            raise UsageError(f"--depths: {part!r} is outside 0-100")
        out.append(value)
    if not out:
        raise UsageError("--depths: give at least one depth")
    return sorted(set(out))


def split_strategies(values: list[str]) -> list[str]:
    """Comma-separated specs; a `key=value` item with no name belongs to the spec before it.

    'full-context,rag-dense:chunk_size=256,top_k=4' -> ['full-context', 'rag-dense:chunk_size=256,top_k=4']
    """
    specs: list[str] = []
    for value in values:
        for item in filter(None, (p.strip() for p in value.split(","))):
            if "=" in item and ":" not in item:
                if not specs:
                    raise UsageError(f"--strategies: {item!r} has no strategy before it")
                specs[-1] += ("," if ":" in specs[-1] else ":") + item
            else:
                specs.append(item)
    return specs


def parse_length_spec(text: str) -> tuple[list[int], bool]:
    """'256..2k' -> ([256, 2000], True): a range examples draw their lengths from (log-uniformly);
    '512,1k' -> ([512, 1000], False): a list they pick from."""
    if ".." in text:
        lo, _, hi = text.partition("..")
        a, b = parse_lengths(lo), parse_lengths(hi)
        if len(a) != 1 or len(b) != 1 or a[0] >= b[0]:
            raise UsageError(f"--lengths: {text!r} is not a range lo..hi with lo < hi (e.g. 256..2k)")
        return [a[0], b[0]], True
    return parse_lengths(text), False


def parse_kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"{what}: expected key=value, got {item!r}")
        out[k.strip()] = v.strip()
    return out


def deprecated_params(**flags: str | None) -> dict[str, str]:
    """Old flags that are now scenario parameters (`--haystack-file X` is `-P haystack_file=X`): mapped,
    with a note. The scenario checks them like any -P."""
    out = {k: v for k, v in flags.items() if v is not None}
    for k in out:
        err.print(f"[yellow]note:[/yellow] --{k.replace('_', '-')} is deprecated; use -P {k}=PATH", highlight=False)
    return out


# Options of a server the harness starts, shared by `compare` and `serve` (the same flags, the same words).
MaxModelLen = Annotated[
    Optional[int],
    typer.Option(
        "--max-model-len",
        help="context window of the started server; past the model's native window this implies YaRN (factor ceil(N/native))",
    ),
]
RopeScaling = Annotated[
    Optional[str],
    typer.Option(
        "--rope-scaling", help="RoPE scaling of the started server: yarn, linear, dynamic, or none (no implied YaRN)"
    ),
]
RopeFactor = Annotated[
    Optional[float], typer.Option("--rope-factor", help="RoPE scaling factor (window = original x factor)")
]
OriginalMaxLen = Annotated[
    Optional[int],
    typer.Option(
        "--original-max-len",
        help="the pre-training window the scaling starts from (default: the model's max_position_embeddings)",
    ),
]
Revision = Annotated[Optional[str], typer.Option("--revision", help="Hugging Face revision of --model")]
TensorParallelSize = Annotated[
    Optional[int], typer.Option("--tensor-parallel-size", help="GPUs to shard the model over")
]
GpuMemoryUtilization = Annotated[
    Optional[float], typer.Option("--gpu-memory-utilization", help="fraction of GPU memory vLLM may use (GPU build)")
]
Dtype = Annotated[
    Optional[str], typer.Option("--dtype", help="weights/activations dtype: auto, bfloat16, float16, float32")
]
Adapter = Annotated[
    Optional[Path],
    typer.Option(
        "--adapter", help="a LoRA adapter folder from `harness finetune`: served merged into the embedded model"
    ),
]


# The flags above, as `compare` and `serve` both take them: EndpointConfig's fields of the same names.
SERVER_FLAGS = (
    "max_model_len",
    "rope_scaling",
    "rope_factor",
    "original_max_len",
    "revision",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "dtype",
    "adapter",
)


def server_flags(flags: dict) -> dict:
    """The server options a command was given (`flags`: its parameters), as EndpointConfig fields."""
    given = {k: flags[k] for k in SERVER_FLAGS if flags[k] is not None}
    return given | ({"adapter": str(given["adapter"])} if "adapter" in given else {})


# Options of the report at the end of a compare and of `harness report` (the same flags, the same words).
Prices = Annotated[Optional[Path], typer.Option("--prices", help="YAML price table overriding the shipped one")]
Tolerance = Annotated[
    float, typer.Option("--tolerance", help="verdict: accuracy points within which the cheapest strategy counts")
]
Faithfulness = Annotated[
    str,
    typer.Option(
        "--faithfulness", help="none, or ragas: ragas Faithfulness through a judge endpoint (records not judged yet)"
    ),
]
JudgeEndpoint = Annotated[
    Optional[str],
    typer.Option("--judge-endpoint", help="OpenAI-compatible judge URL (default: the run's own endpoint)"),
]
JudgeModel = Annotated[Optional[str], typer.Option("--judge-model", help="judge model name (default: the run's model)")]
JudgeApi = Annotated[
    Optional[str],
    typer.Option("--judge-api", help="completions or chat (default: the run's API; chat for another --judge-endpoint)"),
]
JudgeApiKeyEnv = Annotated[
    Optional[str],
    typer.Option("--judge-api-key-env", help="environment variable holding the judge's API key"),
]
JudgeConcurrency = Annotated[int, typer.Option("--judge-concurrency", help="judge queries in flight")]
JudgeMaxTokens = Annotated[int, typer.Option("--judge-max-tokens", help="judge answer token limit")]
JudgeStatements = Annotated[
    str,
    typer.Option(
        "--judge-statements",
        help="ragas: the judge writes the statements (ragas's prompt); fields: one per field the answer claims, "
        "the judge gives verdicts only; auto: fields for the embedded model and its readers, else ragas",
    ),
]

# Where a model's field is set from: a pydantic error on it names this flag.
FLAG_OF = {
    "url": "--endpoint",
    "timeout_s": "--timeout",
    "kind": "--executor",
    "workers": "--ray-workers",
    "scenario_params": "--scenario-param",
    "includes": "--include",
}


def validated(model, data: dict):
    """`model` validated from `data`; the first error as one line naming its flag (a UsageError)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        msg = first.get("msg", "").replace("Value error, ", "")
        field = next((str(p) for p in reversed(first.get("loc", ())) if isinstance(p, str)), None)
        flag = FLAG_OF.get(field, f"--{field.replace('_', '-')}") if field else None
        raise UsageError(f"{flag}: {msg}" if flag else msg) from None


def report_options(flags: dict):
    """Checked ReportOptions from a command's flags (`compare` and `report` name them like its fields)."""
    return validated(harness_api.ReportOptions, {k: flags[k] for k in harness_api.ReportOptions.model_fields}).check()


# -- commands ----------------------------------------------------------------------------------------
@app.command()
def compare(
    strategies: list[str] = typer.Option(
        None, "--strategies", "-s", help="comma-separated, with parameters: rag-dense:chunk_size=256,top_k=4"
    ),
    scenario: str = typer.Option(None, "--scenario", help="scenario name (see `harness scenarios`)"),
    lengths: str = typer.Option(None, "--lengths", help="context lengths in the model's tokens: 1k,2k,4k"),
    depths: str = typer.Option(None, "--depths", help="needle depths in percent: 0,50,100"),
    needles: int = typer.Option(None, "--needles", help="needles per (length, depth) cell"),
    shots: int = typer.Option(
        None, "--shots", help="few-shot examples in every prompt (default: 0 for a tuned reader, 2 otherwise)"
    ),
    seed: int = typer.Option(None, "--seed"),
    scenario_param: list[str] = typer.Option(None, "--scenario-param", "-P", help="scenario option key=value"),
    endpoint: list[str] = typer.Option(
        None,
        "--endpoint",
        help="OpenAI-compatible URL; default: serve the embedded model. Give it again for replicas of the same model: requests go to the least busy, a lost replica's requests to the others",
    ),
    executor: Optional[str] = typer.Option(
        None, "--executor", help="local (default) or ray: grid cells on a Ray cluster, records written here"
    ),
    ray_address: Optional[str] = typer.Option(
        None,
        "--ray-address",
        help="--executor ray: a running cluster (auto, ray://HOST:10001); default: $RAY_ADDRESS or a local one",
    ),
    ray_workers: Optional[int] = typer.Option(
        None,
        "--ray-workers",
        help="--executor ray: actors preparing and answering cells (default: one per cluster CPU)",
    ),
    replica_concurrency: Optional[int] = typer.Option(
        None, "--replica-concurrency", help="requests in flight per replica (default: --concurrency / replicas)"
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="served model name at --endpoint; without --endpoint: a local folder or Hugging Face id to serve, gemma-3-270m (the embedded base) or a shipped tuned reader (default: the scenario's tuned reader, gemma-3-270m-<scenario>, else gemma-3-270m)",
    ),
    api: str = typer.Option(
        None,
        "--api",
        help="completions (base models) or chat; default: completions for the embedded model and its tuned readers (also by name at --endpoint), chat otherwise",
    ),
    api_key_env: str = typer.Option(None, "--api-key-env", help="environment variable holding the API key"),
    max_model_len: MaxModelLen = None,
    rope_scaling: RopeScaling = None,
    rope_factor: RopeFactor = None,
    original_max_len: OriginalMaxLen = None,
    revision: Revision = None,
    tensor_parallel_size: TensorParallelSize = None,
    gpu_memory_utilization: GpuMemoryUtilization = None,
    dtype: Dtype = None,
    adapter: Adapter = None,
    concurrency: int = typer.Option(
        None,
        "--concurrency",
        help="requests in flight (default: chosen for this CPU for the embedded model, 8 for --endpoint)",
    ),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds per request attempt (default 600)"),
    max_retries: Optional[int] = typer.Option(
        None, "--max-retries", help="retries of a request on 429/5xx/timeouts/connection errors (default 3)"
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="ask the model even when the response cache holds the answer"
    ),
    max_tokens: int = typer.Option(None, "--max-tokens", help="answer token limit"),
    include: list[Path] = typer.Option(None, "--include", help="Python file that registers scenarios/strategies"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="run folder (default results/<run-id>); an existing one is resumed"
    ),
    resume: Optional[Path] = typer.Option(None, "--resume", help="finish an interrupted run folder"),
    config_file: Optional[Path] = typer.Option(None, "--config", help="replay a run's config.yaml (flags override it)"),
    faithfulness: Faithfulness = "none",
    judge_endpoint: JudgeEndpoint = None,
    judge_model: JudgeModel = None,
    judge_api: JudgeApi = None,
    judge_api_key_env: JudgeApiKeyEnv = None,
    judge_concurrency: JudgeConcurrency = 2,
    judge_max_tokens: JudgeMaxTokens = 1024,
    judge_statements: JudgeStatements = "auto",
    prices: Prices = None,
    tolerance: Tolerance = 2.0,
    alpha: float = typer.Option(
        0.05, "--alpha", help="significance level of the verdict's paired tests (and of --until-decided)"
    ),
    until_decided: bool = typer.Option(
        False, "--until-decided", help="add needles in rounds, per length, until the verdict there is settled"
    ),
    max_needles: Optional[int] = typer.Option(
        None, "--max-needles", help="--until-decided: needles per cell at most (default 32)"
    ),
    haystack_file: Optional[str] = typer.Option(
        None, "--haystack-file", hidden=True, help="deprecated: -P haystack_file=PATH"
    ),
    needles_file: Optional[str] = typer.Option(
        None, "--needles-file", hidden=True, help="deprecated: -P needles_file=PATH"
    ),
):
    """Run every strategy over the same haystacks and print the comparison."""
    base = harness_api.load_config(config_file, resume)
    source = resume / "config.yaml" if resume else config_file
    try:
        RunConfig.model_validate(base)
    except Exception as e:
        raise UsageError(f"{source}: not a harness config ({str(e).splitlines()[0]})") from None
    if max_needles is not None and not until_decided and base.get("adaptive") is None:
        raise UsageError("--max-needles goes with --until-decided")
    if (ray_address or ray_workers) and (executor or (base.get("executor") or {}).get("kind")) != "ray":
        raise UsageError("--ray-address and --ray-workers go with --executor ray")
    # an --until-decided run's verdict tests at its own alpha (anytime-valid: no split over its looks)
    report = report_options(locals() | {"alpha": None if until_decided or base.get("adaptive") is not None else alpha})

    def given(**flags) -> dict:
        return {k: v for k, v in flags.items() if v is not None}

    data = base | given(
        scenario=scenario,
        strategies=split_strategies(strategies) if strategies else None,
        lengths=parse_lengths(lengths) if lengths else None,
        depths=parse_depths(depths) if depths else None,
        needles=needles,
        shots=shots,
        seed=seed,
        out=out,
        includes=[str(p) for p in include] if include else None,
    )
    data["endpoint"] = (
        (base.get("endpoint") or {})
        | given(
            url=endpoint[0] if endpoint else None,
            replicas=list(endpoint[1:]) if endpoint else None,
            replica_concurrency=replica_concurrency,
            model=model,
            api=api,
            api_key_env=api_key_env,
            concurrency=concurrency,
            max_tokens=max_tokens,
            timeout_s=timeout,
            max_retries=max_retries,
        )
        | server_flags(locals())
    )
    data["executor"] = (base.get("executor") or {}) | given(kind=executor, ray_address=ray_address, workers=ray_workers)
    data["scenario_params"] = (
        (base.get("scenario_params") or {})
        | deprecated_params(haystack_file=haystack_file, needles_file=needles_file)
        | parse_kv(scenario_param or [], "--scenario-param")
    )
    if until_decided or base.get("adaptive") is not None:
        now = dict(alpha=alpha, tolerance=tolerance / 100) if until_decided else {}
        data["adaptive"] = (base.get("adaptive") or {}) | now | given(max_needles=max_needles)
        if until_decided and needles is None and not base.get("adaptive"):  # the fewest that can settle
            data["needles"] = validated(AdaptiveConfig, data["adaptive"]).first_round()
    config = validated(RunConfig, data)
    harness_api.compare(config, use_cache=not no_cache, report=report)


@app.command()
def serve(
    model: Optional[str] = typer.Option(
        None, "--model", help="a local folder or Hugging Face id (default: the embedded gemma-3-270m)"
    ),
    max_model_len: MaxModelLen = None,
    rope_scaling: RopeScaling = None,
    rope_factor: RopeFactor = None,
    original_max_len: OriginalMaxLen = None,
    revision: Revision = None,
    tensor_parallel_size: TensorParallelSize = None,
    gpu_memory_utilization: GpuMemoryUtilization = None,
    dtype: Dtype = None,
    adapter: Adapter = None,
    log: Optional[Path] = typer.Option(None, "--log", help="server log file"),
    replicas: int = typer.Option(
        1,
        "--replicas",
        help="servers of the same model on their own ports (GPUs: tensor-parallel-size devices each, by CUDA_VISIBLE_DEVICES); use them with --endpoint given once per replica",
    ),
):
    """Serve a model (default: the embedded one; --model gemma-3-270m-<scenario> or --adapter DIR a tuned reader) on 127.0.0.1 until Ctrl-C; use its URL with `compare --endpoint`."""
    ec = validated(EndpointConfig, ({"model": model} if model else {}) | server_flags(locals()))
    harness_api.serve(ec, log, replicas)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run folder written by `harness compare`"),
    prices: Prices = None,
    tolerance: Tolerance = 2.0,
    alpha: Optional[float] = typer.Option(
        None,
        "--alpha",
        help="significance level of the verdict's paired tests (default 0.05, or the run's own --alpha for an --until-decided run, whose confidence sequences are anytime-valid)",
    ),
    faithfulness: Faithfulness = "none",
    judge_endpoint: JudgeEndpoint = None,
    judge_model: JudgeModel = None,
    judge_api: JudgeApi = None,
    judge_api_key_env: JudgeApiKeyEnv = None,
    judge_concurrency: JudgeConcurrency = 2,
    judge_max_tokens: JudgeMaxTokens = 1024,
    judge_statements: JudgeStatements = "auto",
):
    """Recompute the summary, the verdict and report.html of a run folder (no model calls unless --faithfulness ragas)."""
    harness_api.report(run_dir, report_options(locals()))


@app.command()
def recommend(
    run_dir: Path = typer.Argument(..., help="a run folder written by `harness compare`"),
    min_accuracy: float = typer.Option(..., "--min-accuracy", help="target mean field accuracy, 0-1 (or a percentage)"),
    max_cost_per_1k: Optional[float] = typer.Option(None, "--max-cost-per-1k", help="budget: $ per 1,000 queries"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="YAML price table overriding the shipped one"),
):
    """Per context length: the cheapest strategy that meets the accuracy target (and budget), or that none does."""
    for line in harness_api.recommend(run_dir, min_accuracy, max_cost_per_1k, prices):
        console.print(line, highlight=False, soft_wrap=True)


@app.command()
def finetune(
    scenario: str = typer.Option("bio-needle", "--scenario", help="scenario whose training split is learned"),
    lengths: str = typer.Option(
        "256..2k",
        "--lengths",
        help="haystack lengths in the model's tokens: a range lo..hi (drawn log-uniformly) or a list 512,1k",
    ),
    steps: int = typer.Option(None, "--steps", help="optimizer steps (default 200)"),
    batch: int = typer.Option(None, "--batch", help="examples per step (default 1)"),
    lr: float = typer.Option(None, "--lr", help="peak learning rate (default 1e-3)"),
    rank: int = typer.Option(None, "--rank", help="LoRA rank (default 16; alpha is twice the rank)"),
    strategies: list[str] = typer.Option(
        None, "--strategies", "-s", help="one-shot strategies showing the contexts, in turn (default full-context)"
    ),
    answerable_share: float = typer.Option(
        None,
        "--answerable-share",
        help="share of examples in the answerable (self-route) form, half of them without the needle (default 0.3)",
    ),
    seed: int = typer.Option(0, "--seed"),
    scenario_param: list[str] = typer.Option(None, "--scenario-param", "-P", help="scenario option key=value"),
    include: list[Path] = typer.Option(None, "--include", help="Python file that registers scenarios/strategies"),
    name: Optional[str] = typer.Option(
        None, "--name", help="served model name of the tuned reader (default gemma-3-270m-<scenario>)"
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="adapter folder (default results/finetune/<scenario>-<settings hash>); rerunning resumes it"
    ),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: every allowed CPU)"),
    no_bf16: bool = typer.Option(
        False,
        "--no-bf16",
        help="train in float32 (default: bfloat16 where the CPU computes it natively, float32 elsewhere)",
    ),
    recipe: Optional[Path] = typer.Option(
        None,
        "--config",
        help="a YAML file of every setting (harness.finetune.config.FinetuneConfig; e.g. a multi-scenario `mix`, "
        "as scenarios/reader/recipe.yaml); --steps/--out/--threads/--name/--no-bf16 still apply",
    ),
):
    """Tune the embedded model to read: LoRA on the scenario's training split (zero-shot prompts, loss on the answer)."""
    from harness.finetune.config import FinetuneConfig

    try:
        given = dict(steps=steps, batch=batch, lr=lr, rank=rank, alpha=2.0 * rank if rank else None, threads=threads)
        given = {k: v for k, v in given.items() if v is not None}
        if recipe is not None:
            config = FinetuneConfig.model_validate(
                _read_recipe(recipe) | given | ({"out": out} if out else {}) | ({"bf16": False} if no_bf16 else {})
            )
        else:
            data = _data_config(scenario, lengths, strategies, answerable_share, seed, scenario_param, include)
            config = FinetuneConfig(data=data, out=out, bf16=False if no_bf16 else None, **given)
    except ValueError as e:
        raise UsageError(f"finetune: {_first_error(e)}") from None
    harness_api.finetune(config, command=_command_line(), name=name)


def _read_recipe(path: Path) -> dict:
    """A finetune settings file (YAML), as a dict; a clear error when it cannot be read."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"finetune: --config {path}: {e}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"finetune: --config {path}: expected a mapping of settings")
    return raw


@data_app.command("check")
def data_check(
    files: list[Path] = typer.Argument(..., help="the scenario's data files (or folders of them)"),
    scenario: str = typer.Option(
        "bio-needle", "--scenario", help="whose files: bio-needle (biographies), qa (questions)"
    ),
    scenario_param: list[str] = typer.Option(
        None, "--scenario-param", "-P", help="scenario option key=value (qa: the column mapping)"
    ),
    include: list[Path] = typer.Option(None, "--include", help="Python file that registers scenarios"),
):
    """What a scenario's data files hold, every refused line or row named on a line of its own (no server)."""
    from harness.strategy import build_params

    for path in include or []:
        registry.include(path)
    cls = registry.get("scenario", scenario)
    params = build_params(cls.Params, parse_kv(scenario_param or [], "--scenario-param"), f"scenario {scenario}")
    lines, refusal = cls(params).check_files(files)
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if refusal:
        raise UsageError(refusal)


@data_app.command("export-finetune")
def export_finetune(
    scenario: str = typer.Option("bio-needle", "--scenario", help="scenario to export"),
    lengths: str = typer.Option("256..2k", "--lengths", help="haystack lengths: a range lo..hi or a list 512,1k"),
    n: int = typer.Option(1000, "--n", help="training examples"),
    test_n: int = typer.Option(None, "--test-n", help="held-out test-split examples (default n/10)"),
    strategies: list[str] = typer.Option(
        None, "--strategies", "-s", help="one-shot strategies showing the contexts (default full-context)"
    ),
    answerable_share: float = typer.Option(
        None, "--answerable-share", help="share in the answerable (self-route) form (default 0.3)"
    ),
    seed: int = typer.Option(0, "--seed"),
    scenario_param: list[str] = typer.Option(None, "--scenario-param", "-P", help="scenario option key=value"),
    include: list[Path] = typer.Option(None, "--include", help="Python file that registers scenarios/strategies"),
    out: Path = typer.Option(
        Path("train.jsonl"), "--out", help="JSONL file: chat messages, a split field (train/test)"
    ),
):
    """Write the fine-tuning examples `harness finetune` trains on as chat-format JSONL, with a held-out test split."""
    from harness.finetune.config import ExportConfig

    try:
        data = _data_config(scenario, lengths, strategies, answerable_share, seed, scenario_param, include)
        config = ExportConfig(data=data, n=n, test_n=max(1, n // 10) if test_n is None else test_n, out=out)
    except ValueError as e:
        raise UsageError(f"export-finetune: {_first_error(e)}") from None
    harness_api.export_finetune(config)


def _data_config(scenario, lengths, strategies, answerable_share, seed, scenario_param, include):
    """The training data `finetune` and `export-finetune` share (a ValueError when the flags do not fit)."""
    from harness.finetune.config import DataConfig

    values, is_range = parse_length_spec(lengths)
    given = dict(strategies=split_strategies(strategies) if strategies else None, answerable_share=answerable_share)
    return DataConfig(
        scenario=scenario,
        scenario_params=parse_kv(scenario_param or [], "--scenario-param"),
        includes=[str(p) for p in include or []],
        lengths=values,
        length_range=is_range,
        seed=seed,
        **{k: v for k, v in given.items() if v is not None},
    )


def _first_error(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(map(str, first.get("loc", ()))) or "value"
        return f"{where}: {first.get('msg', '')}".replace("Value error, ", "")
    return str(e).splitlines()[0]


def _command_line() -> str:
    import shlex

    return " ".join(["harness", *map(shlex.quote, sys.argv[1:])])


@app.command("scenarios")
def list_scenarios(
    include: list[Path] = typer.Option(None, "--include", help="Python file that registers scenarios/strategies"),
):
    """List registered scenarios (and those --include files register) and their parameters."""
    _print_listing(harness_api.listing("scenario", [str(p) for p in include or []]))


@app.command("strategies")
def list_strategies(
    include: list[Path] = typer.Option(None, "--include", help="Python file that registers scenarios/strategies"),
):
    """List registered strategies (and those --include files register) and their parameters."""
    _print_listing(harness_api.listing("strategy", [str(p) for p in include or []]))


def _print_listing(rows: list[tuple[str, str, str]]) -> None:
    for name, params, doc in rows:
        console.print(f"[bold]{name}[/bold]  {params}")
        if doc:
            console.print(f"  {doc}")


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(Abort, ClickException) classes of click and of the click copy newer typer vendors: a bad flag
    raises typer's own, which `click.ClickException` does not catch (it became a traceback)."""
    import click

    aborts: list[type] = [click.exceptions.Abort]
    usage: list[type] = [click.ClickException]
    try:
        from typer import _click as vendored
        from typer import exceptions as typer_exceptions

        usage.append(vendored.exceptions.ClickException)
        aborts.append(typer_exceptions.Abort)
    except (ImportError, AttributeError):
        pass
    return tuple(aborts), tuple(usage)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    aborts, usage = _click_errors()
    try:
        app(standalone_mode=False)
    except HarnessError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except aborts:
        err.print("interrupted; completed queries are saved — rerun with --resume RUN_DIR to finish")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted; completed queries are saved — rerun with --resume RUN_DIR to finish")
        sys.exit(130)
    except usage as e:
        e.show()
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
