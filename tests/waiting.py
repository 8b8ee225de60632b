"""Waiting for background work by its effect, not by the clock: poll a condition until it holds,
with a deadline sized for a loaded 2-core machine (a fixed sleep is either too short there or
wasted time everywhere else)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
    """Polls `condition` every 10 ms until it is true; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
