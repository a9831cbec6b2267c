"""Stock synced by gateways: tables stock_positions and stock_discrepancies (issue 15).

Versioned state, keyed by the gateway first: the newest version of each position a gateway's book
keeps and the newest revision of each cycle count's discrepancy (``cloud.services.stock``).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import BigInteger, Boolean, Column, Connection, Index, MetaData, String, Table

_new: Final = MetaData()

Table(
    "stock_positions",
    _new,
    Column("gateway_id", String(64), primary_key=True),
    Column("site", String(64), primary_key=True),
    Column("location", String(64), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("record_id", String(200), nullable=False),
    Column("on_hand", BigInteger, nullable=False),
    Column("negative", Boolean, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("last_scan_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Column("count_ts", BigInteger, nullable=True),
    Column("stock_out", Boolean, nullable=False),
    Column("stored_ts", BigInteger, nullable=False),
    Index("ix_stock_positions_site_sku", "site", "sku"),
)

Table(
    "stock_discrepancies",
    _new,
    Column("gateway_id", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("boot_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("record_id", String(200), nullable=False),
    Column("site", String(64), nullable=False),
    Column("location", String(64), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("counted", BigInteger, nullable=False),
    Column("expected", BigInteger, nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Column("stored_ts", BigInteger, nullable=False),
    Index("ix_stock_discrepancies_site_sku_ts", "site", "sku", "ts"),
)


def upgrade(conn: Connection) -> None:
    _new.create_all(conn)
