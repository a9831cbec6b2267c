"""The index that pairs alarm raises with clears (``cloud.db.alarm_repo.track``) whatever a gateway's alarm
history: ``(gateway_id, condition, is_raise, cleared_ts, ts)`` makes the open raises of a condition, and its
clears, each one range of ``ts`` (issue 13: pairing scanned every alarm of the conditions a batch touched).
It replaces ``ix_alarms_condition`` (``(gateway_id, condition, ts)``), which only pairing used."""

from __future__ import annotations

from sqlalchemy import Connection, text


def upgrade(conn: Connection) -> None:
    conn.execute(text("DROP INDEX ix_alarms_condition"))
    conn.execute(text("CREATE INDEX ix_alarms_pairing ON alarms (gateway_id, condition, is_raise, cleared_ts, ts)"))
