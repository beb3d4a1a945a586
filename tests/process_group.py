"""Waiting for a server's process group to end, for the tests that stop real and stand-in servers."""

from __future__ import annotations

import time

from harness.endpoints.vllm_server import group_members


def wait_gone(pgid: int, timeout: float = 15.0) -> bool:
    """True once no live process is left in group `pgid` (polled every 0.1 s, up to `timeout`)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not group_members(pgid):
            return True
        time.sleep(0.1)
    return not group_members(pgid)
