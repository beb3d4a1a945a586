"""`harness scenarios` and `harness strategies`: every registered plug-in, its parameters and its doc."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from harness import registry


def describe_params(params_model) -> str:
    parts = []
    for name, f in params_model.model_fields.items():
        default = "" if f.is_required() else f"={f.default}"
        parts.append(f"{name}{default}")
    return ", ".join(parts) or "-"


def listing(kind: str, includes: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """(name, parameters, first line of its doc) of every registered scenario or strategy, with
    those the `includes` files register."""
    for path in includes:
        registry.include(path)
    out = []
    for name in registry.names(kind):
        cls = registry.get(kind, name)
        doc = cls.__doc__ if kind == "scenario" else (sys.modules[cls.__module__].__doc__ or cls.__doc__)
        first = (doc or "").strip().splitlines()
        out.append((name, describe_params(cls.Params), first[0] if first else ""))
    return out
