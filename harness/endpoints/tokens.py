"""The served model's own tokenizer, read from its folder: token counts without asking the server.

vLLM's /tokenize answers with the tokenizer the server loaded, at the price of one HTTP request per
text (the harness counted every prompt that way: a second request per query). Where the harness
knows the served folder (a server it started: harness/endpoints/served.py), the same tokenizer.json
gives the same counts locally, in Rust, in batches. Completions prompts only: a chat prompt is
counted after the server's chat template, which stays the server's business (/tokenize).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path


@functools.lru_cache(maxsize=4)
def _load(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def has_tokenizer(folder: str | Path | None) -> bool:
    return folder is not None and (Path(folder) / "tokenizer.json").is_file()


def count(folder: str | Path, texts: Sequence[str], *, special: bool) -> list[int]:
    """Tokens of each text; `special`: with the tokenizer's special tokens (BOS), as vLLM counts a prompt."""
    if not texts:
        return []
    encodings = _load(str(Path(folder) / "tokenizer.json")).encode_batch(list(texts), add_special_tokens=special)
    return [len(e.ids) for e in encodings]
