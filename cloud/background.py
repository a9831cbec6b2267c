"""One pattern for every background loop of the cloud (rollout controller, job worker slots, job upkeep).

A :class:`Loop` is a named thread that calls ``tick()`` until :meth:`Loop.stop` sets its stop
event: at once again when the tick did work (returned True), after ``interval_s`` otherwise. A tick
that raises is logged and counted and the loop waits longer (exponential, bounded), so a database
outage neither ends the loop nor floods the log. ``health`` shows ticks, errors and the last error.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cloud.clock import now_ms

log = logging.getLogger(__name__)

#: Longest wait after failing ticks.
MAX_BACKOFF_S = 60.0


@dataclass
class LoopHealth:
    ticks: int = 0
    errors: int = 0
    last_tick_ts: int | None = None
    last_error: str | None = None


class Loop:
    """``tick()`` every ``interval_s`` on its own thread; ``start()``, then ``stop()`` (joins)."""

    def __init__(self, name: str, interval_s: float, tick: Callable[[], bool | None],
                 stop_event: threading.Event | None = None, jitter: float = 0.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"{name}: interval_s must be positive")
        self.name = name
        self._interval_s = interval_s
        self._tick = tick
        self._jitter = jitter
        self.stopping = stop_event or threading.Event()
        self._thread: threading.Thread | None = None
        self.health = LoopHealth()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already started")
        self.stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        self.join(timeout_s)

    def join(self, timeout_s: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", self.name, timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            busy = False
            try:
                busy = bool(self._tick())
                failures = 0
                self.health.ticks += 1
                self.health.last_tick_ts = now_ms()
            except Exception as exc:  # one bad pass must not end the loop
                failures += 1
                self.health.errors += 1
                self.health.last_error = repr(exc)[:500]
                log.exception("%s: pass failed", self.name)
            if busy:
                continue
            wait = self._interval_s * (2 ** min(failures, 6)) if failures else self._interval_s
            wait = min(wait, max(self._interval_s, MAX_BACKOFF_S))
            self.stopping.wait(wait * (1 + self._jitter * random.random()))
