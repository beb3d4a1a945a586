"""Money per query, the verdict, and `harness recommend`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_report_html import make_run

from harness.errors import UsageError
from harness.report.verdict import recommend, recommend_lines, verdict, verdict_lines
from harness.scoring.cost import cost_summary, find_price, fmt_money, load_prices, query_cost


# -- prices ---------------------------------------------------------------------------------------------
def test_shipped_table_and_overrides(tmp_path):
    table = load_prices()
    assert table["gemma-3-270m"]["gpu_hour"] > 0
    assert table["gpt-4o-mini"]["input"] < table["gpt-4o-mini"]["output"]
    f = tmp_path / "p.yaml"
    f.write_text("models:\n  gemma-3-270m: {gpu_hour: 4.0}\n  my-model: {input: 1, output: 2}\n")
    table = load_prices(f)
    assert table["gemma-3-270m"] == {"gpu_hour": 4.0} and table["my-model"]["output"] == 2
    for bad in (
        "nope: 1\n",
        "models:\n  x: {input: 1}\n",
        "models:\n  x: {gpu_hour: -1}\n",
        "models: [1]\n",
        "models:\n  x: {input: '1', output: 2}\n",
        ": : :\n",
    ):
        f.write_text(bad)
        with pytest.raises(UsageError):
            load_prices(f)
    with pytest.raises(UsageError):
        load_prices(tmp_path / "missing.yaml")


def test_model_names_match_sensibly():
    table = load_prices()
    assert find_price("gpt-4o-mini", table).model == "gpt-4o-mini"
    assert find_price("GPT-4o-Mini", table).model == "gpt-4o-mini"
    assert find_price("openai/gpt-4o-mini", table).model == "gpt-4o-mini"
    assert find_price("gpt-4o-2024-08-06", table).model == "gpt-4o"  # the longest known prefix
    assert find_price("gpt-4o-mini-2024-07-18", table).model == "gpt-4o-mini"
    assert find_price("totally-unknown", table) is None and find_price(None, table) is None


def rec(strategy="full-context", length=1000, prompt=1000, completion=100, cached=0, latency=2.0, marks=None, **kw):
    marks = marks if marks is not None else {"a": True, "b": False}
    return {
        "strategy": strategy,
        "strategy_name": strategy.split(":")[0],
        "length": length,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        "latency_s": latency,
        "marks": marks,
        "error": None,
        **kw,
    }


def test_query_cost_tokens_cache_and_gpu_hours():
    table = {
        "api": {"input": 2.0, "output": 8.0, "cached_input": 0.5},
        "nocache": {"input": 2.0, "output": 8.0},
        "gpu": {"gpu_hour": 3.6},
    }
    api, nocache, gpu = (find_price(m, table) for m in ("api", "nocache", "gpu"))
    assert query_cost(rec(prompt=1000, completion=100), api) == pytest.approx((1000 * 2 + 100 * 8) / 1e6)
    assert query_cost(rec(prompt=1000, completion=100, cached=600), api) == pytest.approx(
        (400 * 2 + 600 * 0.5 + 800) / 1e6
    )
    assert query_cost(rec(prompt=1000, completion=100, cached=600), nocache) == pytest.approx((1000 * 2 + 800) / 1e6)
    assert query_cost(rec(latency=2.0), gpu) == pytest.approx(3.6 * 2.0 / 3600)
    assert query_cost(rec(error="HTTP 500", prompt=None), api) is None
    assert query_cost(rec(), None) is None


def test_cost_summary_columns_and_ratio():
    table = {"m": {"input": 1.0, "output": 1.0}}
    records = [
        rec("full-context", prompt=9000, completion=100, marks={"a": True, "b": True}),
        rec("full-context", prompt=9000, completion=100, marks={"a": True, "b": False}),
        rec("rag-dense", prompt=900, completion=100, marks={"a": True, "b": False}),
        rec("rag-dense", prompt=900, completion=100, marks={"a": False, "b": False}),
        rec("rag-dense", prompt=None, completion=None, error="timeout", marks={"a": False, "b": False}),
    ]
    c = cost_summary(records, "m", table)
    fc, rag = c["by_strategy"]["full-context"], c["by_strategy"]["rag-dense"]
    assert fc["cost_per_query"] == pytest.approx(9100 / 1e6) and fc["cost_per_1k"] == pytest.approx(9.1)
    assert rag["cost_per_query"] == pytest.approx(1000 / 1e6)  # the failed request is left out
    assert fc["cost_per_correct_field"] == pytest.approx(2 * 9100 / 1e6 / 3)
    assert rag["cost_per_correct_field"] == pytest.approx(2 * 1000 / 1e6 / 1)
    assert rag["cost_ratio_full_context"] == pytest.approx(9.1) and fc["cost_ratio_full_context"] == pytest.approx(1.0)
    assert c["by_strategy_length"][("rag-dense", 1000)]["cost_ratio_full_context"] == pytest.approx(9.1)
    assert c["notes"] == []


def test_unknown_model_is_a_note_not_a_crash():
    c = cost_summary([rec()], "mystery-7b", load_prices())
    assert c["price"] is None
    assert c["notes"] == ["no price for mystery-7b; pass --prices FILE with an entry for it"]
    assert c["by_strategy"]["full-context"]["cost_per_1k"] is None


def test_money_format():
    assert fmt_money(None) == "-" and fmt_money(0) == "$0" and fmt_money(1234.5) == "$1,234"
    assert fmt_money(2.5) == "$2.50" and fmt_money(0.25) == "$0.250" and fmt_money(0.000123) == "$0.00012"


# -- the verdict ------------------------------------------------------------------------------------------
def summary(*rows, needles: int = 0):
    """rows: (strategy, length, accuracy, cost_per_1k). With `needles`, per-needle accuracies too (every
    needle at the strategy's accuracy), so the verdict's paired tests see that many constant differences."""
    s = {"by_strategy_length": [dict(zip(("strategy", "length", "accuracy", "cost_per_1k"), r), n=10) for r in rows]}
    if needles:
        s["per_needle"] = {}
        for strategy, length, acc, _ in rows:
            s["per_needle"].setdefault(strategy, {})[str(length)] = {str(i): acc for i in range(needles)}
    return s


def test_verdict_best_and_cheapest_within_tolerance():
    rows = (
        ("full-context", 1000, 0.90, 10.0),
        ("rag-dense", 1000, 0.89, 2.0),
        ("rag-bm25", 1000, 0.85, 1.0),
        ("full-context", 4000, 0.70, 40.0),
        ("rag-dense", 4000, 0.80, 2.5),
        ("rag-bm25", 4000, 0.795, 2.0),
    )
    s = summary(*rows, needles=800)  # a constant 1-pt gap is shown inside ±2 pts only after hundreds of needles
    v = {x["length"]: x for x in verdict(s)}
    assert v[1000]["best"] == "full-context" and v[1000]["cheapest_within_tolerance"] == "rag-dense"
    assert {c["strategy"]: c["status"] for c in v[1000]["comparisons"]} == {
        "rag-dense": "equivalent",
        "rag-bm25": "worse",
    }
    assert v[1000]["cost_ratio"] == pytest.approx(5.0) and v[1000]["settled"] and v[1000]["candidate"] is None
    assert v[4000]["best"] == "rag-dense" and v[4000]["cheapest_within_tolerance"] == "rag-bm25"
    assert v[4000]["cost_ratio"] == pytest.approx(1.25)
    lines = verdict_lines(verdict(s))
    assert lines[0].startswith("1,000 tokens: most accurate full-context (90.0%")
    assert "cheapest within 2 pts: rag-dense (89.0%" in lines[0] and "5.0x cheaper" in lines[0]
    # a wider tolerance lets the cheapest in (equivalence needs the difference strictly inside it: 5 pts is not)
    assert verdict(s, tolerance=0.05)[0]["cheapest_within_tolerance"] == "rag-dense"
    assert verdict(s, tolerance=0.06)[0]["cheapest_within_tolerance"] == "rag-bm25"
    # without per-needle data nothing is shown equivalent: rag-dense is within 2 pts on average, a candidate only
    u = verdict(summary(*rows))[0]
    assert u["cheapest_within_tolerance"] == "full-context" and u["candidate"] == "rag-dense" and not u["settled"]
    assert "rag-dense is cheaper and within 2 pts on average, but not shown equivalent yet" in verdict_lines([u])[0]
    # ties on accuracy go to the cheaper
    t = summary(("full-context", 1000, 0.9, 10.0), ("rag-dense", 1000, 0.9, 2.0))
    assert verdict(t)[0]["best"] == "rag-dense" and "also the cheapest" in verdict_lines(verdict(t))[0]


def test_verdict_without_prices():
    s = summary(("full-context", 1000, 0.9, None), ("rag-dense", 1000, 0.8, None))
    v = verdict(s)[0]
    assert v["best"] == "full-context" and v["cheapest_within_tolerance"] is None
    assert "unknown (no price" in verdict_lines([v])[0]


def test_recommend():
    s = summary(
        ("full-context", 1000, 0.95, 10.0),
        ("rag-dense", 1000, 0.91, 2.0),
        ("rag-bm25", 1000, 0.80, 1.0),
        ("full-context", 4000, 0.70, 40.0),
        ("rag-dense", 4000, 0.85, 2.5),
    )
    r = {x["length"]: x for x in recommend(s, 0.9)}
    assert r[1000]["strategy"] == "rag-dense" and r[4000]["strategy"] is None
    assert r[4000]["closest"] == "rag-dense"
    lines = recommend_lines(recommend(s, 0.9), 0.9, None)
    assert "rag-dense (91.0%, $2.00/1k queries) is the cheapest that meets >= 90.0% accuracy" in lines[0]
    assert lines[1].startswith("4,000 tokens: none meets >= 90.0% accuracy; closest is rag-dense (85.0%")
    assert recommend(s, 0.9, max_cost_per_1k=1.5)[0]["strategy"] is None
    assert recommend(s, 0.9, max_cost_per_1k=5)[0]["strategy"] == "rag-dense"
    assert recommend(s, 0.94, max_cost_per_1k=5)[0]["strategy"] is None


# -- the commands -------------------------------------------------------------------------------------------
def harness(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_recommend_command(tmp_path):
    run = make_run(tmp_path)
    p = harness("recommend", str(run), "--min-accuracy", "0.5")
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if "tokens:" in l]
    assert len(lines) == 2 and all("is the cheapest that meets >= 50.0% accuracy" in l for l in lines)
    p = harness("recommend", str(run), "--min-accuracy", "90", "--max-cost-per-1k", "0.01")
    assert p.returncode == 0 and p.stdout.count("none meets >= 90.0% accuracy at <= $0.010/1k") == 2
    p = harness("recommend", str(tmp_path / "nowhere"), "--min-accuracy", "0.9")
    assert p.returncode != 0 and "not a run folder" in p.stderr and "Traceback" not in p.stderr


def test_report_with_unknown_model_notes_it(tmp_path):
    run = make_run(tmp_path, model="mystery-7b")
    p = harness("report", str(run))
    assert p.returncode == 0, p.stderr
    assert "no price for mystery-7b; pass --prices" in p.stdout
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  mystery-7b: {input: 0.5, output: 1.5}\n")
    p = harness("report", str(run), "--prices", str(prices))
    assert p.returncode == 0 and "no price" not in p.stdout and "$0.5 in / $1.5 out" in p.stdout
    assert "cheaper" in p.stdout or "also the cheapest" in p.stdout
    p = harness("report", str(run), "--prices", str(tmp_path / "missing.yaml"))
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1


def test_a_cpu_run_is_charged_cpu_time_at_a_cpu_price_never_a_gpu_price():
    from harness.scoring.cost import run_hardware

    table = {"m": {"gpu_hour": 0.8, "cpu_hour": 0.05, "cpu_note": "2-vCPU VM"}, "gpu-only": {"gpu_hour": 0.8}}
    records = [rec("full-context", latency=36.0), rec("rag-dense", latency=3.6)]
    cpu = cost_summary(records, "m", table, hardware=run_hardware({"endpoint": {"launch": {"flavour": "cpu"}}}))
    assert cpu["by_strategy"]["full-context"]["cost_per_query"] == pytest.approx(0.05 * 36 / 3600)
    assert (
        cpu["price"]["basis"] == "cpu_hour" and "self-hosted on CPU, $0.05/hour (2-vCPU VM)" in cpu["price"]["describe"]
    )
    gpu = cost_summary(records, "m", table, hardware="gpu")
    assert gpu["by_strategy"]["full-context"]["cost_per_query"] == pytest.approx(0.8 * 36 / 3600)
    assert "on GPU" in gpu["price"]["describe"]
    # an entry with only a GPU price gives no $ for a CPU run, and says why
    none = cost_summary(records, "gpu-only", table, hardware="cpu")
    assert none["by_strategy"]["full-context"]["cost_per_query"] is None
    assert "no cpu_hour price" in none["notes"][0]
    # a server behind --endpoint: the entry's own basis (gpu_hour), as before
    assert run_hardware({"endpoint": {"launch": None}}) is None
    assert cost_summary(records, "gpu-only", table)["price"]["basis"] == "gpu_hour"


def test_the_shipped_embedded_price_has_a_cpu_rate():
    assert find_price("gemma-3-270m", load_prices()).on("cpu").rate == pytest.approx(0.05)


def test_a_prices_file_error_names_the_entry_and_field(tmp_path):
    """The one model that holds a price also checks the file: a typo'd key or hardware is refused, in one line."""
    f = tmp_path / "p.yaml"
    for bad, says in (
        ("models:\n  x: {gpu_hours: 1}\n", "model 'x': gpu_hours"),
        ("models:\n  x: {gpu_hour: 1, hardware: tpu}\n", "model 'x': hardware"),
        ("models:\n  x: {gpu_hour: -1}\n", "model 'x': gpu_hour"),
    ):
        f.write_text(bad)
        with pytest.raises(UsageError) as e:
            load_prices(f)
        assert says in str(e.value) and "\n" not in str(e.value)
    f.write_text("models:\n  x: {gpu_hour: 1, hardware: cpu, cpu_hour: 0.1}\n")
    assert find_price("x", load_prices(f)).rate == pytest.approx(0.1)
