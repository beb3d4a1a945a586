"""A launched server's process tree: spawned in its own group, stopped as a group, never left behind.

vLLM forks an engine-core process (and workers) that outlive a killed API process unless the whole
process group is signalled, so a server is spawned with `start_new_session` and stopped with
`stop_group` (SIGTERM to the group, wait, SIGKILL, then reap what is left). Membership and liveness
come from psutil. The safety net: every registered server is stopped at interpreter exit (atexit),
on SIGTERM to this process (turned into SystemExit while a server runs, so `with`/`finally` blocks
run) and, when spawned from the main thread, by the kernel if this process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import IO, Protocol

import psutil

HOST = "127.0.0.1"


class Stoppable(Protocol):
    def stop(self) -> None: ...


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`. Zombies are ignored: they hold no
    resources and vanish when reaped, but `killpg(pgid, 0)` still counts them."""
    members = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) or os.getpgid(p.pid) != pgid:
                continue
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
        members.append(p.pid)
    return members


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float, step: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def reap_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """The leader is gone (or going); make sure the rest of its group (engine core) is too."""
    pgid = proc.pid  # pgid == pid (start_new_session)
    if group_members(pgid):
        signal_group(pgid, signal.SIGTERM)
        if not _wait_group_gone(pgid, timeout, 0.1):
            signal_group(pgid, signal.SIGKILL)
            _wait_group_gone(pgid, 5.0, 0.05)
    with contextlib.suppress(Exception):
        proc.wait(timeout=1)


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM the group, wait up to `timeout` for the leader, then SIGKILL; reap the rest."""
    if proc.poll() is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    reap_group(proc, timeout=min(timeout, 10.0))


def spawn_group(argv: Sequence[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen:
    """Start `argv` as the leader of a new process group, stdout+stderr into `log`. Raises OSError."""
    main = threading.current_thread() is threading.main_thread()
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # own process group: stop_group signals the whole tree
        close_fds=True,
        # PDEATHSIG fires when the *thread* that forked exits: main thread only.
        preexec_fn=_pdeathsig_preexec_fn() if main else None,
    )


_libc = None


def _pdeathsig_preexec_fn():
    """A preexec_fn asking the kernel to SIGTERM the child when this thread's process dies.

    libc is loaded here, in the parent: the function that runs between fork and exec must not
    dlopen anything. None where prctl is unavailable (non-Linux)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        prctl = _libc.prctl
    except (OSError, AttributeError):  # pragma: no cover
        return None

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


# ----------------------------------------------------------------------------------------------
# Process-wide safety net: every running server is stopped at exit and on SIGTERM.

_running: weakref.WeakSet[Stoppable] = weakref.WeakSet()
_registry_lock = threading.RLock()
_prev_sigterm = None
_handler_installed = False
_atexit_registered = False


def _stop_all() -> None:
    for srv in list(_running):
        with contextlib.suppress(Exception):
            srv.stop()


def _on_sigterm(signum, frame):  # pragma: no cover - exercised in a subprocess test
    # Turn SIGTERM into SystemExit so `with`/`finally` blocks run and stop the server; the
    # atexit hook catches anything left.
    raise SystemExit(128 + signum)


def register(srv: Stoppable) -> None:
    """Stop `srv` at exit and on SIGTERM (until `unregister`)."""
    global _prev_sigterm, _handler_installed, _atexit_registered
    with _registry_lock:
        _running.add(srv)
        if not _atexit_registered:
            atexit.register(_stop_all)
            _atexit_registered = True
        if not _handler_installed and threading.current_thread() is threading.main_thread():
            prev = signal.getsignal(signal.SIGTERM)
            if prev in (signal.SIG_DFL, None):  # respect a handler the application installed
                signal.signal(signal.SIGTERM, _on_sigterm)
                _prev_sigterm = prev
                _handler_installed = True


def unregister(srv: Stoppable) -> None:
    global _handler_installed
    with _registry_lock:
        _running.discard(srv)
        if (
            not _running
            and _handler_installed
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _on_sigterm
        ):
            signal.signal(signal.SIGTERM, _prev_sigterm or signal.SIG_DFL)
            _handler_installed = False
