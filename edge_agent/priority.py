"""Thread priorities: background work (scoring, forecasts) yields the CPU to ingest and MQTT."""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)


def lower_thread_priority(nice: int) -> bool:
    """Raise the calling thread's niceness by ``nice`` (0..19); True when applied.

    On Linux every thread is a schedulable task with its own niceness, so a scoring thread at
    nice 19 runs when ingest and the MQTT network thread have nothing to do, and loses the CPU
    to them when they do. Elsewhere ``setpriority`` would renice the whole process: not applied.
    Raising niceness needs no privilege.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:
        log.warning("could not lower the priority of thread %s: %s", threading.current_thread().name, exc)
        return False
    return True
