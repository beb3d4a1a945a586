"""Moved: the Strategy interface is part of the core (harness.strategy). Kept for plug-ins that
import it from here."""

from harness.plugin import (  # noqa: F401
    OneShot,
    Outcome,
    Resources,
    Strategy,
    StrategyParams,
    build_params,
    parse_spec,
)
