"""Column sets that several tables of the cloud store share (fresh ``Column`` objects on every call)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Integer, String, false


def count_columns(kinds: tuple[str, ...]) -> list[Column[int]]:
    """A gateway's counter ``n_<kind>`` per sync record kind."""
    return [Column(f"n_{kind}", BigInteger, nullable=False, server_default="0") for kind in kinds]


def message_columns() -> list[Column[Any]]:
    """Columns shared by the tables of device messages (envelope + where and when it arrived)."""
    return [
        Column("gateway_id", String(64), primary_key=True),
        Column("id", String(200), primary_key=True),
        Column("device_id", String(64), nullable=False),
        Column("boot_id", String(64), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("msg_id", String(64), nullable=False),
        Column("ts", BigInteger, nullable=False),
        Column("received_ts", BigInteger, nullable=False),
        Column("stored_ts", BigInteger, nullable=False),
    ]


def queue_columns() -> list[Column[Any]]:
    """Columns every durable job queue has (cloud.jobs.queue): cancellation, attempts and the worker's lease."""
    return [
        Column("cancel_requested", Boolean, nullable=False, server_default=false()),
        Column("attempts", Integer, nullable=False, server_default="0"),
        #: The worker holding the job while it runs ("host:pid:nonce"), its lease (database clock, ms).
        Column("worker", String(200), nullable=True),
        Column("lease_expires_ts", BigInteger, nullable=True),
        Column("heartbeat_ts", BigInteger, nullable=True),
    ]
