"""Built-in scenarios (datasets with an answer schema and a field scorer)."""
