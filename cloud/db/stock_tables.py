"""Stock synced by gateways (issue 15), on the metadata of ``cloud.db.tables`` (migration 0007).

Unlike the append-only record tables, these hold versioned state: the newest version of each
position a gateway keeps, the newest revision of each cycle count's discrepancy. Both are keyed by
the gateway first, so no gateway's records touch another's, and a re-synced (or older) version
changes nothing. Imported at the end of ``cloud.db.tables``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table

from cloud.db.tables import metadata

#: The newest version of each (site, location, SKU) position of each gateway's stock book.
stock_positions: Final = Table(
    "stock_positions",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("site", String(64), primary_key=True),
    Column("location", String(64), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("record_id", String(200), nullable=False),
    Column("on_hand", BigInteger, nullable=False),
    Column("negative", Boolean, nullable=False),
    Column("version", BigInteger, nullable=False),
    #: Device clock of the newest scan that changed the position.
    Column("last_scan_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Column("count_ts", BigInteger, nullable=True),
    Column("stock_out", Boolean, nullable=False),
    Column("stored_ts", BigInteger, nullable=False),
    Index("ix_stock_positions_site_sku", "site", "sku"),
)

#: The newest revision of each cycle count's discrepancy, keyed by the count scan.
stock_discrepancies: Final = Table(
    "stock_discrepancies",
    metadata,
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

STOCK_TABLES: Final = (stock_positions, stock_discrepancies)
