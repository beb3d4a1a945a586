"""Serving speed of the embedded Gemma 3 270M on this CPU, per setting: startup, prefill, decode, idle CPU.

    .venv/bin/python bench/serving.py                         # the defaults for this CPU (+ the AVX2 case on AVX-512)
    .venv/bin/python bench/serving.py --settings bf16,bf16-eager,fp32-avx2,fp32-avx2-eager --repeats 3
    .venv/bin/python bench/serving.py --no-first-start --concurrency 1,8 --env KMP_BLOCKTIME=200

A setting is dtype (bf16|fp32), optionally `-eager` (--enforce-eager), `-spin` (vLLM's own 1 s
busy-wait of its shared-memory queues, which the harness's vLLM plugin shortens) or `-spinMS` (that
busy-wait set to MS milliseconds, e.g. bf16-spin0), `-tuned` (the shipped bio-needle reader merged into
the weights, as `harness compare` serves it) or `-lora` (the same adapter served as vLLM's LoRA
module on the base: `--enable-lora`, requests name the module) and `-avx2` (the server
runs with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2: an
AVX-512 machine computing like an ordinary AVX2 CPU; a child python checks that torch and oneDNN
took the restriction). Each setting is started through the harness's own launcher
(harness.endpoints.vllm_server.start_server, so the CPU plan, thread binding and OpenMP settings
are the ones `harness compare` uses), with its own torch-inductor and vLLM cache folders
(TORCHINDUCTOR_CACHE_DIR, VLLM_CACHE_ROOT under a temporary folder, deleted at the end: nobody
else's cache is touched):

* first start: /health after spawning with empty caches (compiles); then stopped;
* warm start: the same caches again; this server is measured (with --no-first-start: the usual
  caches, ~/.cache/vllm and /tmp/torchinductor_$USER, as `harness compare` uses them):
* prefill tok/s: prompt tokens / wall time of a `max_tokens=1` request, prompts of random token ids
  (unique from the first block, so no prefix-cache hits), best of --repeats;
* decode tok/s: N concurrent requests of --decode-tokens tokens each (ignore_eos), total tokens /
  wall, best of --repeats; batched decode shares the 262k-vocabulary output head;
* CPU % 0-2 s after a request: the server's whole process group (API server, engine core,
  worker, from /proc/<pid>/stat) in the 2 s after a short request ends, mean of 3: what it takes
  from the harness between requests (vLLM's shared-memory queue readers busy-wait 1 s by default);
* idle CPU %: the same over 10 s, starting 10 s after the last request.

On a shared machine: before each start and each measurement the bench waits (at most --max-wait
s) until the other processes use less than --quiet % of a core, and records what they used while
it measured (from /proc/stat minus its own and its server's CPU time): the "others' CPU %" column
is the worst of them, so numbers taken under contention are marked as such. The table is
markdown, to paste into docs/vllm-cpu-notes.md. Not CI.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
READER = ROOT / "scenarios" / "bio_needle" / "reader"  # the shipped tuned reader (LoRA adapter)
LORA_NAME = "reader"


@dataclass(frozen=True)
class Setting:
    name: str
    dtype: str  # bfloat16 | float32
    eager: bool
    avx2: bool
    spin: float | None = None  # shm queue readers' busy-wait, s (None: the harness's default; -spin: vLLM's own 1 s)
    reader: str | None = None  # None: the base model; "tuned": the shipped reader merged; "lora": as a LoRA module

    @classmethod
    def parse(cls, text: str) -> Setting:
        parts = text.strip().lower().split("-")
        dtypes = [p for p in parts if p in DTYPES]
        spins = [p for p in parts if re.fullmatch(r"spin\d*", p)]
        unknown = [
            p for p in parts if p not in DTYPES and p not in ("eager", "avx2", "tuned", "lora") and p not in spins
        ]
        if len(dtypes) != 1 or unknown or len(spins) > 1:
            raise argparse.ArgumentTypeError(
                f"setting {text!r}: give one of bf16|fp32, optionally -eager, -avx2, -spin or -spinMS, "
                "-tuned or -lora (e.g. fp32-avx2-eager, bf16-spin50, bf16-lora)"
            )
        spin = None if not spins else (1.0 if spins[0] == "spin" else int(spins[0][4:]) / 1000)
        reader = "lora" if "lora" in parts else ("tuned" if "tuned" in parts else None)
        return cls(text.strip().lower(), DTYPES[dtypes[0]], "eager" in parts, "avx2" in parts, spin, reader)

    def env(self) -> dict[str, str]:
        env = dict(AVX2_ENV) if self.avx2 else {}
        env["HARNESS_VLLM_EAGER"] = "1" if self.eager else "0"
        if self.spin is not None:
            env["HARNESS_VLLM_SHM_BUSY_LOOP_S"] = f"{self.spin:g}"
        return env


@dataclass
class Result:
    setting: Setting
    isa_check: str = ""
    first_start_s: float | None = None
    warm_start_s: float | None = None
    phases: list = field(default_factory=list)
    prefill: dict[int, float] = field(default_factory=dict)  # prompt tokens -> tok/s
    decode: dict[int, float] = field(default_factory=dict)  # concurrency -> tok/s
    idle_cpu: float | None = None
    tail_cpu: float | None = None  # server CPU % in the 2 s after a short request ends
    idle_per_process: dict[str, float] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)
    others: dict[str, float] = field(default_factory=dict)  # measurement -> other processes' CPU % meanwhile
    served_dtype: str | None = None
    plugin_processes: list[str] = field(default_factory=list)  # where the no-busy-wait plugin ran
    cpu_plan: dict | None = None
    error: str | None = None


@contextlib.contextmanager
def patched_environ(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load1() -> float:
    return os.getloadavg()[0]


def _busy_seconds() -> float:
    """CPU seconds all processes have used (every core), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _group_seconds(pgid: int) -> float:
    return sum(sec for _, sec in group_cpu_seconds(pgid).values())


