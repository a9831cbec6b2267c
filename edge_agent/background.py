"""One background thread per component, with the same start, stop and failure rules for all.

A component subclasses :class:`BackgroundWorker` and writes :meth:`~BackgroundWorker.step`, one
unit of work (it waits as it needs with :meth:`~BackgroundWorker.sleep`, which only the stop
interrupts, or :meth:`~BackgroundWorker.wait_for_wake`, which :meth:`~BackgroundWorker.notify`
interrupts too). Optionally :meth:`~BackgroundWorker.session` (what the thread holds open: its
database connection, its HTTP client; handed to every step) and :meth:`~BackgroundWorker.finish`
(once after the stop, inside the session: a last drain, a last sync round).

* Start once: :meth:`~BackgroundWorker.start` raises while the thread is started; after
  :meth:`~BackgroundWorker.stop` it may be started again (the stop event is cleared).
* :meth:`~BackgroundWorker.stop` sets the stop and wake events, joins with a timeout and logs a
  thread that did not end.
* The loop guard: an exception escaping a step is logged, counted
  (``edgehouse_agent_thread_errors_total{thread}``) and the loop goes on after a backoff with
  jitter; the thread ends only when it is stopped (or its session cannot be opened: logged).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from edge_agent.backoff import Backoff
from edge_agent.priority import lower_thread_priority

if TYPE_CHECKING:
    from edge_agent.metrics import AgentMetrics

log = logging.getLogger(__name__)

R = TypeVar("R")

#: Backoff of the loop guard after an unexpected error (seconds, doubling with jitter).
GUARD_MIN_S = 1.0
GUARD_MAX_S = 30.0


class BackgroundWorker(Generic[R]):
    """A component's thread ``edge-{name}``; ``name`` is also the component's name in ``/healthz``."""

    name: ClassVar[str]
    #: How long :meth:`stop` waits for the thread by default.
    join_timeout_s: float = 10.0

    def __init__(self, metrics: AgentMetrics | None = None, *, nice: int = 0) -> None:
        self._guard_metrics = metrics
        self._nice = nice
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard_backoff = Backoff(GUARD_MIN_S, GUARD_MAX_S)

    # ----------------------------------------------------------------- what a component writes

    def session(self) -> contextlib.AbstractContextManager[R]:
        """What the thread holds open while it runs (default: nothing); opened on the thread."""
        return contextlib.nullcontext()  # type: ignore[return-value]

    def step(self, resource: R) -> None:
        """One unit of work, with whatever waiting it needs; called until the stop."""
        raise NotImplementedError

    def finish(self, resource: R) -> None:
        """Once after the stop, before the session closes (default: nothing)."""

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._launch()

    def _launch(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"edge-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Set the stop, join the thread; False when it did not end within the timeout (logged)."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        limit = self.join_timeout_s if timeout_s is None else timeout_s
        thread.join(limit)
        if thread.is_alive():
            log.error("%s thread did not stop within %.1fs", self.name, limit)
            return False
        return True

    def notify(self) -> None:
        """Wake the thread from :meth:`wait_for_wake` (any thread: sets an event, nothing more)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def should_run(self) -> bool:
        """Whether a thread that is not running is a fault (``/healthz``) while the agent runs."""
        return True

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ----------------------------------------------------------------- waiting, on the thread

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until the stop; True when stopping."""
        return self._stopping.wait(seconds)

    def wait_for_wake(self, seconds: float) -> bool:
        """Wait ``seconds`` or until :meth:`notify` (or the stop); True when woken."""
        if self._wake.wait(seconds):
            self._wake.clear()
            return True
        return False

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        if self._nice:
            lower_thread_priority(self._nice)  # ingest and MQTT first on a shared core
        try:
            with self.session() as resource:
                while not self._stopping.is_set():
                    try:
                        self.step(resource)
                    except Exception:  # noqa: BLE001 (the loop guard: only the stop ends the thread)
                        self._guard()
                    else:
                        self._guard_backoff.reset()
                self.finish(resource)
        except Exception:
            self._count_error()
            log.exception("%s thread failed", self.name)

    def _guard(self) -> None:
        self._count_error()
        delay = self._guard_backoff.next_delay()
        log.exception("%s: unexpected error; the loop goes on in %.1fs", self.name, delay)
        self.sleep(delay)

    def _count_error(self) -> None:
        if self._guard_metrics is not None:
            self._guard_metrics.thread_errors.labels(self.name).inc()
