"""A run folder beyond its records: the settings a compare starts from (a config file, or the folder
it resumes), opening an existing folder, the resume rule (one model per folder) and the side files
written beside the records (server metrics, replicas)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness import registry
from harness.build import build_scenario
from harness.errors import UsageError
from harness.runfiles import RunManifest, read_manifest
from harness.ui import err


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


def input_notes(scen) -> list[str]:
    """The scenario's notes on its inputs (normalised labels and the like), if it keeps any."""
    notes = getattr(scen, "input_notes", None)
    return list(notes()) if callable(notes) else []


def check_same_model(store, saved: RunManifest, identity) -> None:
    """A run folder holds one model's answers: resuming with another model is refused."""
    from harness.record import ModelIdentity

    known = saved.endpoint.identity
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


def open_run(run_dir: Path):
    """(store, scenario, RunManifest) of an existing run folder."""
    from harness.store import RunStore

    store = RunStore(run_dir)
    raw = store.read_config() if run_dir.is_dir() else None
    if not raw:
        raise UsageError(f"{run_dir}: not a run folder (no config.yaml)")
    if not store.records_path.exists():
        raise UsageError(f"{run_dir}: no records.jsonl yet")
    saved = read_manifest(run_dir, raw)
    for path in saved.config.includes:
        registry.include(path)
    return store, build_scenario(saved.config), saved
