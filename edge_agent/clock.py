"""The agent's wall clock in epoch milliseconds (components take it as an injectable callable)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
