"""Tables of alert management (ISA-18.2, ``cloud.services.alarms``), on the metadata of ``cloud.db.tables``.

Imported at the end of ``cloud.db.tables``, so the schema is whole whichever module is imported first.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from cloud.db.tables import metadata

#: Alert management after ISA-18.2 (cloud.services.alarms): one row per synced alert record, raise or
#: clear. A raise is active until a clear of the same ``condition`` (same gateway) at or after it; its
#: acknowledgement and shelving live here, what was done in ``alarm_events``.
alarms: Final = Table(
    "alarms",
    metadata,
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
    # Pairing raises with clears (cloud.db.alarm_repo.track): the open raises of a condition (cleared_ts
    # null) and its clears (whose cleared_ts is always null) are each one range of ts, whatever the history.
    Index("ix_alarms_pairing", "gateway_id", "condition", "is_raise", "cleared_ts", "ts"),
    Index("ix_alarms_ts", "is_raise", "ts"),
)

#: Who did what to an alarm and when: ack, shelve, unshelve, comment.
alarm_events: Final = Table(
    "alarm_events",
    metadata,
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
