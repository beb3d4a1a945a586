"""A run's pieces from its configuration: the scenario, the strategies, and where their caches live.

Shared by compare, finetune's data and the Ray executor's actors, so none of them imports another.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness import registry
from harness.config import RunConfig
from harness.errors import UsageError


def build_scenario(config: RunConfig):
    from harness.strategy import build_params

    cls = registry.get("scenario", config.scenario)
    params = build_params(cls.Params, config.scenario_params, f"scenario {config.scenario}")
    return cls(params, seed=config.seed)


def build_strategies(config: RunConfig, cache_dir: Path, count_tokens) -> list:
    from harness.strategy import Resources, build_params, parse_spec

    resources = Resources(cache_dir=cache_dir, count_tokens=count_tokens)
    out, labels = [], set()
    for spec in config.strategies:
        name, raw = parse_spec(spec)
        cls = registry.get("strategy", name)
        strategy = cls(build_params(cls.Params, raw, f"strategy {spec}"), resources)
        if strategy.label in labels:
            raise UsageError(f"--strategies: {strategy.label} is given twice")
        labels.add(strategy.label)
        out.append(strategy)
    if not out:
        raise UsageError("--strategies: give at least one strategy")
    return out


def reader_skills(config: RunConfig) -> set[str]:
    """What the run's arms need a tuned reader to have learned (Strategy.reader_skill), by name alone."""
    from harness.strategy import parse_spec

    return {registry.get("strategy", parse_spec(spec)[0]).reader_skill for spec in config.strategies}


def cache_dir() -> Path:
    from harness.endpoints.embedded import cache_dir as _cache_dir

    return _cache_dir()


def response_cache_path() -> Path:
    """The response cache file: $HARNESS_RESPONSE_CACHE, else responses.sqlite in the harness cache."""
    from harness.endpoints.cache import FILENAME

    env = os.environ.get("HARNESS_RESPONSE_CACHE")
    return Path(env) if env else cache_dir() / FILENAME
