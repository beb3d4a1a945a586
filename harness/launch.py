"""The model's endpoint: a given URL (or a pool of replicas), or a vLLM server the harness starts,
watches start and stops; `harness serve` keeps one up."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from harness.config import EndpointConfig
from harness.errors import HarnessError, UsageError
from harness.reader import shipped_reader
from harness.ui import console, err


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
        api = remote_api(ec.model) if ec.api == "auto" else ec.api
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


def planned_window(ec: EndpointConfig) -> tuple[int, int | None] | None:
    """(window, native window) of a server the harness would start, known before it starts:
    --max-model-len, else the model's native window from its config (the embedded model's own, or a
    local folder's). None where only a server can say: an --endpoint, a hub id, a RoPE factor alone."""
    from harness.endpoints import rope
    from harness.endpoints.embedded import embedded_model_dir, is_prepared
    from harness.endpoints.vllm_server import EMBEDDED_MAX_MODEL_LEN

    if ec.url:
        return None
    opts = server_options(ec)
    if opts.embedded:
        folder = str(embedded_model_dir()) if is_prepared() else None
    elif rope.is_local_model(str(ec.model)):
        folder = str(ec.model)
    else:
        return None
    path = rope.resolve_config_file(folder) if folder else None
    try:
        native = rope.native_max_len(json.loads(path.read_text())) if path else None
    except (OSError, ValueError):
        native = None
    if opts.embedded:
        native = native or EMBEDDED_MAX_MODEL_LEN
    if ec.max_model_len:
        return ec.max_model_len, native
    if ec.rope_factor is not None or ec.rope_scaling not in (None, "none"):
        return None  # a scaled window: the launch plan decides it
    return (native, native) if native else None


def refuse_unfit_lengths(lengths: list[int], ec: EndpointConfig) -> None:
    """A haystack longer than the window the server would get cannot be asked: refused before the
    server starts (minutes), not after; the runner checks every prompt again once it is served."""
    from harness.endpoints.rope import extend_hint

    planned = planned_window(ec)
    if planned is None or not lengths:
        return
    window, native = planned
    longest = max(lengths)
    if longest + ec.max_tokens > window:
        what = "the embedded model" if server_options(ec).embedded else str(ec.model)
        whence = "--max-model-len" if ec.max_model_len else "its native window, from its config"
        raise UsageError(
            f"--lengths {longest:,}: a {longest:,}-token haystack (+{ec.max_tokens} to answer) does not fit the "
            f"{window:,}-token window {what} would be served with ({whence}); "
            + extend_hint(window, longest + ec.max_tokens, native)
        )


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


def remote_api(model: str | None) -> str:
    """`--api auto` at --endpoint: completions for the embedded model and its tuned readers by name (what
    `harness serve` serves: a base model without a chat template, readers trained on completion prompts, so
    chat would ask them in bytes they never saw); chat for any other model."""
    from harness.endpoints.embedded import ours

    return "completions" if ours(model) else "chat"


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
