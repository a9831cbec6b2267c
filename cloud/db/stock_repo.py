"""Queries over the synced stock (``cloud.db.stock_tables``) and the reorder alerts kept with the alerts.

``upsert_newer`` is how stock records are stored: insert, or replace the stored row of the same key only
when it holds a lower version (``cloud.services.stock``). The rest are reads for the stock listing, the
replenishment plan and the reorder alerts (``cloud.services.reorder``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Table, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from cloud.db import alarm_repo, repo
from cloud.db.stock_tables import stock_discrepancies, stock_positions
from cloud.db.tables import alerts

_CHUNK: Final = 500
POSITION_KEY: Final = ("gateway_id", "site", "location", "sku")
COUNT_KEY: Final = ("gateway_id", "device_id", "boot_id", "seq")
#: Order of the stock listing (and its keyset cursor).
LISTING_ORDER: Final = ("site", "sku", "location", "gateway_id")


def _upsert_newer(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str],
                  version: str) -> set[str]:
    if not rows:
        return set()
    insert = postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
    columns = [c.name for c in table.columns if c.name not in key]
    stmt = insert.on_conflict_do_update(
        index_elements=list(key),
        set_={c: insert.excluded[c] for c in columns},
        where=table.c[version] < insert.excluded[version],
    ).returning(table.c.record_id)
    return {r[0] for r in conn.execute(stmt, list(rows))}


def upsert_positions(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Store positions (one row per key), each only over a lower version; the ``record_id``s written now."""
    return _upsert_newer(conn, stock_positions, rows, POSITION_KEY, "version")


def upsert_discrepancies(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Store discrepancies (one row per count scan), each only over a lower revision; the ids written now."""
    return _upsert_newer(conn, stock_discrepancies, rows, COUNT_KEY, "revision")


def on_hand_by_sku(conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Synced stock on hand per (site, sku): the sum over the site's locations (and gateways)."""
    out: dict[tuple[str, str], int] = {}
    unique = sorted(set(pairs))
    t = stock_positions
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start:start + _CHUNK]
        for row in conn.execute(select(t.c.site, t.c.sku, func.sum(t.c.on_hand))
                                .where(tuple_(t.c.site, t.c.sku).in_(chunk)).group_by(t.c.site, t.c.sku)):
            out[(row[0], row[1])] = int(row[2])
    return out


@dataclass(frozen=True, slots=True)
class SiteSkuStock:
    on_hand: int
    last_scan_ts: int
    positions: int


def stock_of_sites(conn: Connection, sites: Sequence[str]) -> dict[tuple[str, str], SiteSkuStock]:
    """Synced stock per (site, sku) of ``sites``: summed on hand, newest scan, number of positions."""
    t = stock_positions
    out: dict[tuple[str, str], SiteSkuStock] = {}
    site_list = sorted(set(sites))
    for start in range(0, len(site_list), _CHUNK):
        query = (select(t.c.site, t.c.sku, func.sum(t.c.on_hand), func.max(t.c.last_scan_ts), func.count())
                 .where(t.c.site.in_(site_list[start:start + _CHUNK])).group_by(t.c.site, t.c.sku))
        for row in conn.execute(query):
            out[(row[0], row[1])] = SiteSkuStock(int(row[2]), int(row[3]), int(row[4]))
    return out


def list_positions(conn: Connection, *, site: str | None, sku: str | None, location: str | None,
                   after: tuple[str, str, str, str] | None, limit: int) -> list[dict[str, Any]]:
    """Positions in :data:`LISTING_ORDER`, after the keyset ``after``, as dicts of their columns."""
    t = stock_positions
    order = tuple(t.c[c] for c in LISTING_ORDER)
    query = select(t)
    if site is not None:
        query = query.where(t.c.site == site)
    if sku is not None:
        query = query.where(t.c.sku == sku)
    if location is not None:
        query = query.where(t.c.location == location)
    if after is not None:
        query = query.where(tuple_(*order) > tuple_(*after))
    return [dict(r._mapping) for r in conn.execute(query.order_by(*order).limit(limit))]


def latest_alert_with_prefix(conn: Connection, code: str, prefix: str) -> tuple[str, Any] | None:
    """(gateway, payload) of the newest alert of ``code`` whose ``alert_id`` starts with ``prefix``."""
    row = conn.execute(
        select(alerts.c.gateway_id, alerts.c.payload)
        .where(alerts.c.code == code, alerts.c.alert_id.startswith(prefix, autoescape=True))
        .order_by(alerts.c.ts.desc(), alerts.c.id.desc()).limit(1)
    ).first()
    return None if row is None else (row.gateway_id, row.payload)


def store_cloud_alert(conn: Connection, gateway_id: str, row: Mapping[str, Any]) -> None:
    """Store an alert the cloud raised (a row of the alerts table) and track it as an alarm."""
    repo.insert_ignore(conn, alerts, [row])
    alarm_repo.track(conn, gateway_id, [row])