def _own_seconds(pgid: int | None) -> float:
    """CPU seconds of this bench process and of the server's process group."""
    t = os.times()
    own = t.user + t.system
    if pgid is not None:
        own += _group_seconds(pgid)
    return own


class Others:
    """CPU used by everything except this bench and its server over a stretch of time, in % of
    one core: the contention a measurement ran under on a shared machine."""

    def __init__(self, pgid: int | None = None):
        self.pgid = pgid
        self.pct: float | None = None

    def __enter__(self) -> Others:
        self._t, self._busy, self._own = time.monotonic(), _busy_seconds(), _own_seconds(self.pgid)
        return self

    def __exit__(self, *exc) -> None:
        dt = time.monotonic() - self._t
        others = (_busy_seconds() - self._busy) - (_own_seconds(self.pgid) - self._own)
        self.pct = round(max(0.0, 100 * others / dt), 1) if dt > 0 else 0.0


def wait_for_quiet(limit: float, max_wait: float, pgid: int | None = None) -> float:
    """Wait until other processes used less than `limit` % of a core over 5 s (up to max_wait s);
    return what they used in the last 5 s."""
    end = time.monotonic() + max_wait
    while True:
        with Others(pgid) as o:
            time.sleep(5)
        if o.pct < limit or time.monotonic() > end:
            return o.pct
        print(f"  other processes use {o.pct:.0f} % of a core (load {load1():.1f}): waiting", flush=True)
        time.sleep(10)


