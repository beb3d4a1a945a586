"""Moved: the Scenario interface is part of the core (harness.scenario). Kept for plug-ins that
import it from here."""

from harness.plugin import Grounding, Scenario, ScenarioParams, Shot, TokenCounter, Words  # noqa: F401
