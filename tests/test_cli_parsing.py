"""Grid and strategy parsing, and one-line errors with non-zero exits for bad input."""

import subprocess
import sys

import pytest

from harness.cli import parse_depths, parse_lengths, split_strategies
from harness.errors import UsageError
from harness.strategy import parse_spec


def test_lengths_accept_k_suffix_sorted_unique():
    assert parse_lengths("2k, 1000,2000,4K") == [1000, 2000, 4000]


@pytest.mark.parametrize("bad", ["abc", "-1", "0", ""])
def test_bad_lengths(bad):
    with pytest.raises(UsageError):
        parse_lengths(bad)


def test_depths():
    assert parse_depths("0,50%,100") == [0.0, 50.0, 100.0]
    with pytest.raises(UsageError):
        parse_depths("101")


def test_strategy_params_survive_comma_separation():
    assert split_strategies(["full-context,rag-dense:chunk_size=256,top_k=4,rag-dense:top_k=8"]) == [
        "full-context",
        "rag-dense:chunk_size=256,top_k=4",
        "rag-dense:top_k=8",
    ]
    assert parse_spec("rag-dense:chunk_size=256,top_k=4") == ("rag-dense", {"chunk_size": "256", "top_k": "4"})
    with pytest.raises(UsageError):
        split_strategies(["top_k=4"])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["compare", "--strategies", "no-such-arm"], "unknown strategy 'no-such-arm'"),
        (["compare", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["compare", "--depths", "150"], "outside 0-100"),
        (["compare", "-s", "rag-dense:top_k=0"], "top_k"),
        (["compare", "-s", "rag-dense:colour=red"], "colour"),
        (["compare", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m"], "cannot reach"),
        (["compare", "--resume", "/nonexistent/run"], "no such config"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, needle):
    p = _cli(*args)
    assert p.returncode != 0
    assert needle in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
