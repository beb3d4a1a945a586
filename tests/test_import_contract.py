"""The import rule (pyproject.toml's import-linter contracts, as .ci/run checks them): the core never
imports a plug-in, plug-ins import only harness.plugin, and the core has no import circle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> list[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    if exe.is_file():
        return [str(exe)]
    if shutil.which("lint-imports"):
        return ["lint-imports"]
    pytest.skip("import-linter is not installed (pip install -e '.[dev]')")


def test_import_contracts_are_kept():
    p = subprocess.run(_lint_imports() + ["--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-1000:]
    assert "3 kept, 0 broken" in p.stdout


def test_the_surface_names_what_it_exports():
    import harness.plugin as surface

    missing = [name for name in surface.__all__ if not hasattr(surface, name)]
    assert not missing
    assert set(surface.__all__) >= {"Scenario", "Strategy", "Query", "Sample", "ask_many", "open_model", "UsageError"}


def test_no_module_of_the_core_is_in_an_import_circle():
    """Module by module (the contract above is by package): no module of harness imports, through
    any chain, a module that imports it back."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("harness", "retrievers", "scenarios", cache_dir=None)
    circles = [
        (m, imported)
        for m in sorted(graph.modules)
        if m.startswith("harness")
        for imported in sorted(graph.find_modules_directly_imported_by(m))
        if imported.startswith("harness") and graph.chain_exists(importer=imported, imported=m)
    ]
    assert not circles
