"""Split a sample's corpus into chunks and remember which documents each chunk came from.

The corpus is ingested the way a RAG user would ingest a long file: the joined text is
split by LangChain's recursive splitter, measured in the embedding model's own tokens
(so no chunk is silently truncated by the embedder). Each chunk keeps its character
span, which maps it back to document ids for needle recall and grounding.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.plugin import Sample

SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    start: int  # character offset in the joined corpus
    doc_ids: tuple[str, ...]


def doc_spans(sample: Sample) -> list[tuple[int, int, str]]:
    """(start, end, doc id) of every document in `sample.joined()`."""
    spans, pos = [], 0
    for d in sample.documents:
        spans.append((pos, pos + len(d.text), d.id))
        pos += len(d.text) + len(SEPARATOR)
    return spans


def docs_overlapping(spans: list[tuple[int, int, str]], start: int, end: int) -> tuple[str, ...]:
    starts = [s for s, _, _ in spans]
    i = max(0, bisect.bisect_right(starts, start) - 1)
    out = []
    while i < len(spans) and spans[i][0] < end:
        if spans[i][1] > start:
            out.append(spans[i][2])
        i += 1
    return tuple(out)


@lru_cache(maxsize=4)
def hf_tokenizer(tokenizer_path: str):
    """The embedding model's tokenizer, for measuring chunks (and counting retrieved tokens).

    Loaded by the class its tokenizer_config.json names (the fast form where transformers has one, as
    AutoTokenizer picks): importing AutoTokenizer imports PyTorch, seconds on a small CPU, and the runner
    splits a retrieval arm's samples before the first query (`window_bound`), long before any embedding
    needs PyTorch. A folder that names no class transformers has goes through AutoTokenizer."""
    tok = _named_tokenizer(tokenizer_path)
    if tok is None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_path)
    tok.model_max_length = 1 << 30  # only counting here: no "longer than the maximum" warnings
    return tok


def _named_tokenizer(tokenizer_path: str):
    import transformers

    try:
        name = json.loads((Path(tokenizer_path) / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(name, str) or not name.isidentifier():
        return None
    fast = None if name.endswith("Fast") else getattr(transformers, name + "Fast", None)
    cls = fast or getattr(transformers, name, None)
    return cls.from_pretrained(tokenizer_path) if isinstance(cls, type) else None


def count_model_tokens(texts: Sequence[str], tokenizer_path: str) -> list[int]:
    tok = hf_tokenizer(tokenizer_path)
    return [len(tok.tokenize(t)) for t in texts]


@lru_cache(maxsize=8)
def _splitter(tokenizer_path: str, chunk_size: int, chunk_overlap: int):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        hf_tokenizer(tokenizer_path), chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True
    )


# LangChain's recursive splitter measured in the embedding model's tokens (rag-dense, rag-langchain, rag-bm25).
langchain_splitter = _splitter


def locate(text: str, piece: str, hint: int | None, after: int = 0) -> int:
    """Where `piece` starts in `text`: the framework's own offset when it checks out, else the first
    occurrence at or after `after` (chunks come in order), else anywhere; -1 if it is not a substring."""
    if hint is not None and hint >= 0 and text.startswith(piece, hint):
        return hint
    at = text.find(piece, after)
    return at if at >= 0 else text.find(piece)


def chunk_sample(sample: Sample, chunk_size: int, chunk_overlap: int, tokenizer_path: str) -> list[Chunk]:
    text = sample.joined(SEPARATOR)
    spans = doc_spans(sample)
    docs = _splitter(tokenizer_path, chunk_size, chunk_overlap).create_documents([text])
    chunks = []
    for i, d in enumerate(docs):
        start = int(d.metadata["start_index"])
        if start < 0:  # the splitter could not locate it (should not happen); fall back to a search
            start = text.find(d.page_content)
        end = start + len(d.page_content)
        chunks.append(Chunk(f"c{i}", d.page_content, start, docs_overlapping(spans, start, end)))
    return chunks
