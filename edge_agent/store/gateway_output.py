"""What the agent produces itself (alerts, forecasts): stored and outboxed in one transaction.

Publishing them on the MQTT gateway topics is the caller's job (see ``Agent.enqueue_alert``).
"""

from __future__ import annotations

import sqlite3

from edge_agent.store.db import transaction
from protocols import (
    AlertPayload,
    AlertRecord,
    ForecastPayload,
    ForecastRecord,
    alert_record_id,
    forecast_record_id,
)


def enqueue_alert(conn: sqlite3.Connection, alert: AlertPayload, now_ms: int) -> bool:
    """Store ``alert`` and put it in the outbox; False when this alert_id was already stored."""
    payload = alert.model_dump_json(by_alias=True)
    record = AlertRecord(id=alert_record_id(alert), alert=alert).model_dump_json(by_alias=True)
    with transaction(conn):
        cur = conn.execute(
            "INSERT OR IGNORE INTO alerts (alert_id, ts, kind, state, severity, device_id, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (alert.alert_id, alert.ts, alert.kind, alert.state, alert.severity, alert.device_id, payload),
        )
        if cur.rowcount == 0:
            return False
        conn.execute(
            "INSERT OR IGNORE INTO outbox (id, kind, created_ts, payload) VALUES (?, 'alert', ?, ?)",
            (alert_record_id(alert), now_ms, record),
        )
    return True


def enqueue_forecast(conn: sqlite3.Connection, forecast: ForecastPayload, now_ms: int) -> bool:
    """Store ``forecast`` and put it in the outbox; False when this forecast_id was already stored."""
    payload = forecast.model_dump_json(by_alias=True)
    record = ForecastRecord(id=forecast_record_id(forecast), forecast=forecast).model_dump_json(by_alias=True)
    with transaction(conn):
        cur = conn.execute(
            "INSERT OR IGNORE INTO forecasts (forecast_id, created_ts, sku, origin, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            (forecast.forecast_id, forecast.created_ts, forecast.sku, forecast.origin, payload),
        )
        if cur.rowcount == 0:
            return False
        conn.execute(
            "INSERT OR IGNORE INTO outbox (id, kind, created_ts, payload) VALUES (?, 'forecast', ?, ?)",
            (forecast_record_id(forecast), now_ms, record),
        )
    return True
