"""harness: long context or RAG? Measure both on the same haystacks."""

__version__ = "0.1.0"
