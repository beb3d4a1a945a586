"""The plug-in surface: everything a scenario, a strategy or a data command may import from the core.

Plug-ins (retrievers/, scenarios/, users' packages and --include files) import this module and
nothing else of harness, so the core can move its insides without breaking them; the import
contract in pyproject.toml (`lint-imports`, run by .ci/run) holds both sides to it: the core never
imports a plug-in, a plug-in imports only this surface (and itself).

    from harness.plugin import OneShot, Sample, Shown, ShownPiece, StrategyParams, UsageError
"""

from __future__ import annotations

from harness import registry
from harness.batch import Answer, ask_many, open_model
from harness.config import EndpointConfig
from harness.errors import HarnessError, UsageError
from harness.haystack import (
    CHARS_PER_TOKEN_GUESS,
    SEP_TOKENS,
    TokenCache,
    check_grid,
    depth_index,
    fill,
    grid,
    joined_tokens,
    plant,
)
from harness.prompting import Prompt, build_prompt
from harness.query import Query, WindowExceeded
from harness.record import Step
from harness.registry import register_scenario, register_strategy
from harness.samples import Document, Sample, Shown, ShownPiece
from harness.scenario import Grounding, Scenario, ScenarioParams, Shot, TokenCounter, Words
from harness.scoring.answers import (
    ANSWERABLE_NOTE,
    UNANSWERABLE_NOTE,
    answerable_schema,
    parse_answer,
    read_answer,
    read_answerable,
    read_unanswerable,
    set_precision_recall,
    unanswerable_schema,
    wire_answer,
    wire_schema,
)
from harness.strategy import OneShot, Outcome, Resources, Strategy, StrategyParams, build_params, parse_spec
from harness.ui import console, err, progress_bar

__all__ = [
    # interfaces
    "Scenario",
    "ScenarioParams",
    "Shot",
    "Words",
    "Grounding",
    "TokenCounter",
    "Strategy",
    "StrategyParams",
    "OneShot",
    "Outcome",
    "Resources",
    "build_params",
    "parse_spec",
    "register_scenario",
    "register_strategy",
    "registry",
    # what samples, prompts and answers are
    "Document",
    "Sample",
    "Shown",
    "ShownPiece",
    "Step",
    "Prompt",
    "build_prompt",
    "ANSWERABLE_NOTE",
    "UNANSWERABLE_NOTE",
    "unanswerable_schema",
    "read_unanswerable",
    "answerable_schema",
    "parse_answer",
    "read_answer",
    "read_answerable",
    "set_precision_recall",
    "wire_answer",
    "wire_schema",
    # the model, as a strategy sees it; and as a data tool asks it
    "Query",
    "WindowExceeded",
    "EndpointConfig",
    "Answer",
    "ask_many",
    "open_model",
    # haystacks
    "CHARS_PER_TOKEN_GUESS",
    "SEP_TOKENS",
    "TokenCache",
    "check_grid",
    "depth_index",
    "fill",
    "grid",
    "plant",
    "joined_tokens",
    # errors and output
    "HarnessError",
    "UsageError",
    "console",
    "err",
    "progress_bar",
]
