"""What the stream and the device scorer share: the read loop over the store and the model swap hand-off.

A :class:`TelemetryReader` is a :class:`~edge_agent.updates.slot.ModelWorker` that scores what ingest committed:

* one reader connection, opened on first use, reopened after a read error (counted, logged, a pause), closed when
  the thread ends; each wake runs passes until nothing is waiting, and the stop runs a final drain;
* a cursor over telemetry ``rowid``: at start it begins ``warmup_messages`` before the newest stored row (those
  rows are scored to warm the model up, never alerted on: :attr:`_live_from`), and more than ``queue_size`` rows
  behind, the oldest are skipped and counted (:meth:`_skip_behind`);
* the swap hand-off: a new model is loaded and warmed up on the stored rows the running model has seen, on
  the updater's thread (:meth:`prepare`, each worker's :meth:`rows_of` scores a row for it), then handed over
  (:meth:`_submit`); the scoring thread replays the few rows scored meanwhile and makes the swap between two
  rows (:meth:`_apply_pending`). The longest pause is a metric per task.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from edge_agent.clock import now_ms
from edge_agent.config import ModelsConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.scoring.replay import RowScorer, replay, warm_up
from edge_agent.store import Store
from edge_agent.store.db import READER_CACHE_KIB
from edge_agent.store.telemetry import count_between, max_rowid, warmup_start
from edge_agent.updates.slot import ModelInfo, ModelWorker, S, SlotStart, Swap

if TYPE_CHECKING:
    from edge_agent.ingest_batch import BatchResult

log = logging.getLogger(__name__)

#: A woken worker looks for new rows at least this often (seconds).
IDLE_POLL_S = 1.0
#: After a failed read the worker waits this long before it tries again (seconds).
ERROR_PAUSE_S = 1.0


class WarmModel(Protocol):
    """A scoring model with what it was loaded from and how far it was warmed up."""

    info: ModelInfo
    #: Prepared on the updater's thread: warmed up on the stored rows up to here.
    warmed_to: int


M = TypeVar("M", bound=WarmModel)


@dataclass(slots=True)
class Pending(Generic[M]):
    """A swap for the scoring thread to make at its next row boundary."""

    swap: Swap[M]
    done: threading.Event = field(default_factory=threading.Event)


class TelemetryReader(ModelWorker[None, M, S]):
    """Subclasses score in :meth:`run_pass` and count their read errors in :meth:`read_failed`."""

    #: What a read error is called in the log ("inference read", "device scoring read").
    reading: ClassVar[str]
    #: The ``ModelsConfig`` field naming the configured model file ("anomaly_model", "device_model").
    model_option: ClassVar[str]
    _conn: sqlite3.Connection | None = None

    def __init__(
        self,
        config: ModelsConfig,
        gateway_id: str,
        store: Store,
        metrics: AgentMetrics,
        emit: Callable[[Any], bool],
        installed: SlotStart | None = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        configured = getattr(config, self.model_option)
        super().__init__(config, gateway_id, store, metrics, emit, configured, installed, clock_ms)
        self._pending: Pending[M] | None = None
        self._swap_lock = threading.Lock()
        #: Longest swap the scoring thread made between two rows (seconds).
        self.max_swap_pause_s = 0.0
        #: The last telemetry row scored (or skipped).
        self._cursor = 0
        #: Rows up to here were stored before start: scored to warm the model up, never alerted on.
        self._live_from = 0

    def on_stored(self, result: BatchResult) -> None:
        """An ingest batch committed (on the ingest thread): wake up when it stored telemetry."""
        if result.stored["telemetry"]:
            self.notify()

    # ----------------------------------------------------------------- what a scorer writes

    def run_pass(self, conn: sqlite3.Connection) -> bool:
        """Score up to one chunk of newly committed telemetry; True when more is waiting."""
        raise NotImplementedError

    def read_failed(self) -> None:
        """Count one failed read in the worker's metric."""
        raise NotImplementedError

    def rows_of(self, model: M) -> RowScorer:
        """How ``model`` scores one stored row when it is warmed up (results unused)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- the swap hand-off

    def prepare(self, info: ModelInfo) -> M:
        """Load ``info`` and warm it up on the last ``warmup_messages`` stored rows the running model has seen."""
        model = self._load(info)
        model.warmed_to = self._cursor
        if self._config.warmup_messages > 0 and model.warmed_to > 0:
            conn = self._store.connect(cache_kib=READER_CACHE_KIB)
            try:
                n, model.warmed_to = warm_up(conn, self.rows_of(model), self._config.warmup_messages,
                                             lambda: self._cursor)
            finally:
                conn.close()
            log.info("%s model v%d warmed up on %d stored readings", self.task, info.version, n)
        return model

    def _catch_up(self, conn: sqlite3.Connection, model: M) -> None:
        """Replay the rows the running model scored while ``model`` was warming up."""
        if model.warmed_to < self._cursor:
            replay(conn, self.rows_of(model), model.warmed_to, self._cursor)

    def shadow_model(self) -> ModelInfo | None:
        pending = self._pending
        if pending is not None and pending.swap.kind == "shadow" and pending.swap.model is not None:
            return pending.swap.model.info
        return super().shadow_model()

    def _submit(self, swap: Swap[M], timeout_s: float) -> bool:
        """Hand the swap to the scoring thread, which makes it between two rows."""
        pending = Pending(swap)
        with self._swap_lock:
            self._pending = pending
        self.notify()
        return pending.done.wait(timeout_s)

    def _apply_pending(self, conn: sqlite3.Connection) -> None:
        """Make the requested swap (scoring thread, between two rows)."""
        with self._swap_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        started = time.perf_counter()
        try:
            if pending.swap.model is not None:
                self._catch_up(conn, pending.swap.model)
            with self._lock:
                self._apply(pending.swap)
        finally:
            pending.done.set()
            self.max_swap_pause_s = max(self.max_swap_pause_s, time.perf_counter() - started)
            self._metrics.model_swap_max_pause.labels(self.task).set(self.max_swap_pause_s)

    # ----------------------------------------------------------------- the cursor

    def _launch(self) -> None:
        conn = self._store.connect(cache_kib=READER_CACHE_KIB)
        try:
            self._live_from = max_rowid(conn)
            self._cursor = warmup_start(conn, self._config.warmup_messages)
        finally:
            conn.close()
        if self._cursor < self._live_from:
            log.info("%s: warming up on %d stored messages", self.work, self._live_from - self._cursor)
        super()._launch()

    def _skip_behind(self, conn: sqlite3.Connection, newest: int) -> int:
        """Past the warm-up and more than ``queue_size`` rows behind: skip the oldest; how many were skipped."""
        if self._cursor < self._live_from or newest - self._cursor <= self._config.queue_size:
            return 0
        skip_to = newest - self._config.queue_size
        skipped = count_between(conn, self._cursor, skip_to)
        if skipped:
            log.warning("%s %d messages behind: skipped the oldest %d", self.work, newest - self._cursor, skipped)
        self._cursor = skip_to
        return skipped

    # ----------------------------------------------------------------- the read loop

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        try:
            yield None
        finally:
            self._close()

    def step(self, resource: None) -> None:
        self.wait_for_wake(IDLE_POLL_S)
        self._passes(final=False)

    def finish(self, resource: None) -> None:
        """Score what was committed before the stop: a final drain (:meth:`run_pass` bounds it)."""
        self._passes(final=True)

    def _passes(self, final: bool) -> None:
        try:
            if self._conn is None:
                self._conn = self._store.connect(cache_kib=READER_CACHE_KIB)
            while self.run_pass(self._conn) and (final or not self.stopping):
                pass
        except sqlite3.Error as exc:
            self.read_failed()
            log.warning("%s failed (%s); retrying", self.reading, exc)
            self._close()
            if not final:
                self.sleep(ERROR_PAUSE_S)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
