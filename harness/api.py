"""What the CLI (and tests, and users' scripts) call: compare, report, recommend, serve, finetune, the listings.

Each function takes typed configuration (harness.config) and does the whole job; `harness/cli.py`
only turns flags into those objects. The work lives in one module per concept (build, reader,
launch, compare, runs, report.finish, listing, finetune.commands); this module names them in one
place and opens existing run folders for `report` and `recommend`.

    from harness import api
    from harness.config import RunConfig, EndpointConfig
    run_dir = api.compare(RunConfig(strategies=["full-context", "rag-dense"], lengths=[1000]))
    summary = api.report(run_dir)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.build import build_scenario, build_strategies, cache_dir, response_cache_path
from harness.compare import RECORDED_PACKAGES, adaptive_rounds, compare, run_manifest
from harness.config import EndpointConfig
from harness.errors import Interrupted, UsageError
from harness.finetune.commands import export_finetune, finetune
from harness.launch import default_api, launch_server, open_endpoint, serve, server_options, server_window, window_line
from harness.listing import describe_params, listing
from harness.reader import Reader, resolve_reader, shipped_reader
from harness.report.finish import ReportOptions, finish_report, run_faithfulness
from harness.runs import input_notes, load_config, open_run, save_replica_stats, save_server_metrics

__all__ = [
    "RECORDED_PACKAGES",
    "Interrupted",
    "Reader",
    "ReportOptions",
    "adaptive_rounds",
    "build_scenario",
    "build_strategies",
    "cache_dir",
    "compare",
    "default_api",
    "describe_params",
    "export_finetune",
    "finetune",
    "finish_report",
    "input_notes",
    "launch_server",
    "listing",
    "load_config",
    "open_endpoint",
    "open_run",
    "recommend",
    "report",
    "resolve_reader",
    "response_cache_path",
    "run_faithfulness",
    "run_manifest",
    "save_replica_stats",
    "save_server_metrics",
    "serve",
    "server_options",
    "server_window",
    "shipped_reader",
    "window_line",
]


# -- existing run folders ----------------------------------------------------------------------------
def report(run_dir: Path, opts: ReportOptions | None = None) -> dict[str, Any]:
    """Recompute the summary, the verdict and report.html of a run folder (ragas first, if asked)."""
    opts = (opts or ReportOptions()).check()
    store, scen, saved = open_run(run_dir)
    if opts.faithfulness == "ragas":
        asked = saved.config.endpoint
        if opts.judge_endpoint or asked.url:
            judge = opts.judge(asked.url, saved.endpoint.model, saved.endpoint.api, asked.api_key_env)
            run_faithfulness(store, scen, judge)
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
    from harness.runfiles import Summary
    from harness.scoring.cost import load_prices

    target = min_accuracy / 100 if min_accuracy > 1 else min_accuracy
    if not 0 <= target <= 1:
        raise UsageError("--min-accuracy must be between 0 and 1 (or 0-100 as a percentage)")
    if max_cost_per_1k is not None and max_cost_per_1k < 0:
        raise UsageError("--max-cost-per-1k must not be negative")
    store, scen, _ = open_run(run_dir)
    summary, _, _ = summarize_run(store, scen, prices=load_prices(prices))
    lines = recommend_lines(pick(summary, target, max_cost_per_1k), target, max_cost_per_1k)
    notes = (Summary.model_validate(summary).cost or {}).get("notes") or []
    return lines + [f"[dim]note: {note}[/dim]" for note in notes]
