"""What the agent produces itself (alerts, forecasts): stored and outboxed in one transaction.

Publishing them on the MQTT gateway topics and waking the sync is
:class:`edge_agent.output.GatewayOutput`'s job; this module holds the SQL.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from edge_agent.store.db import transaction
from protocols import (
    AlertPayload,
    AlertRecord,
    ForecastPayload,
    ForecastRecord,
    alert_record_id,
    forecast_record_id,
)

GatewayPayload = AlertPayload | ForecastPayload

_INSERT_ALERT: Final = (
    "INSERT OR IGNORE INTO alerts (alert_id, ts, kind, state, severity, device_id, payload) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_FORECAST: Final = (
    "INSERT OR IGNORE INTO forecasts (forecast_id, created_ts, sku, origin, payload) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_OUTBOX: Final = "INSERT OR IGNORE INTO outbox (id, kind, created_ts, payload) VALUES (?, ?, ?, ?)"


def enqueue(conn: sqlite3.Connection, payload: GatewayPayload, now_ms: int) -> bool:
    """Store ``payload`` and put its sync record in the outbox, in one transaction; False when
    its id (``alert_id``, ``forecast_id``) was already stored."""
    with transaction(conn):
        return enqueue_in(conn, payload, now_ms)


def enqueue_in(conn: sqlite3.Connection, payload: GatewayPayload, now_ms: int) -> bool:
    """:func:`enqueue` inside the caller's transaction (the ingest's, for stock-out alerts)."""
    data = payload.model_dump_json(by_alias=True)
    record: AlertRecord | ForecastRecord
    if isinstance(payload, AlertPayload):
        a = payload
        insert, row = _INSERT_ALERT, (a.alert_id, a.ts, a.kind, a.state, a.severity, a.device_id, data)
        record = AlertRecord(id=alert_record_id(a), alert=a)
    else:
        f = payload
        insert, row = _INSERT_FORECAST, (f.forecast_id, f.created_ts, f.sku, f.origin, data)
        record = ForecastRecord(id=forecast_record_id(f), forecast=f)
    if conn.execute(insert, row).rowcount == 0:
        return False
    conn.execute(_INSERT_OUTBOX, (record.id, record.kind, now_ms, record.model_dump_json(by_alias=True)))
    return True


def is_stored(conn: sqlite3.Connection, alert: AlertPayload) -> bool:
    """Whether an alert of this id is already stored."""
    return conn.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (alert.alert_id,)).fetchone() is not None


def last_alert_with_prefix(conn: sqlite3.Connection, prefix: str) -> AlertPayload | None:
    """The newest stored alert whose id starts with ``prefix`` (a clear before a raise of the same ms)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    row = conn.execute(
        "SELECT payload FROM alerts WHERE alert_id LIKE ? ESCAPE '\\' ORDER BY ts DESC, state = 'cleared' DESC LIMIT 1",
        (escaped + "%",),
    ).fetchone()
    if row is None:
        return None
    try:
        return AlertPayload.model_validate_json(row[0])
    except ValueError:
        return None
