"""The end of a compare (and `harness report`): prices, the verdict, ragas faithfulness, the summary
files, the tables and report.html — everything recomputed from the run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import Interrupted, UsageError
from harness.ui import console, err, progress_bar


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
    from harness.scoring.faithfulness import run_ragas

    records = store.latest_records()
    progress = progress_bar("tally")
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
