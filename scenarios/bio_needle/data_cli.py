"""The biography data commands, mounted under `harness data` by entry point (harness.data_commands).

Only arguments are parsed here; the work is in wikibio.py, labeling.py and inspect_html.py
(`harness data check` is the core's, dispatching to BioNeedle.check_files). Nothing heavy is imported at module level: `harness data --help` loads this.
"""

from __future__ import annotations

from pathlib import Path

import typer

from harness.plugin import UsageError


def import_wikibio_cmd(
    out: Path = typer.Option(..., "--out", help="folder for needles.jsonl, haystack.jsonl, anonymization.csv"),
    limit: int | None = typer.Option(None, "--limit", help="write at most N biographies"),
    source: Path | None = typer.Option(
        None,
        "--source",
        help="wiki_bio parquet/arrow files (a file or a folder), or JSONL with name and bio; default: the datasets library, when the Hub can be reached",
    ),
    needles: int = typer.Option(
        20, "--needles", help="the first N biographies go to needles.jsonl, the rest to haystack.jsonl"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the fake names"),
    dataset: str = typer.Option("michaelauli/wiki_bio", "--dataset", help="Hub dataset id (without --source)"),
    split: str = typer.Option("train", "--split", help="dataset split (without --source)"),
):
    """Import wiki_bio biographies: one person each, every mention of the name replaced by a fake one."""
    from harness.plugin import console, err
    from scenarios.bio_needle.wikibio import import_wikibio as run_import

    with err.status("importing…"):
        report = run_import(out, source=source, limit=limit, needles=needles, seed=seed, dataset=dataset, split=split)
    for line in report.lines():
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"wrote {out}/needles.jsonl, {out}/haystack.jsonl; per entry: {out}/anonymization.csv "
        "(maps source rows to fake names: keep it apart from the data you share)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    console.print(
        f"next: harness data label {out}/needles.jsonl   (needles need labels)", highlight=False, markup=False
    )


def label_cmd(
    target: Path = typer.Argument(..., help="a biography JSONL file, or a folder of them"),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="OpenAI-compatible URL; default: serve the embedded model"
    ),
    model: str | None = typer.Option(None, "--model", help="served model name at --endpoint"),
    api: str = typer.Option(
        "auto",
        "--api",
        help="completions (base models) or chat; default: completions for the embedded model, chat otherwise",
    ),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="environment variable holding the API key"),
    concurrency: int = typer.Option(4, "--concurrency", help="requests in flight"),
    shots: int = typer.Option(2, "--shots", help="synthetic worked examples in every prompt"),
    max_tokens: int = typer.Option(160, "--max-tokens", help="answer token limit"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds per request attempt"),
    max_retries: int = typer.Option(3, "--max-retries", help="retries on 429/5xx/timeouts"),
    audit: bool = typer.Option(
        False, "--audit", help="ask about the labeled biographies instead, write nothing, print the agreement per field"
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="ask even when the response cache holds the answer"),
):
    """Fill the labels of unlabeled biographies with a model (JSON-schema mode), in place."""
    from harness.plugin import EndpointConfig, console, open_model, progress_bar
    from scenarios.bio_needle.labeling import label as run_label
    from scenarios.bio_needle.labeling import label_paths

    if api not in ("auto", "completions", "chat"):
        raise UsageError("--api must be completions or chat")
    if concurrency < 1 or shots < 0 or max_tokens < 16 or timeout <= 0 or max_retries < 0:
        raise UsageError(
            "--concurrency must be at least 1, --shots 0 or more, --max-tokens at least 16, "
            "--timeout positive, --max-retries 0 or more"
        )
    paths = label_paths(target)  # a wrong path fails before any server starts
    total = sum(sum(1 for _ in open(p, encoding="utf-8", errors="replace")) for p in paths)
    ec = EndpointConfig(
        url=endpoint, model=model, api=api, api_key_env=api_key_env, timeout_s=timeout, max_retries=max_retries
    )
    with open_model(ec, use_cache=not no_cache) as (ep, cache), progress_bar(transient=True) as progress:
        task = progress.add_task("labels", total=total)
        report = run_label(
            target,
            ep,
            audit=audit,
            shots=shots,
            max_tokens=max_tokens,
            concurrency=concurrency,
            cache=cache,
            on_batch=lambda n: progress.update(task, advance=n),
        )
    for line in report.lines():
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def inspect_cmd(
    target: Path = typer.Argument(..., help="a biography JSONL file, or a folder of them"),
    out: Path | None = typer.Option(None, "--out", help="HTML file (default: FILE.html, or DIR/inspect.html)"),
    limit: int = typer.Option(500, "--limit", help="biographies shown per file"),
):
    """Write an HTML table of biographies and their labels to check by eye (self-contained, no script)."""
    from harness.plugin import console
    from scenarios.bio_needle.check import jsonl_files
    from scenarios.bio_needle.inspect_html import write_inspection

    if limit < 1:
        raise UsageError("--limit must be at least 1")
    paths = jsonl_files([target])
    out = out or (target / "inspect.html" if target.is_dir() else target.with_suffix(".html"))
    path, rows = write_inspection(paths, out, limit)
    console.print(f"wrote {path} ({rows:,} rows)", highlight=False, markup=False)
