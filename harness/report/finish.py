"""The end of a compare (and `harness report`): prices, the verdict, ragas faithfulness, the summary
files, the tables and report.html — everything recomputed from the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.errors import Interrupted, UsageError
from harness.ui import console, err, progress_bar


class ReportOptions(BaseModel):
    """What the end of a compare (and `harness report`) adds to the records: prices, verdict, ragas.
    Constrained here, so a flag, a script and a test get the same one-line refusal."""

    model_config = ConfigDict(extra="forbid")

    prices: Path | None = None
    tolerance: float = Field(2.0, ge=0, le=100, description="accuracy points")
    # the verdict's level; None: the run's own (report/verdict.py verdict_level)
    alpha: float | None = Field(0.05, gt=0, lt=1)
    faithfulness: Literal["none", "ragas"] = "none"
    judge_endpoint: str | None = None
    judge_model: str | None = None
    judge_api: Literal["completions", "chat"] | None = None
    judge_api_key_env: str | None = None
    judge_concurrency: int = Field(2, ge=1)
    judge_max_tokens: int = Field(1024, ge=16)
    # auto: from the answer's fields for the embedded model and its readers, ragas's own prompt otherwise
    judge_statements: Literal["auto", "ragas", "fields"] = "auto"

    @model_validator(mode="after")
    def _judge_named(self) -> ReportOptions:
        if self.judge_endpoint and not self.judge_model:
            raise ValueError("--judge-endpoint needs --judge-model NAME")
        return self

    def check(self) -> ReportOptions:
        """A bad --prices file fails now, not after the run."""
        from harness.scoring.cost import load_prices

        load_prices(self.prices)
        return self

    def judge(self, url: str | None, model: str | None, api: str | None, api_key_env: str | None):
        """The judge: --judge-* if given, else the run's own endpoint (`url`, `model`, `api`)."""
        from harness.scoring.faithfulness import Judge

        if self.judge_endpoint:
            url, model, api, api_key_env = self.judge_endpoint, self.judge_model, "chat", None
        if not url or not model:
            raise UsageError("--faithfulness ragas needs a judge: --judge-endpoint URL --judge-model NAME")
        from harness.endpoints.embedded import ours

        url = url.rstrip("/")
        url = url if url.endswith("/v1") else url + "/v1"
        model = self.judge_model or model
        statements = self.judge_statements
        if statements == "auto":
            statements = "fields" if ours(model) else "ragas"
        return Judge(
            url=url,
            model=model,
            api=self.judge_api or api or "completions",
            api_key_env=self.judge_api_key_env or api_key_env,
            concurrency=self.judge_concurrency,
            max_tokens=self.judge_max_tokens,
            statements=statements,
        )


def run_faithfulness(store, scen, judge) -> None:
    """ragas Faithfulness for every record not judged yet, with a progress bar."""
    from harness.scoring.faithfulness import run_ragas

    records = store.latest_records()
    progress = progress_bar("tally")
    tally: dict[str, int] = {}
    task = progress.add_task(f"ragas judge ({judge.model})", total=len(records), tally="")
    err.print(
        f"[dim]ragas faithfulness: judge {judge.model} at {judge.url} ({judge.api}, statements from "
        f"{'the answer' if judge.statements == 'fields' else 'the judge'}), "
        f"{judge.concurrency} in flight, max_tokens {judge.max_tokens}[/dim]"
    )

    def on_result(row: dict[str, Any]) -> None:
        tally[row["status"]] = tally.get(row["status"], 0) + 1
        progress.update(task, advance=1, tally=" ".join(f"{k} {v}" for k, v in sorted(tally.items())))

    progress.start()
    try:
        counts = run_ragas(store.path, records, store.read_samples(), judge, on_result, scen)
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
