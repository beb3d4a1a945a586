"""The qa scenario: your own question-answer files (scenario.py), their layouts (layouts.py), scorers (metrics.py)."""

from scenarios.qa.scenario import QA

__all__ = ["QA"]
