"""Registries of scenarios, strategies and `harness data` commands.

Built-ins are declared as entry points in pyproject.toml, the same way a user's package
declares its own (`[project.entry-points."harness.strategies"]`). A user can also register
from a plain Python file with `--include my_scenario.py` and the `@register_*` decorators.
Entry points are loaded lazily, so listing names never imports LlamaIndex or vLLM. Plug-ins add
`harness data` commands the same way (`[project.entry-points."harness.data_commands"]`): tools
that know a scenario's data (importers, label checks) stay in the scenario's package.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError

GROUPS = {
    "scenario": "harness.scenarios",
    "strategy": "harness.strategies",
    # `harness data NAME`: a typer command function (or a typer.Typer / click command)
    "data_command": "harness.data_commands",
}
_registered: dict[str, dict[str, Any]] = {kind: {} for kind in GROUPS}


def _register(kind: str, name: str):
    def deco(obj):
        obj.name = name
        _registered[kind][name] = obj
        return obj

    return deco


def register_scenario(name: str):
    """Decorator: make a Scenario subclass available as `--scenario NAME`."""
    return _register("scenario", name)


def register_strategy(name: str):
    """Decorator: make a Strategy subclass available in `--strategies NAME[:k=v,...]`."""
    return _register("strategy", name)


def _entry_points(kind: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def names(kind: str) -> list[str]:
    return sorted(set(_entry_points(kind)) | set(_registered[kind]))


def get(kind: str, name: str):
    if name in _registered[kind]:
        return _registered[kind][name]
    eps = _entry_points(kind)
    if name not in eps:
        raise UsageError(f"unknown {kind} {name!r}; known: {', '.join(names(kind)) or 'none'}")
    try:
        obj = eps[name].load()
    except Exception as e:  # a broken plug-in is the user's to fix: say which and why, in one line
        raise HarnessError(f"could not load {kind} {name!r} from {eps[name].value}: {type(e).__name__}: {e}") from None
    obj.name = name
    _registered[kind][name] = obj
    return obj


def include(path: str | Path) -> None:
    """Import a user's Python file so that its @register_* decorators run."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--include {path}: no such file")
    mod_name = f"harness_include_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--include {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise HarnessError(f"--include {path}: {type(e).__name__}: {e}") from None
