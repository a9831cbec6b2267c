"""The housekeeping thread: retention, the disk quota, and backpressure when unsynced data fills it.

When unsynced data alone exceeds the quota, it pauses intake (ingest stops taking messages,
so they stay unacknowledged and the broker keeps them), sets ``quota_exceeded``, and raises one
system alert. Intake resumes, and the alert is cleared, once usage is back under 90 % of
the quota (retention drops synced history down to that mark while paused).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator

from edge_agent.background import BackgroundWorker
from edge_agent.clock import now_ms
from edge_agent.config import StoreConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Retention, RetentionResult, Store
from protocols import DISK_QUOTA, AlertPayload

log = logging.getLogger(__name__)

RESUME_FRACTION = 0.9
_PAUSED_CHECK_S = 1.0
_DAY_MS = 86_400_000


class Housekeeper(BackgroundWorker[Retention]):
    name = "housekeeping"

    def __init__(
        self,
        config: StoreConfig,
        gateway_id: str,
        store: Store,
        metrics: AgentMetrics,
        paused: threading.Event,
        raise_alert: Callable[[AlertPayload], None],
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(metrics)
        self._config = config
        self._gateway_id = gateway_id
        self._store = store
        self._metrics = metrics
        self._paused = paused
        self._raise_alert = raise_alert
        self._clock_ms = clock_ms
        self._quota = int(config.quota_mb * 1024 * 1024)
        self._alert_id: str | None = None

    def retention(self, conn: sqlite3.Connection) -> Retention:
        age = self._config.history_max_age_days
        dl_age = self._config.dead_letter_max_age_days
        return Retention(
            conn,
            self._quota,
            history_max_age_ms=None if age is None else int(age * _DAY_MS),
            dead_letter_max_age_ms=None if dl_age is None else int(dl_age * _DAY_MS),
        )

    @contextlib.contextmanager
    def session(self) -> Iterator[Retention]:
        conn = self._store.connect(cache_kib=512)  # bulk deletes every few seconds, no hot set
        try:
            yield self.retention(conn)
        finally:
            conn.close()

    def step(self, retention: Retention) -> None:
        try:
            self.run_once(retention)
        except sqlite3.Error as exc:
            log.error("retention failed: %s", exc)
        self.sleep(_PAUSED_CHECK_S if self._paused.is_set() else self._config.retention_interval_s)

    def run_once(self, retention: Retention) -> RetentionResult:
        paused = self._paused.is_set()
        resume_mark = int(self._quota * RESUME_FRACTION)
        result = retention.enforce(self._clock_ms(), target_bytes=resume_mark if paused else None)
        self._metrics.db_used_bytes.set(result.used_bytes)
        for table, n in result.deleted.items():
            self._metrics.retention_deleted.labels(table).inc(n)
        if result.over_quota and not paused:
            self._pause(result)
        elif paused and result.used_bytes <= resume_mark:
            self._resume(result)
        return result

    def _pause(self, result: RetentionResult) -> None:
        self._paused.set()
        self._metrics.quota_exceeded.set(1)
        log.error(
            "unsynced data uses %.1f MB, over the %.1f MB quota: intake paused until the cloud catches up",
            result.used_bytes / 1e6,
            result.quota_bytes / 1e6,
        )
        if self._alert_id is None:
            now = self._clock_ms()
            self._alert_id = f"quota.{self._gateway_id}.{now}"
            self._alert(
                "raised",
                "critical",
                now,
                (
                    f"unsynced data ({result.used_bytes // 1_000_000} MB) exceeds the disk quota "
                    f"({result.quota_bytes // 1_000_000} MB): intake paused, broker is holding new messages"
                ),
            )

    def _resume(self, result: RetentionResult) -> None:
        self._paused.clear()
        self._metrics.quota_exceeded.set(0)
        log.warning("database back to %.1f MB: intake resumed", result.used_bytes / 1e6)
        if self._alert_id is not None:
            self._alert("cleared", "info", self._clock_ms(), "unsynced data is back under the disk quota")
            self._alert_id = None

    def _alert(self, state: str, severity: str, now: int, message: str) -> None:
        assert self._alert_id is not None
        alert = AlertPayload(
            alert_id=f"{self._alert_id}.{state}",
            gateway_id=self._gateway_id,
            kind="system",
            state=state,  # type: ignore[arg-type]
            severity=severity,  # type: ignore[arg-type]
            ts=now,
            message=message[:500],
            code=DISK_QUOTA,
        )
        try:
            self._raise_alert(alert)
        except Exception:
            log.exception("could not raise the quota alert")
