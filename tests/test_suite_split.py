"""The fast half of the suite (`-m "not server and not browser"`) never starts a server or a browser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _collect(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_heavy_selection_holds_every_server_and_browser_test():
    heavy = _collect("tests", "-m", "server or browser")
    # through the fixtures they use (vllm_server, browser) or their own marks (tests starting servers)
    for known in (
        "tests/test_compare_e2e.py::",
        "tests/test_report_html.py::test_report_in_chromium",
        "tests/test_reproducibility.py::test_replay_from_config",
        "tests/test_vllm_server.py::",
        "tests/test_multicall_e2e.py::",
    ):
        assert any(t.startswith(known) for t in heavy), known
    assert not any(t.startswith("tests/test_stats.py::") for t in heavy)


def test_fixture_users_are_marked(pytester):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.fixture
        def browser():
            yield None

        def test_plain():
            pass

        def test_uses_browser(browser):
            pass
    """
    )
    result = pytester.runpytest("--collect-only", "-q", "-m", "not browser")
    result.stdout.fnmatch_lines(["*test_plain*"])
    assert "test_uses_browser" not in result.stdout.str()