def isa_check(env: dict[str, str]) -> str:
    """What torch and oneDNN use under `env`: ATen's capability and the ISA of a bf16 matmul."""
    code = (
        "import torch;print('ATen', torch.backends.cpu.get_cpu_capability());"
        "a=torch.randn(64,256,dtype=torch.bfloat16);torch.nn.functional.linear(a,a)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env, "ONEDNN_VERBOSE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    aten = next((ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("ATen ")), "?")
    matmul = next(
        (ln.split(",")[6] for ln in proc.stdout.splitlines() if ",primitive,exec,cpu,matmul," in ln),
        "torch's own (no oneDNN)",
    )
    return f"ATen {aten}; bf16 matmul: {matmul}"


def group_cpu_seconds(pgid: int) -> dict[int, tuple[str, float]]:
    from harness.endpoints.vllm_server import group_members

    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in group_members(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        f = stat[stat.rfind(")") + 2 :].split()
        out[pid] = (name, (int(f[11]) + int(f[12])) / hz)
    return out


def idle_cpu(pgid: int, settle: float = 10.0, window: float = 10.0) -> tuple[float, dict[str, float]]:
    """CPU % of the server's process group over `window` s, `settle` s after the last request."""
    time.sleep(settle)
    a, t0 = group_cpu_seconds(pgid), time.monotonic()
    time.sleep(window)
    b, dt = group_cpu_seconds(pgid), time.monotonic() - t0
    per = {f"{name}[{pid}]": round(100 * (sec - a.get(pid, (name, 0.0))[1]) / dt, 1) for pid, (name, sec) in b.items()}
    return round(sum(per.values()), 1), per


def random_prompt(rng: random.Random, n: int) -> list[int]:
    """<bos> + n-1 random ordinary token ids: unique from the first block (no prefix-cache hits)."""
    return [2] + [rng.randrange(1000, 200000) for _ in range(n - 1)]


def complete(base_url: str, model: str, prompt: list[int], max_tokens: int) -> tuple[float, dict]:
    import httpx

    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    t0 = time.monotonic()
    r = httpx.post(base_url + "/completions", json=body, timeout=1800)
    r.raise_for_status()
    return time.monotonic() - t0, r.json()["usage"]


def measure(srv, res: Result, a, rng: random.Random) -> None:
    model = LORA_NAME if res.setting.reader == "lora" else srv.model
    complete(srv.base_url, model, random_prompt(rng, 64), 8)  # first request pays one-off costs

    def best_of(name: str, once) -> float:
        """The best of --repeats runs, each started when the machine is quiet; the most the other
        processes used during any of them is recorded under `name`."""
        best, worst_others = 0.0, 0.0
        for _ in range(a.repeats):
            wait_for_quiet(a.quiet, a.max_wait / 4, srv.pid)
            with Others(srv.pid) as o:
                best = max(best, once())
            worst_others = max(worst_others, o.pct)
        res.others[name] = worst_others
        return round(best, 1)

    def prefill(size: int) -> float:
        wall, usage = complete(srv.base_url, model, random_prompt(rng, size), 1)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        if cached:
            print(f"  warning: {cached} cached tokens in a prefill measurement", flush=True)
        return usage["prompt_tokens"] / wall

    def decode(n: int) -> float:
        prompts = [random_prompt(rng, 16) for _ in range(n)]
        t0 = time.monotonic()
        with cf.ThreadPoolExecutor(n) as pool:
            usages = list(pool.map(lambda p: complete(srv.base_url, model, p, a.decode_tokens)[1], prompts))
        return sum(u["completion_tokens"] for u in usages) / (time.monotonic() - t0)

    for size in a.prefill:
        res.prefill[size] = best_of(f"prefill {size}", lambda: prefill(size))  # noqa: B023 (called at once, in the loop)
        print(
            f"  prefill {size:>5} tokens: {res.prefill[size]:8.1f} tok/s (others: {res.others[f'prefill {size}']} %)",
            flush=True,
        )
    for n in a.concurrency:
        res.decode[n] = best_of(f"decode x{n}", lambda: decode(n))  # noqa: B023 (called at once, in the loop)
        print(
            f"  decode x{n:<2}: {res.decode[n]:8.1f} tok/s, all requests together (others: "
            f"{res.others[f'decode x{n}']} %)",
            flush=True,
        )
    tails = []
    for _ in range(3):  # what the server burns right after a request: the harness's time between requests
        time.sleep(3)
        complete(srv.base_url, model, random_prompt(rng, 16), 4)
        a0, t0 = _group_seconds(srv.pid), time.monotonic()
        time.sleep(2)
        tails.append(100 * (_group_seconds(srv.pid) - a0) / (time.monotonic() - t0))
    res.tail_cpu = round(sum(tails) / len(tails), 1)
    print(f"  server CPU in the 2 s after a request: {res.tail_cpu} %", flush=True)
    with Others(srv.pid) as o:
        res.idle_cpu, res.idle_per_process = idle_cpu(srv.pid)
    res.others["idle"] = o.pct
    print(f"  idle CPU: {res.idle_cpu} % {res.idle_per_process} (others: {o.pct} %)", flush=True)


def run_setting(setting: Setting, a, extra_env: dict[str, str], workdir: Path) -> Result:
    from harness.endpoints.vllm_server import ServerOptions, start_server

    res = Result(setting)
    env = {**setting.env(), **extra_env}
    if a.first_start:  # its own empty caches; without a first start, the usual (shared, warm) ones
        cache = workdir / setting.name
        env.update(TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"), VLLM_CACHE_ROOT=str(cache / "vllm"))
    print(
        f"\n== {setting.name}: dtype {setting.dtype}, {'eager' if setting.eager else 'compiled'}, "
        f"{'AVX2-restricted' if setting.avx2 else 'native ISA'}"
        + ("" if setting.spin is None else f", shm busy-wait {setting.spin:g} s"),
        flush=True,
    )
    res.isa_check = isa_check(env)
    print(f"  {res.isa_check}", flush=True)
    opts = ServerOptions(dtype=setting.dtype)
    if setting.reader == "tuned":  # the shipped reader, merged into the weights (what `harness compare` serves)
        opts = ServerOptions(dtype=setting.dtype, adapter=str(READER))
    elif setting.reader == "lora":  # the same adapter as vLLM's LoRA module on the base
        rank = json.loads((READER / "adapter_config.json").read_text())["r"]
        lora = ("--enable-lora", "--lora-modules", f"{LORA_NAME}={READER}", "--max-lora-rank", str(rank))
        opts = ServerOptions(dtype=setting.dtype, extra_args=lora)
    rng = random.Random(f"{setting.name}-{time.time()}")
    with patched_environ(env):
        try:
            if a.first_start:
                wait_for_quiet(a.quiet, a.max_wait)
                res.load.append(round(load1(), 2))
                with Others() as o:
                    srv = start_server(opts, workdir / f"{setting.name}-first.log")
                res.others["first start"] = o.pct
                res.first_start_s = round(srv.startup_seconds, 1)
                srv.stop()
                print(f"  first start: {res.first_start_s} s (others: {o.pct} %)", flush=True)
            wait_for_quiet(a.quiet, a.max_wait)
            res.load.append(round(load1(), 2))
            with Others() as o:
                srv = start_server(opts, workdir / f"{setting.name}-warm.log")
            res.others["warm start"] = o.pct
            try:
                res.warm_start_s = round(srv.startup_seconds, 1)
                res.phases, res.served_dtype = srv.phases, srv.served_dtype
                res.plugin_processes = sorted(srv.plugin_processes)
                res.cpu_plan = srv.plan.cpu.describe() if srv.plan and srv.plan.cpu else None
                print(
                    f"  warm start: {res.warm_start_s} s (others: {o.pct} %); served dtype {res.served_dtype}; "
                    f"phases {srv.phases}",
                    flush=True,
                )
                measure(srv, res, a, rng)
            finally:
                srv.stop()
        except Exception as e:  # one setting failing (OOM on a shared box) must not lose the others
            res.error = f"{type(e).__name__}: {e}"
            print(f"  FAILED: {res.error}", flush=True)
    res.load.append(round(load1(), 2))
    return res


def table(results: list[Result], a) -> str:
    head = [
        "setting",
        "ISA",
        "dtype",
        "mode",
        "shm busy-wait s",
        "first start s",
        "warm start s",
        *[f"prefill {s / 1000:g}k tok/s" for s in a.prefill],
        *[f"decode x{n} tok/s" for n in a.concurrency],
        "default concurrency",
        "CPU % 0-2 s after a request",
        "idle CPU %",
        "others' CPU % (max)",
        "load 1-min",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(x):
        return "-" if x is None else f"{x:g}"

    for r in results:
        s = r.setting
        cells = [
            s.name,
            "AVX2 (restricted)" if s.avx2 else "native",
            s.dtype,
            "eager" if s.eager else "compiled",
            f((r.cpu_plan or {}).get("shm_busy_loop_s")),
            f(r.first_start_s),
            f(r.warm_start_s),
            *[f(r.prefill.get(n)) for n in a.prefill],
            *[f(r.decode.get(n)) for n in a.concurrency],
            f((r.cpu_plan or {}).get("concurrency")),
            f(r.tail_cpu),
            f(r.idle_cpu),
            f(max(r.others.values(), default=None)),
            "/".join(f"{x:.1f}" for x in r.load),
        ]
        if r.error:
            cells[-1] += f" FAILED: {r.error[:80]}"
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    from harness.endpoints.cpu import read_facts

    facts = read_facts()
    default = "bf16,fp32-avx2-eager" if facts.native_bf16 else "fp32-eager"  # what the CPU plan serves
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--settings",
        default=default,
        help=f"comma-separated settings: bf16|fp32 [-eager] [-avx2] (default here: {default})",
    )
    ap.add_argument("--repeats", type=int, default=2, help="runs of each measurement; the best is kept")
    ap.add_argument("--prefill", default="1000,4000", help="prompt sizes in tokens (default 1000,4000)")
    ap.add_argument("--concurrency", default="1,2,4,8", help="decode concurrency levels (default 1,2,4,8)")
    ap.add_argument("--decode-tokens", type=int, default=64, help="tokens per decode request (default 64)")
    ap.add_argument(
        "--no-first-start",
        dest="first_start",
        action="store_false",
        help="skip the start with empty compile caches; the server then uses the usual caches",
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every server (e.g. to measure without a default)",
    )
    ap.add_argument(
        "--quiet",
        type=float,
        default=25,
        help="before each start and measurement, wait until other processes use less than this "
        "%% of a core (default 25)",
    )
    ap.add_argument(
        "--max-wait",
        type=float,
        default=900,
        help="seconds to wait for that at most before a start (a quarter of it before a measurement)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    try:
        settings = [Setting.parse(s) for s in a.settings.split(",") if s.strip()]
        a.prefill = [
            int(float(x.lower().rstrip("k")) * (1000 if x.lower().endswith("k") else 1))
            for x in a.prefill.split(",")
            if x.strip()
        ]
        a.concurrency = [int(x) for x in a.concurrency.split(",") if x.strip()]
        extra_env = dict(kv.split("=", 1) for kv in a.env)
    except (argparse.ArgumentTypeError, ValueError) as e:
        ap.error(str(e))
    if a.repeats < 1 or not a.concurrency or min(a.concurrency) < 1 or not a.prefill or min(a.prefill) < 16:
        ap.error("--repeats and --concurrency must be >= 1 and --prefill sizes >= 16 tokens")

    import torch
    import vllm

    print(
        f"CPU: {facts.model}; {len(facts.cpus)} allowed cores ({os.cpu_count()} online); flags: "
        + ", ".join(
            f"{f}={'yes' if f in facts.flags else 'no'}"
            for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
        )
    )
    print(f"vLLM {vllm.__version__}, torch {torch.__version__}; load average {os.getloadavg()}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    results = []
    t0 = time.monotonic()
    try:
        for s in settings:
            results.append(run_setting(s, a, extra_env, workdir))
    finally:
        keep = [str(p) for p in workdir.glob("*.log")]
        for p in workdir.iterdir():  # the caches are ours and large; the logs are kept
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
    print(f"\nwall {time.monotonic() - t0:.0f} s; logs: {workdir}")
    for r in results:
        print(
            f"{r.setting.name}: {r.isa_check}; served dtype {r.served_dtype}; shm busy loop "
            f"{(r.cpu_plan or {}).get('shm_busy_loop_s')} s (plugin ran in: {', '.join(r.plugin_processes) or 'none'})"
        )
    print()
    print(table(results, a))
    if a.json:
        a.json.write_text(
            json.dumps([{**r.__dict__, "setting": r.setting.__dict__} for r in results], indent=2, default=str) + "\n"
        )
        print(f"\n{a.json} written ({len(keep)} logs kept in {workdir})")


if __name__ == "__main__":
    main()
