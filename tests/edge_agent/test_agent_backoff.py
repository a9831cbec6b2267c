"""edge_agent.backoff: exponential backoff with jitter."""

from __future__ import annotations

import random

import pytest

from edge_agent.backoff import Backoff


def test_backoff_grows_with_jitter_caps_and_resets() -> None:
    b = Backoff(1.0, 8.0, random.Random(1))
    delays = [b.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next_delay() <= 1.0
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
