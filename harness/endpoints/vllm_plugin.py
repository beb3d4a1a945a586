"""A vLLM general plugin (entry point `vllm.general_plugins`): no busy-waiting between processes.

vLLM hands each step from the engine-core process to the worker and the result back through a
shared-memory queue (vllm/distributed/device_communicators/shm_broadcast.py). A reader that found
the queue empty spins (`sched_yield` in a loop) for `busy_loop_s` = 1 s after its last read
before it blocks on a zmq notification; vLLM has no setting for it. On a 2-core machine that
costs twice: while the worker computes a decode step the engine core spins beside it (15-40 % of a
core measured), and after every request the worker spins for a further second, taking the CPU
the harness needs between requests. The writer notifies on every write, so a reader may block
instead -- but not at once: readers that blocked at once sometimes made two requests decoding
together 5x slower (bench/serving.py, `-spin0`). The launcher's default is a short busy loop
(harness/endpoints/cpu.py: 200 ms with native bf16, 50 ms on float32 CPUs): decode runs as fast as
with vLLM's 1 s, and the server takes 4-11 % of a core in the 2 s after a request instead of 50 %.

vLLM loads general plugins in every process it starts (API server, engine core, worker). This one
does nothing unless HARNESS_VLLM_SHM_BUSY_LOOP_S is set -- the harness's launcher sets it (see
harness/endpoints/cpu.py) -- so other uses of vLLM in the same environment are unaffected.
VLLM_PLUGINS (vLLM's own allow-list) can also leave it out.
"""

from __future__ import annotations

import logging
import os

ENV = "HARNESS_VLLM_SHM_BUSY_LOOP_S"
_log = logging.getLogger("vllm.harness_plugin")


def register() -> None:
    """vLLM's entry point: limit SpinCondition's busy loop to HARNESS_VLLM_SHM_BUSY_LOOP_S seconds."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return
    try:
        seconds = max(0.0, float(raw))
    except ValueError:
        _log.warning("%s=%r is not a number of seconds; vLLM's busy loop is left alone", ENV, raw)
        return
    try:
        from vllm.distributed.device_communicators import shm_broadcast
    except ImportError:  # another vLLM layout: nothing to do
        return
    cond = getattr(shm_broadcast, "SpinCondition", None)
    wait = getattr(cond, "wait", None)
    if cond is None or wait is None or getattr(wait, "_harness_busy_loop", None) is not None:
        return  # not this vLLM's queue, or patched already (plugins may load twice)

    def patched_wait(self, *args, **kwargs):
        # readers only (writers have busy_loop_s 0); set on every call, so queues created before
        # the plugin loaded are covered too
        if getattr(self, "is_reader", False) and self.busy_loop_s != seconds:
            self.busy_loop_s = seconds
        return wait(self, *args, **kwargs)

    patched_wait._harness_busy_loop = seconds  # type: ignore[attr-defined]
    patched_wait.__doc__ = wait.__doc__
    cond.wait = patched_wait
    _log.info("harness: shared-memory queue readers busy-loop %g s before blocking (pid %d)", seconds, os.getpid())
