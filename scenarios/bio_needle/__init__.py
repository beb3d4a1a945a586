"""Biography needle: find one person's biography in a haystack of others and fill in its labels."""

from scenarios.bio_needle.scenario import BioNeedle

__all__ = ["BioNeedle"]
