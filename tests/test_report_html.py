"""report.html: self-contained, deterministic, escaped — and checked in a real headless Chromium.

`make_run` builds a small synthetic run folder (real bio-needle samples, hand-made records for a
full-context arm and a fake retrieval arm, one record carrying an HTML/JS injection payload);
the other report tests import it.

The Chromium test needs Debian's `chromium` + `chromium-driver` (scripts/setup.sh installs them
when run as root) and selenium (the dev extra). Without them it skips — except in CI (CI=true) and under .ci/run (HARNESS_REQUIRE_BROWSER=1),
where it fails. It saves a full-page screenshot under results/test-artifacts/ (or
$HARNESS_TEST_ARTIFACTS) and prints the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.config import RunConfig
from harness.store import RunStore
from scenarios.bio_needle import BioNeedle

PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
NAT_PAYLOAD = "<img src=x onerror=alert(1)>"
LENGTHS, DEPTHS = [300, 600], [0.0, 50.0, 100.0]
STRATEGIES = ["full-context", "rag-fake:top_k=2"]


def _count(texts):
    return [max(1, len(t) // 4) for t in texts]


def _chunks(sample, size=240):
    """Fixed character windows over the joined corpus, with the documents each overlaps."""
    joined = "\n\n".join(d.text for d in sample.documents)
    spans, pos = [], 0
    for d in sample.documents:
        spans.append((pos, pos + len(d.text), d.id))
        pos += len(d.text) + 2
    out = []
    for i, start in enumerate(range(0, len(joined), size)):
        text = joined[start : start + size]
        ids = [d for a, b, d in spans if a < start + len(text) and b > start]
        out.append({"id": f"c{i}", "doc_ids": ids, "text": text, "start": start})
    return out


def make_run(tmp_path: Path, model: str = "gemma-3-270m", payload: bool = True, needles: int = 1) -> Path:
    scen = BioNeedle(seed=0)
    samples = scen.samples(LENGTHS, DEPTHS, needles, _count)
    run = tmp_path / "run"
    store = RunStore(run).create()
    config = RunConfig(strategies=STRATEGIES, lengths=LENGTHS, depths=DEPTHS, needles=needles, shots=0)
    store.write_config(
        {
            "run_id": "test-run",
            "config": config.dump(),
            "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": model, "api": "completions"},
            "null_answer": scen.null_answer(scen.reference_labels(200)),
        }
    )
    store.write_samples(samples)
    lines = []
    for k, s in enumerate(samples):
        needle = next(d for d in s.documents if d.id in s.gold_ids)
        other = next((d for d in s.documents if d.id not in s.gold_ids), None)  # None: the needle fills the length
        other_nat = (
            "martian"
            if other is None
            else next(
                r.labels for i, r in enumerate(scen.generator.records("haystack", 400)) if f"h{i}" == other.id
            ).nationality
        )
        for strategy in STRATEGIES:
            fc = strategy == "full-context"
            if fc:
                pieces = [{"id": d.id, "doc_ids": [d.id], "rank": None, "score": None} for d in s.documents]
                retrieval = {}
                shown = True
            else:
                chunks = _chunks(s)
                hit = [c for c in chunks if needle.id in c["doc_ids"]][:1]
                miss = s.depth == 50.0  # the fake retriever misses the needle at mid depth
                picked = ([] if miss else hit) + [c for c in chunks if needle.id not in c["doc_ids"]][
                    : 2 if miss else 1
                ]
                pieces = [
                    {"id": c["id"], "doc_ids": c["doc_ids"], "text": c["text"], "rank": i, "score": 1.0 - i / 10}
                    for i, c in enumerate(picked)
                ]
                shown = not miss
                retrieval = {
                    "needle_retrieved": shown,
                    "needle_rank": 0 if shown else None,
                    "chunks": len(pieces),
                    "tokens_retrieved": sum(len(p["text"]) // 4 for p in pieces),
                }
            answer = json.loads(json.dumps(s.gold))
            raw_override = None
            if s.depth == 50.0:
                answer["nationality"] = other_nat if other_nat != "unknown" else "martian"
                answer["date_of_birth"] = {"day": 1, "month": 1, "year": 1111}
            if s.depth == 100.0 and fc:
                answer["sportsperson"] = not answer["sportsperson"]
            if payload and s.length == LENGTHS[-1] and s.depth == 100.0:
                if fc:
                    raw_override = PAYLOAD  # not JSON: an invalid answer, shown verbatim
                else:
                    answer["nationality"] = NAT_PAYLOAD
            raw = raw_override if raw_override is not None else json.dumps(answer)
            valid = raw_override is None
            marks = scen.score(answer, s.gold) if valid else {f: False for f in scen.fields}
            prompt_tokens = (s.context_tokens + 300) if fc else 260
            lines.append(
                {
                    "run_id": "test-run",
                    "scenario": "bio-needle",
                    "strategy": strategy,
                    "strategy_name": strategy.split(":")[0],
                    "strategy_params": {},
                    "sample_id": s.id,
                    "length": s.length,
                    "depth": s.depth,
                    "needle_index": s.needle_index,
                    "needle_id": s.gold_ids[0],
                    "subject": s.subject,
                    "context_tokens": s.context_tokens,
                    "prompt_tokens": prompt_tokens,
                    "prompt_tokens_counted": prompt_tokens,
                    "completion_tokens": 60,
                    "cached_tokens": 200 if k else 0,
                    "latency_s": round((0.002 * prompt_tokens) + 0.5, 4),
                    "finish_reason": "stop",
                    "raw": raw,
                    "answer": answer if valid else None,
                    "valid": valid,
                    "invalid_reason": None if valid else "not JSON: Expecting value",
                    "error": None,
                    "gold": s.gold,
                    "marks": marks,
                    "score": sum(marks.values()) / len(marks),
                    "shown": {
                        "pieces": pieces,
                        "doc_ids": [d for p in pieces for d in p["doc_ids"]],
                        "needle_shown": shown,
                        "retrieval": retrieval,
                    },
                    "time": 1_700_000_000 + k,
                }
            )
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def _report(run: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(run), *args], capture_output=True, text=True, timeout=300
    )


# -- without a browser ---------------------------------------------------------------------------------
def test_report_command_writes_a_self_contained_escaped_page(tmp_path):
    run = make_run(tmp_path)
    p = _report(run)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "verdict" in p.stdout and "report:" in p.stdout
    html = (run / "report.html").read_text()
    # self-contained: nothing to fetch
    for needle in ("http://", "https://", 'src="//', "@import", "url("):
        assert needle not in html.replace("http://127.0.0.1:9/v1", "").replace('xmlns="http://www.w3.org/2000/svg"', "")
    # every piece of model output escaped
    assert PAYLOAD not in html and NAT_PAYLOAD not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert html.count("<script") == 1  # the page's own
    assert "Content-Security-Policy" in html
    assert html.count('class="heatmap"') == len(STRATEGIES)
    assert html.count("<tr data-strategy=") == len(STRATEGIES) * len(LENGTHS) * len(DEPTHS)


def test_report_is_regenerated_identically(tmp_path):
    run = make_run(tmp_path)
    assert _report(run).returncode == 0
    first = (run / "report.html").read_bytes()
    summary = (run / "summary.json").read_text()
    assert _report(run).returncode == 0
    assert (run / "report.html").read_bytes() == first
    assert (run / "summary.json").read_text() == summary


def test_report_sections_hold_the_numbers(tmp_path):
    from harness.report.html import write_report
    from harness.report.summary import summarize_run

    run = make_run(tmp_path)
    summary, records, samples = summarize_run(RunStore(run), BioNeedle())
    html = write_report(run, summary, records, samples, BioNeedle()).read_text()
    for section in ("verdict", "heatmaps", "accuracy", "cost", "errors", "faithfulness", "per-query"):
        assert f'id="{section}"' in html
    assert 'id="acc-vs-length"' in html
    assert 'class="front"' in html  # the Pareto front is marked
    assert "distractor" in html and "hallucination" in html and "misread" in html
    for v in summary["verdict"]:
        assert v["best"] in html


def test_report_command_prints_and_draws_intervals(tmp_path):
    """Three needles: every accuracy in the tables carries its interval, the chart its error bars,
    the heatmap cells their interval and needles, the verdict its tests."""
    import re

    run = make_run(tmp_path, needles=3)
    p = _report(run)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    tables = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert tables and max(len(line) for line in tables) <= 160  # piped: tables pasteable at 160 columns
    assert "field accuracy (%) with 95% intervals over needles" in out
    assert "per-field accuracy (%) with 95% intervals over needles" in out
    assert (
        "verdict (mean field accuracy [95% interval over needles]; paired comparisons (anytime-valid confidence sequences; "
        "one error rate for every claim at a length), alpha 0.05; "
        "cheapest within 2 points of the best when the data shows it)" in out
    )
    summary = json.loads((run / "summary.json").read_text())
    from harness.report.verdict import interval

    for r in summary["by_strategy"]:
        assert r["n_needles"] == 3
        assert f"{100 * r['accuracy']:.1f} {interval(r['accuracy_lo'], r['accuracy_hi'])}" in out
    html = (run / "report.html").read_text()
    assert html.count('<g class="errbar"') == len(summary["by_strategy_length"])
    for y_lo, y_hi in re.findall(r'<line class="err" x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)" y2="([\d.]+)"/>', html):
        assert float(y_lo) >= float(y_hi)  # lo drawn below hi
    cells = re.findall(r'<rect class="cell"[^>]*><title>([^<]*)</title>', html)
    assert len(cells) == len(summary["by_cell"]) and all("95% interval [" in t and "3 needles" in t for t in cells)
    assert html.count('<table class="comparisons"') == len(LENGTHS)
    assert html.count('<tr class="cmp st-') == len(LENGTHS) * (len(STRATEGIES) - 1)
    assert "p = " in html and "confidence sequence" in html


# -- in Chromium ----------------------------------------------------------------------------------------
def _need(what: str):
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} is required in CI (scripts/setup.sh installs chromium and chromium-driver as root)")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need("selenium (pip install -e '.[dev]')")
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        _need("chromium and chromedriver (apt-get install -y chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="harness-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-default-apps",
        f"--user-data-dir={profile}",
        "--window-size=1440,1000",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)  # no Selenium Manager download
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def artifacts_dir() -> Path:
    d = Path(
        os.environ.get("HARNESS_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "results" / "test-artifacts"
    )
    d.mkdir(parents=True, exist_ok=True)
    return d


def open_report(driver, path: Path) -> list[dict]:
    """Load the page, wait for its script, return the console messages."""
    driver.get_log("browser")  # drop anything from before
    driver.get(path.resolve().as_uri())
    deadline = time.time() + 20
    while driver.execute_script("return document.documentElement.getAttribute('data-ready')") != "1":
        assert time.time() < deadline, "the report's script never ran"
        time.sleep(0.05)
    time.sleep(0.2)
    return driver.get_log("browser")


def full_page_screenshot(driver, path: Path) -> Path:
    import base64

    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def check_rendered(driver, n_strategies: int, n_cells: int, n_rows: int) -> None:
    js = driver.execute_script
    heatmaps = js(
        "return Array.from(document.querySelectorAll('svg.heatmap')).map("
        "s => [s.getBoundingClientRect().width, s.querySelectorAll('rect.cell').length])"
    )
    assert len(heatmaps) == n_strategies
    assert all(w > 50 and cells == n_cells for w, cells in heatmaps), heatmaps
    assert js("return document.querySelector('#acc-vs-length').getBoundingClientRect().height") > 100
    assert js("return document.querySelectorAll('svg.scatter').length") >= 2
    assert js("return document.querySelectorAll('#queries tbody tr').length") == n_rows
    assert js("return document.querySelector('#queries').getBoundingClientRect().height") > 100


def test_report_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By

    run = make_run(tmp_path)
    assert _report(run).returncode == 0
    logs = open_report(browser, run / "report.html")
    errors = [m for m in logs if m.get("level") in ("SEVERE", "ERROR")]
    assert errors == [], errors
    n_rows = len(STRATEGIES) * len(LENGTHS) * len(DEPTHS)
    check_rendered(browser, len(STRATEGIES), len(LENGTHS) * len(DEPTHS), n_rows)
    js = browser.execute_script

    # the injected payload is text, and did not run
    assert js("return typeof window.__pwned") == "undefined"
    assert js("return document.querySelectorAll('img').length") == 0
    text = js("return document.body.innerText")
    assert PAYLOAD in text and NAT_PAYLOAD in text

    # the table sorts ...
    score_th = browser.find_element(By.XPATH, "//table[@id='queries']/thead/tr/th[normalize-space()='score']")
    score_th.click()
    col = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#queries thead th")].index(score_th.text)
    scores = js(
        f"return Array.from(document.querySelectorAll('#queries tbody tr')).map(r => parseFloat(r.cells[{col}].getAttribute('data-v')))"
    )
    assert scores == sorted(scores)
    score_th.click()
    scores = js(
        f"return Array.from(document.querySelectorAll('#queries tbody tr')).map(r => parseFloat(r.cells[{col}].getAttribute('data-v')))"
    )
    assert scores == sorted(scores, reverse=True)
    # ... and filters
    visible = "return Array.from(document.querySelectorAll('#queries tbody tr')).filter(r => !r.hidden).length"
    browser.find_element(By.ID, "f-wrong").click()
    wrong = js(visible)
    assert 0 < wrong < n_rows
    browser.find_element(By.ID, "f-wrong").click()
    browser.find_element(By.ID, "f-text").send_keys("<script>")
    assert js(visible) == 1
    assert browser.find_element(By.ID, "f-count").text == "1"
    assert [m for m in browser.get_log("browser") if m.get("level") in ("SEVERE", "ERROR")] == []

    shot = full_page_screenshot(browser, artifacts_dir() / "report_html_synthetic.png")
    print(f"\nreport screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_intervals_render_in_chromium(browser, tmp_path):
    """Error bars drawn (visible height), comparisons listed, and still no console or CSP errors."""
    run = make_run(tmp_path, needles=3)
    assert _report(run).returncode == 0
    logs = open_report(browser, run / "report.html")
    assert [m for m in logs if m.get("level") in ("SEVERE", "ERROR")] == []
    js = browser.execute_script
    caps = js(
        "return Array.from(document.querySelectorAll('#acc-vs-length g.errbar line.cap')).map("
        "l => l.getBoundingClientRect().width)"
    )
    assert len(caps) == 2 * len(STRATEGIES) * len(LENGTHS) and all(w > 4 for w in caps)  # drawn, two caps a bar
    assert js("return document.querySelectorAll('table.comparisons tr.cmp').length") == len(LENGTHS) * (
        len(STRATEGIES) - 1
    )
    text = js("return document.getElementById('verdict').innerText")
    assert "confidence sequence" in text and "p = " in text and "settled" in text
    shot = full_page_screenshot(browser, artifacts_dir() / "report_html_intervals.png")
    print(f"\nreport screenshot: {shot}")


@pytest.mark.server
def test_real_compare_writes_report_and_verdict(vllm_server, tmp_path, browser):
    """A real (tiny) run on the embedded model: the verdict prints and the report renders cleanly."""
    out = tmp_path / "real"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "compare",
            "--endpoint",
            vllm_server.base_url,
            "--model",
            vllm_server.model,
            "--api",
            "completions",
            "--strategies",
            "full-context,rag-bm25:top_k=2",
            "--lengths",
            "400,800",
            "--depths",
            "0,100",
            "--needles",
            "1",
            "--shots",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "verdict" in p.stdout and "most accurate" in p.stdout and "money" in p.stdout
    assert (out / "report.html").exists()
    logs = open_report(browser, out / "report.html")
    assert [m for m in logs if m.get("level") in ("SEVERE", "ERROR")] == []
    check_rendered(browser, 2, 4, 8)
    shot = full_page_screenshot(browser, artifacts_dir() / "report_html_real_run.png")
    print(f"\nreport screenshot: {shot}")
