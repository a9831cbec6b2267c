"""Alert v2 columns: ``code`` (what a system alert is about, e.g. ``alert_flood``) and ``metric``.

Both are nullable; ``metric`` is filled from the stored payload of every existing alert (v1
alerts carry it in their JSON), ``code`` stays empty for them (v1 had none). The alert listing
filters on both (issue 11.3).
"""

from __future__ import annotations

import json
from typing import Any, Final

from sqlalchemy import JSON, Column, Connection, MetaData, String, Table, select, update

from cloud.db.migration_ops import add_column

_BATCH: Final = 1000
_alerts: Final = Table(
    "alerts", MetaData(),
    Column("gateway_id", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("payload", JSON, nullable=False),
    Column("metric", String(64), nullable=True),
)


def _payload(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return loaded if isinstance(loaded, dict) else {}


def upgrade(conn: Connection) -> None:
    add_column(conn, "alerts", Column("code", String(48), nullable=True))
    add_column(conn, "alerts", Column("metric", String(64), nullable=True))
    after: tuple[str, str] = ("", "")
    while True:
        rows = conn.execute(
            select(_alerts.c.gateway_id, _alerts.c.id, _alerts.c.payload)
            .where((_alerts.c.gateway_id > after[0])
                   | ((_alerts.c.gateway_id == after[0]) & (_alerts.c.id > after[1])))
            .order_by(_alerts.c.gateway_id, _alerts.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for gateway_id, record_id, payload in rows:
            metric = _payload(payload).get("metric")
            if isinstance(metric, str) and metric:
                conn.execute(update(_alerts)
                             .where(_alerts.c.gateway_id == gateway_id, _alerts.c.id == record_id)
                             .values(metric=metric[:64]))
        after = (rows[-1][0], rows[-1][1])
