"""Embedding work of the RAG arms over a bio-needle grid: is every unique chunk embedded once, and
is the harness path as fast as a bare SentenceTransformer.encode?

    python bench/embeddings.py [--lengths 1000,2000,4000,8000] [--depths 0,25,50,75,100] [--needles 2]

Builds the grid with the real BioNeedle scenario. Lengths are counted in the *embedding model's*
tokens (all-MiniLM-L6-v2's tokenizer), not the served model's: no server is needed here, and the
question is only how much text there is to embed. Then runs `prepare()` of rag-dense,
rag-langchain, rag-llamaindex, rag-hybrid and rag-bm25 (default parameters) on one shared,
initially empty cache, and prints:

* chunks requested (every chunk of every sample of every embedding arm), unique chunk texts,
  chunks embedded (counted where the model runs: SentenceTransformer.encode), and their ratio
  (target <= 1.05);
* chunks per second of the harness's embedding path (every embedding arm's prepare() on a fresh
  cache: content hashing, cache lookups, the frameworks' own embedders, the SQLite writes) vs a
  bare SentenceTransformer.encode of the same unique texts (batch 64, normalised) on this machine
  (target >= 0.9x), as the median of paired rounds run in alternating order, since anything else
  running on the machine moves both. Splitting is timed separately (the bare baseline gets its
  texts pre-split).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

ARMS = ["rag-dense", "rag-langchain", "rag-llamaindex", "rag-hybrid", "rag-bm25"]
SPLITTER = {
    "rag-dense": "LangChain recursive",
    "rag-langchain": "LangChain recursive",
    "rag-bm25": "LangChain recursive",
    "rag-llamaindex": "LlamaIndex sentence",
    "rag-hybrid": "LlamaIndex sentence",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="1000,2000,4000,8000", help="embedding-model tokens")
    ap.add_argument("--depths", default="0,25,50,75,100")
    ap.add_argument("--needles", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="paired bare/harness timing rounds")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    depths = [float(x) for x in args.depths.split(",")]

    from sentence_transformers import SentenceTransformer

    from harness import registry
    from harness.strategy import Resources
    from retrievers.chunking import count_model_tokens
    from retrievers.embeddings import (
        EmbeddingCache,
        langchain_embeddings,
        llamaindex_embedding,
        load_sentence_transformer,
        shared_cache,
    )
    from scenarios.bio_needle import BioNeedle

    console = Console(width=int(os.environ.get("COLUMNS", "132")))
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-emb-"))
    cache = shared_cache(cache_dir / "embeddings")
    model_path = str(cache.model_path)

    t = time.perf_counter()
    samples = BioNeedle(BioNeedle.Params(), seed=args.seed).samples(
        lengths, depths, args.needles, lambda texts: count_model_tokens(texts, model_path)
    )
    console.print(
        f"grid: {len(lengths)} lengths {lengths} (all-MiniLM-L6-v2 tokens) x {len(depths)} depths x "
        f"{args.needles} needles = {len(samples)} samples, built in {time.perf_counter() - t:.1f} s; "
        f"{os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}"
    )

    resources = Resources(cache_dir=cache_dir)
    arms = {}
    for name in ARMS:
        cls = registry.get("strategy", name)
        arms[name] = cls(cls.Params(), resources)
    arms["rag-dense"].embeddings = cache  # one cache for every arm (rag-dense makes its own otherwise)

    # Load every model and warm it up outside the timings (not through the cache).
    warm = [s.documents[0].text for s in samples[:16]]
    bare = load_sentence_transformer(model_path)
    models = [bare, llamaindex_embedding(cache)._model, langchain_embeddings(cache)._client]
    for m in models:
        m.encode(warm, batch_size=64)

    # Count what really goes through the model, whoever calls it.
    encoded: list[str] = []
    real_encode = SentenceTransformer.encode

    def counting(self, sentences, *a, **k):
        encoded.extend([sentences] if isinstance(sentences, str) else list(sentences))
        return real_encode(self, sentences, *a, **k)

    SentenceTransformer.encode = counting
    rows = []
    try:
        for name, arm in arms.items():
            t0 = time.perf_counter()
            if name == "rag-dense":  # split first so that its prepare() times only the embedding pass
                for s in samples:
                    arm.chunks(s)
                t1 = time.perf_counter()
                before = cache.computed
                arm.prepare(samples)
                t2 = time.perf_counter()
                texts = [c.text for s in samples for c in arm.chunks(s)]
                stats = {
                    "chunks": len(texts),
                    "unique": len(set(texts)),
                    "embedded": cache.computed - before,
                    "split_s": t1 - t0,
                    "embed_s": t2 - t1,
                }
            else:
                arm.prepare(samples)
                t2 = time.perf_counter()
                stats = dict(arm.stats)
            q0 = time.perf_counter()
            for s in samples:
                arm.show(s)
            stats["retrieve_ms"] = 1000 * (time.perf_counter() - q0) / len(samples)
            stats["prepare_s"] = t2 - t0
            rows.append((name, stats))
    finally:
        SentenceTransformer.encode = real_encode

    embedding_arms = [(n, st) for n, st in rows if n != "rag-bm25"]
    chunk_texts = {n: {c.text for s in samples for c in arms[n].chunks(s)} for n, _ in embedding_arms}
    unique = set().union(*chunk_texts.values())
    questions = {s.question for s in samples}
    chunks_encoded = [t for t in encoded if t not in questions or t in unique]
    requested = sum(st["chunks"] for _, st in embedding_arms)

    # Throughput, paired and interleaved (other work on the machine shifts both alike): each round
    # times a bare SentenceTransformer.encode of the unique texts and the harness's embedding pass
    # (every embedding arm's prepare(), already split) on a fresh, empty cache, in alternating order.
    texts = sorted(unique)
    rounds = []
    for r in range(args.rounds):
        fresh = EmbeddingCache(cache_dir / f"round{r}")
        arms["rag-dense"].embeddings = fresh
        for name, _ in embedding_arms[1:]:
            arms[name].cache = fresh
        for m in (llamaindex_embedding(fresh)._model, langchain_embeddings(fresh)._client):
            m.encode(warm, batch_size=64)  # load and warm outside the timing
        timed = {}

        def run_bare():
            t = time.perf_counter()
            bare.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            timed["bare"] = time.perf_counter() - t  # noqa: B023 (called at once, in the loop)

        def run_harness():
            t = time.perf_counter()
            for name, _ in embedding_arms:
                arms[name].prepare(samples)
            timed["harness"] = time.perf_counter() - t  # noqa: B023 (called at once, in the loop)

        for step in (run_bare, run_harness) if r % 2 == 0 else (run_harness, run_bare):  # alternate who goes first
            step()
        bare_s, harness_s = timed["bare"], timed["harness"]
        assert fresh.computed == len(unique), (fresh.computed, len(unique))
        rounds.append((len(texts) / bare_s, fresh.computed / harness_s))

    per_arm = Table(
        title="first pass, one shared empty cache, arms in this order (default parameters: "
        "chunk_size=128, chunk_overlap=16, top_k=4)",
        title_justify="left",
    )
    for col in (
        "arm",
        "splitter",
        "chunks requested",
        "unique chunks",
        "embedded here",
        "split s",
        "embed s",
        "prepare s",
        "retrieve ms/q",
    ):
        per_arm.add_column(col, justify="left" if col in ("arm", "splitter") else "right")
    for name, st in rows:
        emb = name != "rag-bm25"
        per_arm.add_row(
            name,
            SPLITTER[name],
            f"{st['chunks']:,}" if emb else "-",
            f"{st['unique']:,}",
            f"{st['embedded']:,}" if emb else "-",
            f"{st['split_s']:.2f}",
            f"{st['embed_s']:.2f}" if emb else "-",
            f"{st['prepare_s']:.2f}",
            f"{st['retrieve_ms']:.1f}",
        )
    console.print(per_arm)

    bare_rates, harness_rates = zip(*rounds)
    bare_rate, harness_rate = statistics.median(bare_rates), statistics.median(harness_rates)
    ratio_dedup = len(chunks_encoded) / len(unique)
    ratio_speed = statistics.median(h / b for b, h in rounds)
    total = Table(title="embedding work over the grid (embedding arms)", title_justify="left")
    total.add_column("measure")
    total.add_column("value", justify="right")
    total.add_column("target", justify="right")
    total.add_row("chunks requested (all arms, all samples)", f"{requested:,}", "")
    total.add_row("unique chunk texts", f"{len(unique):,}", "")
    total.add_row("chunks embedded (SentenceTransformer.encode)", f"{len(chunks_encoded):,}", "")
    total.add_row("embedded / unique", f"{ratio_dedup:.3f}", "<= 1.05")
    total.add_row("embedded / requested", f"{len(chunks_encoded) / requested:.3f}", "")
    total.add_row(
        "questions embedded (distinct questions)", f"{len(encoded) - len(chunks_encoded)} ({len(questions)})", ""
    )
    total.add_row(f"bare SentenceTransformer.encode, chunks/s (median of {len(rounds)})", f"{bare_rate:.1f}", "")
    total.add_row(f"harness embedding path, chunks/s (median of {len(rounds)})", f"{harness_rate:.1f}", "")
    total.add_row(
        "harness / bare (median of paired rounds: " + ", ".join(f"{h / b:.2f}" for b, h in rounds) + ")",
        f"{ratio_speed:.2f}x",
        ">= 0.9x",
    )
    total.add_row(
        "first pass incl. splitting, chunks/s",
        f"{len(chunks_encoded) / sum(st['prepare_s'] for _, st in embedding_arms):.1f}",
        "",
    )
    console.print(total)
    ok = ratio_dedup <= 1.05 and ratio_speed >= 0.9
    console.print(("[green]targets met[/green]" if ok else "[red]targets missed[/red]") + f"  (cache: {cache_dir})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
