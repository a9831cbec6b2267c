"""The sync worker: outbox -> gzip'd ``SyncBatch`` -> ``POST /api/v1/sync`` -> delete what was settled.

It owns its thread and SQLite connection. Record ids make every retry idempotent, so the
worker simply resends whatever is still in the outbox. Responses:

* 200: delete exactly ``ack.settled``; move ``ack.rejected`` to ``sync_rejected`` and alert.
* network error, 5xx, 429: retry with exponential backoff and jitter (``Retry-After`` honoured).
* 401/403: keep everything, log loudly, pause ``cloud.auth_backoff_s``.
* 400/409/413/422: the cloud refuses the batch's content: halve the batch until the refused record
  is alone, then set it aside in ``sync_rejected`` with the reason and alert: never retry
  forever, never drop silently. Any other status (404...) is treated as transient.
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import httpx
from pydantic import TypeAdapter, ValidationError

from edge_agent import __version__
from edge_agent.background import BackgroundWorker
from edge_agent.backoff import Backoff
from edge_agent.clock import now_ms
from edge_agent.cloud_client import cloud_client
from edge_agent.config import CloudConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store
from edge_agent.store import outbox as ob
from edge_agent.store.db import READER_CACHE_KIB, transaction
from edge_agent.store.outbox import OutboxRow
from protocols import SYNC_REJECTED, AlertPayload, SyncAck, SyncBatchHeader, batch_version
from protocols.sync import SyncRecord

log = logging.getLogger(__name__)

SYNC_PATH = "/api/v1/sync"
_RECORD: TypeAdapter[SyncRecord] = TypeAdapter(SyncRecord)
_GZIP_LEVEL = 5
_MIN_ROUND_GAP_S = 0.5
#: Answers that refuse the batch's content: isolate and set aside the record responsible.
_RECORD_REFUSALS = frozenset({400, 409, 413, 422})


#: How a device message of version 2 or later starts inside its outbox record (written by pydantic from
#: ``protocols`` models, whose first message field is ``v``): read without parsing the record again.
_NEWER_MESSAGE: Final = re.compile(r'"msg":\{"v":(?:[2-9]|\d\d)')


def _newer_message(row: OutboxRow) -> bool:
    """Whether the row carries a device message a v1 batch cannot (telemetry v2: the multichannel machines)."""
    return row.kind == "telemetry" and _NEWER_MESSAGE.search(row.payload, 0, 200) is not None


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
    ) -> None:
        super().__init__(metrics)
        self._config = config
        self._gateway_id = gateway_id
        self._store = store
        self._metrics = metrics
        self._raise_alert = raise_alert
        self._clock_ms = clock_ms
        self._batch_limit = config.batch_max_records
        self._flush_on_stop = False
        self._last = RoundResult(Outcome.IDLE)
        self.join_timeout_s = config.request_timeout_s + config.shutdown_flush_s + 5
        self._backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        self.last_success_ts: float | None = None

    # ----------------------------------------------------------------- lifecycle

    def stop(self, timeout_s: float | None = None, flush: bool = True) -> bool:
        """End the thread, after one last round (bounded by ``shutdown_flush_s``) if ``flush``."""
        self._flush_on_stop = flush
        return super().stop(timeout_s)

    # ----------------------------------------------------------------- thread

    def _http_client(self, timeout_s: float | None = None) -> httpx.Client:
        return cloud_client(self._config, timeout_s)

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
        """Send the oldest outbox records once and apply the answer."""
        rows = ob.read_oldest(conn, self._batch_limit)
        if not rows:
            return RoundResult(Outcome.IDLE)
        # Each record is validated on its own and dropped at once: a whole batch validated in one
        # call would hold every record as objects together (megabytes at the batch size, for
        # a header the worker writes itself).
        rows = self._drop_invalid(conn, rows)
        if not rows:
            return RoundResult(Outcome.SENT, more=True)
        batch_id = f"{self._gateway_id}.{uuid.uuid4().hex}"
        body = self._batch_json(batch_id, rows)
        try:
            response = client.post(
                SYNC_PATH,
                content=gzip.compress(body.encode(), compresslevel=_GZIP_LEVEL),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            self._metrics.sync_failures.labels("network").inc()
            log.warning("sync of %d records failed: %s", len(rows), exc)
            return RoundResult(Outcome.RETRY, sent=len(rows))
        return self._apply_response(conn, rows, batch_id, response)

    def _apply_response(
        self, conn: sqlite3.Connection, rows: list[OutboxRow], batch_id: str, response: httpx.Response
    ) -> RoundResult:
        status = response.status_code
        if status in (401, 403):
            self._metrics.sync_failures.labels("auth").inc()
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
            self._metrics.sync_failures.labels("server" if status >= 500 else "throttled").inc()
            log.warning("cloud answered HTTP %d to a sync of %d records", status, len(rows))
            return RoundResult(Outcome.RETRY, sent=len(rows), retry_after_s=_retry_after(response))
        if status in _RECORD_REFUSALS:
            return self._refused_batch(conn, rows, status, response.text[:300])
        if status != 200:
            # 404, 405, 415...: a wrong URL or an incompatible cloud, not a bad record: keep all.
            self._metrics.sync_failures.labels("http_other").inc()
            log.error("cloud answered HTTP %d at %s%s; check cloud.url", status, self._config.url, SYNC_PATH)
            return RoundResult(Outcome.RETRY, sent=len(rows))
        try:
            ack = SyncAck.model_validate_json(response.content)
        except ValidationError as exc:
            self._metrics.sync_failures.labels("bad_ack").inc()
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
        self._batch_limit = self._config.batch_max_records
        if not settled and not rejected:
            self._metrics.sync_failures.labels("nothing_settled").inc()
            log.warning("cloud settled none of %d records; retrying later", len(rows))
            return RoundResult(Outcome.RETRY, sent=len(rows))
        self._backoff.reset()
        self._metrics.synced.inc(deleted)
        self.last_success_ts = now / 1000.0
        self._metrics.last_sync_success.set(self.last_success_ts)
        if settled:
            oldest = min(sent[i].created_ts for i in settled)
            self._metrics.sync_lag.set(max(0.0, (now - oldest) / 1000.0))
        if moved:
            self._on_rejected(rejected)
        more = len(rows) >= self._batch_limit
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
        self._batch_limit = self._config.batch_max_records
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

    def _batch_json(self, batch_id: str, rows: list[OutboxRow]) -> str:
        # Outbox payloads are already SyncRecord JSON: spliced instead of re-serialised.
        header = SyncBatchHeader(
            v=batch_version((r.kind for r in rows), any(_newer_message(r) for r in rows)),
            gateway_id=self._gateway_id,
            batch_id=batch_id,
            sent_ts=self._clock_ms(),
            agent_version=__version__,
        )
        return header.batch_json(r.payload for r in rows)

    def _on_rejected(self, rejected: list[tuple[str, str]]) -> None:
        self._metrics.sync_rejected.inc(len(rejected))
        first_id, first_reason = rejected[0]
        log.error(
            "%d records set aside in sync_rejected; first %s: %s", len(rejected), first_id, first_reason
        )
        if self._raise_alert is None:
            return
        now = self._clock_ms()
        alert = AlertPayload(
            alert_id=f"sync-rejected.{self._gateway_id}.{now}.{uuid.uuid4().hex[:8]}",
            gateway_id=self._gateway_id,
            kind="system",
            state="raised",
            severity="warning",
            ts=now,
            message=f"{len(rejected)} records rejected by the cloud (kept in sync_rejected); "
            f"first {first_id}: {first_reason}"[:500],
            code=SYNC_REJECTED,
        )
        try:
            self._raise_alert(alert)
        except Exception:
            log.exception("could not raise the sync-rejected alert")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
