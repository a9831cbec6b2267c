"""The ingest thread: drain the inbound queue in batches, commit them, then acknowledge them.

It owns its SQLite connection. A message is acknowledged to the broker only after the
transaction holding it (or its dead letter) is committed, in arrival order, so a crash at any
moment loses nothing: whatever was not acknowledged is redelivered from the broker's
persistent session and de-duplicated on ``(device_id, boot_id, seq)``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from edge_agent.background import BackgroundWorker
from edge_agent.clock import now_ms
from edge_agent.config import IngestConfig
from edge_agent.inbound import Acker, Inbound, InboundQueue
from edge_agent.ingest_batch import BatchResult, BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.1
_RETRY_MIN_S = 0.1
_RETRY_MAX_S = 5.0
#: The ingest connection leaves checkpoints to the Checkpointer thread; this is a safety net
#: (about 40 MB of WAL) should that thread fall behind.
_INGEST_AUTOCHECKPOINT_PAGES = 10_000


class Ingest(BackgroundWorker[BatchWriter]):
    """Start with :meth:`start`; :meth:`stop` drains what is queued (unless intake is paused)."""

    name = "ingest"
    join_timeout_s = 30.0

    def __init__(
        self,
        config: IngestConfig,
        site: str,
        store: Store,
        inbox: InboundQueue,
        ack: Acker,
        metrics: AgentMetrics,
        paused: threading.Event,
        clock_ms: Callable[[], int] = now_ms,
        on_stored: Sequence[Callable[[BatchResult], None]] = (),
        gateway_id: str | None = None,
    ) -> None:
        super().__init__(metrics)
        self._config = config
        self._site = site
        #: The stock book's changes are synced as this gateway's records (None: the book only).
        self._gateway_id = gateway_id
        self._store = store
        self._inbox = inbox
        self._ack = ack
        self._metrics = metrics
        self._paused = paused
        self._clock_ms = clock_ms
        #: Called on the ingest thread after a commit that stored records (they only set events).
        self._on_stored = tuple(on_stored)
        self._ready = threading.Event()
        self._error: Exception | None = None
        #: Set when a commit was given up while stopping: the final drain is skipped.
        self._abandoned = False

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the thread and wait until its connection is open and the RFID state loaded."""
        self._ready.clear()
        self._error = None
        self._abandoned = False
        self._launch()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("ingest did not become ready")
        if self._error is not None:
            raise RuntimeError(f"ingest failed to start: {self._error}") from self._error

    @contextlib.contextmanager
    def session(self) -> Iterator[BatchWriter]:
        try:
            conn = self._store.connect(autocheckpoint_pages=_INGEST_AUTOCHECKPOINT_PAGES)
        except (sqlite3.Error, OSError) as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            raise
        try:
            writer = BatchWriter(
                conn,
                self._site,
                self._config.rfid_burst_window_ms,
                self._config.dead_letter_max_bytes,
                gateway_id=self._gateway_id,
            )
            writer.load_state()
        except (sqlite3.Error, OSError) as exc:
            self._error = exc
            self._ready.set()
            conn.close()
            raise
        self._ready.set()
        try:
            yield writer
        finally:
            conn.close()

    def step(self, writer: BatchWriter) -> None:
        if self._paused.is_set():
            # Backpressure: leave messages unacknowledged; the broker keeps the rest.
            self.sleep(_IDLE_POLL_S)
            return
        batch = self._take_batch()
        if batch and not self._store_and_ack(writer, batch):
            self._abandoned = True  # gave up on a failing database while stopping: nothing acked

    def finish(self, writer: BatchWriter) -> None:
        """Drain what is queued (commit + ack), unless intake is paused or a commit was given up."""
        while not self._abandoned and not self._paused.is_set():
            batch = self._take_batch()
            if not batch or not self._store_and_ack(writer, batch):
                return

    def _store_and_ack(self, writer: BatchWriter, batch: list[Inbound]) -> bool:
        if not self._commit(writer, batch):
            return False
        for m in batch:
            if m.qos:
                self._ack(m)
        return True

    def _take_batch(self) -> list[Inbound]:
        inbox = self._inbox
        try:
            first = inbox.get(timeout=_IDLE_POLL_S) if not self.stopping else inbox.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        limit = self._config.batch_max
        deadline = time.monotonic() + self._config.batch_max_wait_ms / 1000.0
        while len(batch) < limit:
            try:
                batch.append(inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _commit(self, writer: BatchWriter, batch: list[Inbound]) -> bool:
        """Store the batch, retrying transient database errors; True once it is committed."""
        delay = _RETRY_MIN_S
        while True:
            started = time.perf_counter()
            try:
                result = writer.write(batch, self._clock_ms())
            except sqlite3.OperationalError as exc:  # locked, disk full, I/O: the database, not the data
                self._metrics.ingest_errors.inc()
                log.warning("ingest commit failed (%s); retrying in %.1fs", exc, delay)
                if self.sleep(delay):
                    return False
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            except Exception as exc:  # noqa: BLE001 (one unstorable message must not stop ingest)
                log.error("batch of %d failed (%s); storing its messages one by one", len(batch), exc)
                self._metrics.ingest_errors.inc()
                one_by_one = self._write_one_by_one(writer, batch)
                if one_by_one is None:
                    if self.sleep(delay):
                        return False
                    delay = min(delay * 2, _RETRY_MAX_S)
                    continue
                result = one_by_one
            self._metrics.ingest_batch_seconds.observe(time.perf_counter() - started)
            self._record(result)
            return True

    def _write_one_by_one(self, writer: BatchWriter, batch: list[Inbound]) -> BatchResult | None:
        """Isolate a message the database refuses: dead-letter it, store the others."""
        total = BatchResult()
        for m in batch:
            try:
                one = writer.write([m], self._clock_ms())
            except sqlite3.OperationalError as exc:
                log.warning("ingest commit failed (%s)", exc)
                return None
            except Exception as exc:  # noqa: BLE001 (isolating exactly these)
                try:
                    writer.write_dead_letter(m, f"storage refused the message: {exc}", self._clock_ms())
                except sqlite3.Error as dl_exc:
                    log.error("cannot dead-letter a message either (%s)", dl_exc)
                    return None
                one = BatchResult(messages=1, dead_letters=1)
            total.messages += one.messages
            for kind, n in one.stored.items():
                total.stored[kind] += n
            total.duplicates += one.duplicates
            total.rfid_burst_dropped += one.rfid_burst_dropped
            total.dead_letters += one.dead_letters
            total.stock.positions += one.stock.positions
            total.stock.discrepancies += one.stock.discrepancies
            total.stock.picked_at_zero |= one.stock.picked_at_zero
            total.published += one.published
        return total

    def _record(self, result: BatchResult) -> None:
        m = self._metrics
        m.messages_in.inc(result.messages)
        for kind, n in result.stored.items():
            if n:
                m.stored.labels(kind).inc(n)
        if result.duplicates:
            m.duplicates.inc(result.duplicates)
        if result.rfid_burst_dropped:
            m.rfid_burst_dropped.inc(result.rfid_burst_dropped)
        if result.dead_letters:
            m.dead_letters.inc(result.dead_letters)
        if any(result.stored.values()):
            for listener in self._on_stored:
                listener(result)
