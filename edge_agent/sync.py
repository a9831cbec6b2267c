"""The sync worker: outbox lanes -> a bounded batch (JSON or columnar) -> ``POST /api/v1/sync`` -> delete
what was settled.

It owns its thread and SQLite connection. Each round takes alerts and device status first, then live data,
then the backlog (``store/outbox.py``), as many records as fit in the round's byte budget, and sends them
through the upload cap (``bandwidth.py``, ``sync_wire.py``). Record ids make every retry idempotent, so the
worker simply resends whatever is still in the outbox. Responses:

* 200 with a valid ack: delete exactly ``ack.settled``; move ``ack.rejected`` to ``sync_rejected`` and alert.
  Anything else answered with 200 (a captive portal's HTML page) keeps everything and retries.
* network error (timeout, reset mid-body), 5xx, 429: retry with exponential backoff and jitter
  (``Retry-After`` honoured).
* 401/403: keep everything, log loudly, pause ``cloud.auth_backoff_s``.
* 400/409/413/422: the cloud refuses the batch's content: halve the batch until the refused record
  is alone, then set it aside in ``sync_rejected`` with the reason and alert: never retry
  forever, never drop silently. Any other status (404...) is treated as transient.

While rounds keep failing, :meth:`SyncWorker.problem` says why (``/healthz``).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import httpx
from pydantic import TypeAdapter, ValidationError

from edge_agent.background import BackgroundWorker
from edge_agent.backoff import Backoff
from edge_agent.bandwidth import ByteBucket
from edge_agent.clock import now_ms
from edge_agent.cloud_client import cloud_client
from edge_agent.config_cloud import CloudConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.status import LaneStatus, SyncWireStatus
from edge_agent.store import Store
from edge_agent.store import outbox as ob
from edge_agent.store.db import READER_CACHE_KIB, transaction
from edge_agent.store.outbox import OutboxRow
from edge_agent.sync_records import batch_header, rejected_alert, retry_after
from edge_agent.sync_wire import Wire, response_bytes
from protocols import AlertPayload, SyncAck
from protocols.sync import SyncRecord

log = logging.getLogger(__name__)

SYNC_PATH = "/api/v1/sync"
_RECORD: TypeAdapter[SyncRecord] = TypeAdapter(SyncRecord)
_MIN_ROUND_GAP_S = 0.5
#: Failed rounds in a row after which ``/healthz`` reports the sync as stuck.
STUCK_AFTER_FAILURES: Final = 3
#: Answers that refuse the batch's content: isolate and set aside the record responsible.
_RECORD_REFUSALS = frozenset({400, 409, 413, 422})


class Outcome(enum.Enum):
    IDLE = "idle"  # outbox empty
    SENT = "sent"  # a batch was settled (maybe partly); more may be waiting
    RETRY = "retry"  # transient failure: back off
    AUTH = "auth"  # credentials refused: long pause
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class RoundResult:
    outcome: Outcome
    sent: int = 0
    settled: int = 0
    rejected: int = 0
    more: bool = False
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class _Session:
    conn: sqlite3.Connection
    client: httpx.Client


class SyncWorker(BackgroundWorker[_Session]):
    name = "sync"

    def __init__(
        self,
        config: CloudConfig,
        gateway_id: str,
        store: Store,
        metrics: AgentMetrics,
        raise_alert: Callable[[AlertPayload], None] | None = None,
        clock_ms: Callable[[], int] = now_ms,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport``: what sends the worker's requests (see :func:`cloud_client`); None: httpx's own."""
        super().__init__(metrics)
        self._config = config
        self._transport = transport
        self._gateway_id = gateway_id
        self._store = store
        self._metrics = metrics
        self._raise_alert = raise_alert
        self._clock_ms = clock_ms
        #: Records per batch while a refused batch is bisected; None: the encoding's own limit.
        self._batch_limit: int | None = None
        self._flush_on_stop = False
        self._last = RoundResult(Outcome.IDLE)
        self.join_timeout_s = config.request_timeout_s + config.shutdown_flush_s + 5
        self._backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        self.last_success_ts: float | None = None
        self.wire = Wire(config, ByteBucket(config, on_sent=metrics.sync_bytes_sent.inc))
        self._failures = 0
        self._round_full = False
        self._failing_since: float | None = None
        self._last_problem: str | None = None

    def problem(self) -> str | None:
        """Why sync is stuck (several failed rounds in a row), for ``/healthz``; None while it works."""
        if self._failures < STUCK_AFTER_FAILURES or self._failing_since is None:
            return None
        return (f"sync stuck for {time.monotonic() - self._failing_since:.0f}s "
                f"({self._failures} failed rounds): {self._last_problem}")

    def wire_status(self, lanes: dict[str, LaneStatus], depth: int) -> SyncWireStatus:
        """The sync on the link for ``/status``, ``/healthz`` and ``edgehouse-agent status``."""
        drain = self.wire.expected_drain_s(depth)
        return SyncWireStatus(
            cap_bytes_per_s=self.wire.bucket.cap(),
            encoding=self.wire.encoding,
            bytes_sent=self.wire.bucket.sent_bytes,
            bytes_per_record=round(self.wire.bytes_per_record(), 2),
            expected_drain_s=None if drain is None else round(drain, 1),
            lanes=lanes,
            problem=self.problem(),
        )

    def _fail(self, reason: str, why: str) -> None:
        self._metrics.sync_failures.labels(reason).inc()
        if self._failures == 0:
            self._failing_since = time.monotonic()
        self._failures += 1
        self._last_problem = why

    def _succeeded(self) -> None:
        self._failures = 0
        self._failing_since = None
        self._last_problem = None

    # ----------------------------------------------------------------- lifecycle

    def stop(self, timeout_s: float | None = None, flush: bool = True) -> bool:
        """End the thread, after one last round (bounded by ``shutdown_flush_s``) if ``flush``."""
        self._flush_on_stop = flush
        return super().stop(timeout_s)

    # ----------------------------------------------------------------- thread

    def _http_client(self, timeout_s: float | None = None) -> httpx.Client:
        return cloud_client(self._config, timeout_s, self._transport)

    @contextlib.contextmanager
    def session(self) -> Iterator[_Session]:
        self._last = RoundResult(Outcome.IDLE)
        conn = self._store.connect(cache_kib=READER_CACHE_KIB)
        try:
            with self._http_client() as client:
                yield _Session(conn, client)
        finally:
            conn.close()

    def step(self, session: _Session) -> None:
        try:
            self._last = self.run_once(session.conn, session.client)
        except (sqlite3.Error, ValidationError, OSError) as exc:
            self._metrics.sync_failures.labels("local").inc()
            log.error("sync round failed locally: %s", exc)
            self._last = RoundResult(Outcome.RETRY)
        self._wait_after(self._last)

    def finish(self, session: _Session) -> None:
        if (
            self._flush_on_stop
            and self._last.outcome is not Outcome.AUTH
            and self._config.shutdown_flush_s > 0
        ):
            self._flush(session.conn)

    def _flush(self, conn: sqlite3.Connection) -> None:
        """Last rounds before stopping, all within ``shutdown_flush_s`` (an unreachable cloud costs that)."""
        deadline = time.monotonic() + self._config.shutdown_flush_s
        try:
            with self._http_client(self._config.shutdown_flush_s) as client:
                result = self.run_once(conn, client)
                while result.more and result.outcome is Outcome.SENT and time.monotonic() < deadline:
                    result = self.run_once(conn, client)
        except (sqlite3.Error, ValidationError, OSError) as exc:
            log.warning("final sync round failed: %s", exc)

    def _wait_after(self, result: RoundResult) -> None:
        if result.outcome is Outcome.SENT and result.more:
            return
        if result.outcome is Outcome.AUTH:
            self.sleep(self._config.auth_backoff_s)
            return
        if result.outcome is Outcome.RETRY:
            delay = self._backoff.next_delay()
            if result.retry_after_s is not None:
                delay = min(max(delay, result.retry_after_s), self._config.backoff_max_s)
            log.info("sync retry in %.1fs", delay)
            self.sleep(delay)
            return
        # Idle or a partial batch: wait for new rows (with a small gap so rows coalesce) or the interval.
        self.sleep(_MIN_ROUND_GAP_S)
        self.wait_for_wake(max(0.0, self._config.interval_s - _MIN_ROUND_GAP_S))

    # ----------------------------------------------------------------- one round

    def run_once(self, conn: sqlite3.Connection, client: httpx.Client) -> RoundResult:
        """Send the most urgent outbox records (as many as the round's byte budget takes) once and apply the answer."""
        live_since = self._clock_ms() - int(self._config.live_window_s * 1000)
        limit = self.wire.records_for(self.wire.byte_budget(), self._batch_limit or self.wire.record_limit())
        rows = ob.read_lanes(conn, limit, live_since)
        if not rows:
            return RoundResult(Outcome.IDLE)
        # Each record is validated on its own and dropped at once: a whole batch validated in one
        # call would hold every record as objects together (megabytes at the batch size, for
        # a header the worker writes itself).
        rows = self._drop_invalid(conn, rows)
        if not rows:
            return RoundResult(Outcome.SENT, more=True)
        batch_id = f"{self._gateway_id}.{uuid.uuid4().hex}"
        batch = self.wire.build(batch_header(self._gateway_id, batch_id, rows, self._clock_ms()), rows)
        # More is waiting when the lanes gave all that was asked, the byte budget cut the batch, or the
        # batch was the urgent lane's alone (the data lanes come next, at once).
        urgent = all(r.kind in ob.URGENT_KINDS for r in rows)
        self._round_full = len(rows) >= limit or len(batch.rows) < len(rows) or urgent
        rows = batch.rows
        try:
            response = self.wire.send(client, SYNC_PATH, batch)
        except httpx.HTTPError as exc:
            self._fail("network", f"cloud unreachable: {type(exc).__name__}: {exc}"[:300])
            log.warning("sync of %d records failed: %s", len(rows), exc)
            return RoundResult(Outcome.RETRY, sent=len(rows))
        self._metrics.sync_bytes_received.inc(response_bytes(response))
        if self.wire.observe(batch, response):
            log.warning("cloud refused the %s encoding (HTTP %d): resending as %s",
                        batch.encoding, response.status_code, self.wire.encoding)
            return RoundResult(Outcome.SENT, sent=len(rows), more=True)
        return self._apply_response(conn, rows, batch_id, response)

    def _apply_response(
        self, conn: sqlite3.Connection, rows: list[OutboxRow], batch_id: str, response: httpx.Response
    ) -> RoundResult:
        status = response.status_code
        if status in (401, 403):
            self._fail("auth", f"cloud refused our credentials (HTTP {status}): check cloud.token")
            log.error(
                "cloud refused our credentials (HTTP %d) at %s: keeping %d+ records, next try in %.0fs; "
                "check cloud.token",
                status,
                self._config.url,
                len(rows),
                self._config.auth_backoff_s,
            )
            return RoundResult(Outcome.AUTH, sent=len(rows))
        if status == 429 or status >= 500:
            wait = response.headers.get("Retry-After")
            self._fail("server" if status >= 500 else "throttled",
                       f"cloud answered HTTP {status}" + (f" (Retry-After {wait})" if wait else ""))
            log.warning("cloud answered HTTP %d to a sync of %d records", status, len(rows))
            return RoundResult(Outcome.RETRY, sent=len(rows), retry_after_s=retry_after(response))
        if status in _RECORD_REFUSALS:
            return self._refused_batch(conn, rows, status, response.text[:300])
        if status != 200:
            # 404, 405, 415...: a wrong URL or an incompatible cloud, not a bad record: keep all.
            self._fail("http_other", f"cloud answered HTTP {status} at {self._config.url}{SYNC_PATH}: check cloud.url")
            log.error("cloud answered HTTP %d at %s%s; check cloud.url", status, self._config.url, SYNC_PATH)
            return RoundResult(Outcome.RETRY, sent=len(rows))
        try:
            ack = SyncAck.model_validate_json(response.content)
        except ValidationError as exc:
            kind = response.headers.get("content-type", "no content type")
            self._fail("bad_ack", f"cloud answered 200 with {kind[:60]}, not a sync ack "
                       "(a captive portal or proxy in the way?)")
            log.error("cloud sent an invalid sync ack: %s", exc.errors(include_url=False)[:1])
            return RoundResult(Outcome.RETRY, sent=len(rows))
        return self._apply_ack(conn, rows, batch_id, ack)

    def _apply_ack(
        self, conn: sqlite3.Connection, rows: list[OutboxRow], batch_id: str, ack: SyncAck
    ) -> RoundResult:
        if ack.batch_id != batch_id:
            log.warning("sync ack names batch %r, we sent %r", ack.batch_id, batch_id)
        sent = {r.id: r for r in rows}
        settled = ack.settled & sent.keys()
        rejected = [(r.id, r.reason) for r in ack.rejected if r.id in sent and r.id not in settled]
        now = self._clock_ms()
        with transaction(conn):
            deleted = ob.delete(conn, settled)
            moved = ob.move_to_rejected(conn, rejected, now)
        self._batch_limit = None
        if not settled and not rejected:
            self._fail("nothing_settled", f"the cloud's ack settled none of the {len(rows)} records sent")
            log.warning("cloud settled none of %d records; retrying later", len(rows))
            return RoundResult(Outcome.RETRY, sent=len(rows))
        self._backoff.reset()
        self._succeeded()
        self._metrics.synced.inc(deleted)
        self.last_success_ts = now / 1000.0
        self._metrics.last_sync_success.set(self.last_success_ts)
        if settled:
            oldest = min(sent[i].created_ts for i in settled)
            self._metrics.sync_lag.set(max(0.0, (now - oldest) / 1000.0))
        if moved:
            self._on_rejected(rejected)
        more = self._round_full
        return RoundResult(Outcome.SENT, sent=len(rows), settled=deleted, rejected=moved, more=more)

    def _refused_batch(
        self, conn: sqlite3.Connection, rows: list[OutboxRow], status: int, text: str
    ) -> RoundResult:
        """A non-retryable 4xx for the whole batch: isolate the record by halving the batch."""
        self._metrics.sync_failures.labels("refused").inc()
        if len(rows) > 1:
            self._batch_limit = max(1, len(rows) // 2)
            log.error(
                "cloud refused a batch of %d (HTTP %d: %s); retrying with %d",
                len(rows),
                status,
                text,
                self._batch_limit,
            )
            return RoundResult(Outcome.SENT, sent=len(rows), more=True)
        reason = f"HTTP {status}: {text}"
        with transaction(conn):
            moved = ob.move_to_rejected(conn, [(rows[0].id, reason)], self._clock_ms())
        self._batch_limit = None
        if moved:
            self._on_rejected([(rows[0].id, reason)])
        return RoundResult(Outcome.SENT, sent=1, rejected=moved, more=True)

    def _drop_invalid(self, conn: sqlite3.Connection, rows: list[OutboxRow]) -> list[OutboxRow]:
        """Set aside records that no longer validate against the contract (never sent, never lost)."""
        bad: list[tuple[str, str]] = []
        good: list[OutboxRow] = []
        for row in rows:
            try:
                _RECORD.validate_json(row.payload)
            except ValidationError as exc:
                bad.append((row.id, f"invalid locally: {exc.errors(include_url=False)[0].get('msg')}"))
                continue
            good.append(row)
        if bad:
            with transaction(conn):
                ob.move_to_rejected(conn, bad, self._clock_ms())
            self._on_rejected(bad)
        return good

    def _on_rejected(self, rejected: list[tuple[str, str]]) -> None:
        self._metrics.sync_rejected.inc(len(rejected))
        first_id, first_reason = rejected[0]
        log.error(
            "%d records set aside in sync_rejected; first %s: %s", len(rejected), first_id, first_reason
        )
        if self._raise_alert is None:
            return
        alert = rejected_alert(self._gateway_id, self._clock_ms(), rejected)
        try:
            self._raise_alert(alert)
        except Exception:
            log.exception("could not raise the sync-rejected alert")

