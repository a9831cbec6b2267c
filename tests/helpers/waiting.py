"""Waiting for a condition in tests, with deadlines that hold on a busy machine.

A deadline in a test says how long before we call a hang a hang; it asserts nothing about speed
(speed lives in ``bench/``). On a loaded 2-core machine a scoring thread at nice 19 or a broker
restart can take several times longer than on an idle one, so every deadline is multiplied by
:data:`SLOWDOWN` (``EDGEHOUSE_TEST_SLOWDOWN``, default 4). A passing test is not slowed down: the
wait ends as soon as the condition holds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Final

SLOWDOWN: Final = max(1.0, float(os.environ.get("EDGEHOUSE_TEST_SLOWDOWN", "4")))


def patience(seconds: float) -> float:
    """``seconds`` stretched for a busy machine."""
    return seconds * SLOWDOWN


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """True as soon as ``cond()`` is truthy; its last value when ``patience(timeout)`` ran out."""
    deadline = time.monotonic() + patience(timeout)
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())
