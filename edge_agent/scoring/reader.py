"""The scoring workers' read loop over the store (the stream and the device scorer share it).

A :class:`TelemetryReader` is a :class:`~edge_agent.updates.slot.ModelWorker` that scores what ingest committed:
one reader connection, opened on first use, reopened after a read error (counted, logged, a pause), closed when the
thread ends; each wake runs passes until nothing is waiting, and the stop runs a final drain.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from typing import ClassVar

from edge_agent.store.db import READER_CACHE_KIB
from edge_agent.updates.slot import M, ModelWorker, S

log = logging.getLogger(__name__)

#: A woken worker looks for new rows at least this often (seconds).
IDLE_POLL_S = 1.0
#: After a failed read the worker waits this long before it tries again (seconds).
ERROR_PAUSE_S = 1.0


class TelemetryReader(ModelWorker[None, M, S]):
    """Subclasses score in :meth:`run_pass` and count their read errors in :meth:`read_failed`."""

    #: What a read error is called in the log ("inference read", "device scoring read").
    reading: ClassVar[str]
    _conn: sqlite3.Connection | None = None

    def run_pass(self, conn: sqlite3.Connection) -> bool:
        """Score up to one chunk of newly committed telemetry; True when more is waiting."""
        raise NotImplementedError

    def read_failed(self) -> None:
        """Count one failed read in the worker's metric."""
        raise NotImplementedError

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
