"""edge_agent.priority: background threads yield the CPU to ingest and MQTT."""

from __future__ import annotations

import os
import threading

from edge_agent.priority import lower_thread_priority


def test_background_threads_run_at_a_lower_priority_than_ingest() -> None:
    seen: dict[str, int] = {}

    def worker() -> None:
        assert lower_thread_priority(7) is True
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == min(19, base + 7)
    # Only that thread: the caller's priority is unchanged.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    assert lower_thread_priority(0) is False
