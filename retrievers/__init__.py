"""Strategies: what the model is shown for a sample (full context, retrieved chunks, agents)."""
