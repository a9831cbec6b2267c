"""Alert management (alarms, alarm_events) and the fleet's health columns on gateway_model_reports (issue 16).

Alarms are filled from the alerts already stored (raises and clears paired by condition, as
``cloud.services.alarm_conditions`` does at ingest); reports get their rejected-update count.
"""

from __future__ import annotations

import json
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)

from cloud.db.migration_ops import add_column

_new: Final = MetaData()
#: The key of the existing alerts table, for the foreign key (not created here).
Table("alerts", _new, Column("gateway_id", String(64), primary_key=True), Column("id", String(200), primary_key=True))

_alarms: Final = Table(
    "alarms",
    _new,
    Column("gateway_id", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("condition", String(300), nullable=False),
    Column("is_raise", Boolean, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("cleared_ts", BigInteger, nullable=True),
    Column("acked_ts", BigInteger, nullable=True),
    Column("acked_by", String(200), nullable=True),
    Column("shelved_until", BigInteger, nullable=True),
    Column("shelved_by", String(200), nullable=True),
    Column("shelve_reason", Text, nullable=True),
    Column("n_comments", Integer, nullable=False, server_default="0"),
    ForeignKeyConstraint(["gateway_id", "id"], ["alerts.gateway_id", "alerts.id"]),
    Index("ix_alarms_condition", "gateway_id", "condition", "ts"),
    Index("ix_alarms_ts", "is_raise", "ts"),
)

_alarm_events: Final = Table(
    "alarm_events",
    _new,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("gateway_id", String(64), nullable=False),
    Column("alarm_id", String(200), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(16), nullable=False),
    Column("text", Text, nullable=True),
    Column("shelved_until", BigInteger, nullable=True),
    ForeignKeyConstraint(["gateway_id", "alarm_id"], ["alarms.gateway_id", "alarms.id"]),
    Index("ix_alarm_events_alarm", "gateway_id", "alarm_id", "event_id"),
)

# Frozen views of the tables read and written below (as they are at this migration).
_old: Final = MetaData()
_alerts: Final = Table("alerts", _old, Column("gateway_id", String(64)), Column("id", String(200)),
                       Column("alert_id", String(128)), Column("kind", String(16)), Column("state", String(16)),
                       Column("device_id", String(64)), Column("ts", BigInteger), Column("payload", Text))
_reports: Final = Table("gateway_model_reports", _old, Column("gateway_id", String(64)), Column("report", Text),
                        Column("rejected_updates", Integer))


def _condition(alert_id: str, kind: str, device_id: str | None, metric: Any) -> str:
    """The same pairing rule as cloud.services.alarm_conditions.condition at this migration."""
    for suffix in (".raised", ".cleared"):
        if alert_id.endswith(suffix):
            return f"id|{alert_id[:-len(suffix)]}"[:300]
    if kind == "anomaly" and device_id is not None and metric is not None:
        return f"anomaly|{device_id}|{metric}"[:300]
    return f"{kind}|{device_id or ''}|{metric or ''}|{alert_id}"[:300]


def _json(value: Any) -> dict[str, Any]:
    """A JSON column read as text (SQLite) or already decoded (psycopg)."""
    if isinstance(value, dict):
        return value
    return dict(json.loads(value)) if value else {}


def _fill_alarms(conn: Connection) -> None:
    rows = conn.execute(select(_alerts).order_by(_alerts.c.gateway_id, _alerts.c.ts, _alerts.c.id)).all()
    alarms: list[dict[str, Any]] = []
    open_raise: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        payload = _json(row.payload)
        cond = _condition(row.alert_id, row.kind, row.device_id, payload.get("metric"))
        item = {"gateway_id": row.gateway_id, "id": row.id, "condition": cond, "is_raise": row.state == "raised",
                "ts": row.ts, "cleared_ts": None}
        key = (row.gateway_id, cond)
        if item["is_raise"]:
            open_raise[key] = item
        elif key in open_raise:
            open_raise.pop(key)["cleared_ts"] = row.ts
        alarms.append(item)
    for start in range(0, len(alarms), 1000):
        conn.execute(_alarms.insert(), alarms[start:start + 1000])


def _fill_rejected(conn: Connection) -> None:
    for row in conn.execute(select(_reports.c.gateway_id, _reports.c.report)).all():
        tasks = _json(row.report).get("tasks") or []
        rejected = sum(1 for t in tasks if t.get("rejected_version") is not None)
        if rejected:
            conn.execute(update(_reports).where(_reports.c.gateway_id == row.gateway_id)
                         .values(rejected_updates=rejected))


def upgrade(conn: Connection) -> None:
    _alarms.create(conn)
    _alarm_events.create(conn)
    add_column(conn, "gateway_model_reports", Column("outbox_depth", BigInteger, nullable=True))
    add_column(conn, "gateway_model_reports", Column("oldest_unsynced_ts", BigInteger, nullable=True))
    add_column(conn, "gateway_model_reports", Column("mqtt_connected", Boolean, nullable=True))
    add_column(conn, "gateway_model_reports",
               Column("rejected_updates", Integer, nullable=False, server_default="0"))
    _fill_alarms(conn)
    _fill_rejected(conn)
