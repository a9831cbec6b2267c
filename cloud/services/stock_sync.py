"""The sync path's stock step (``cloud.services.sync`` calls it inside the batch's transaction).

Stores the batch's stock records (``cloud.services.stock``: newest version per gateway and key) and
evaluates the reorder alerts (``cloud.services.reorder``) of every (site, SKU) whose stock or latest
forecast the batch changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection

from cloud.services import reorder, stock
from cloud.services.reorder import ReorderPolicy
from cloud.services.stock import AnyStockRecord


def store(conn: Connection, gateway_id: str, records: Sequence[AnyStockRecord],
          new_forecasts: Iterable[tuple[str, str]], policy: ReorderPolicy, now_ms: int) -> set[str]:
    """Store ``records``, raise/clear reorder alerts; the stock record ids written now."""
    stored = stock.store(conn, records, now_ms) if records else stock.StoredStock(set(), set())
    reorder.evaluate(conn, gateway_id, stored.changed | set(new_forecasts), policy, now_ms)
    return stored.ids
