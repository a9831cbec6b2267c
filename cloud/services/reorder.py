"""Reorder alerts (issue 15.3): the cloud raises one per (site, SKU) whose synced stock on hand falls
below the P90 demand over the lead time plus a safety margin, and clears it once stock is back.

    threshold = sum(p90[0:lead_time_days]) of the latest forecast + safety_units
    raise when on_hand < threshold (and none is open); clear when on_hand >= threshold

``on_hand`` is the site's synced stock of the SKU (the sum of its positions, ``cloud.services.stock``);
the forecast is the one replenishment uses (``latest_forecasts``). It is evaluated in the sync
transaction for every (site, SKU) whose stock or forecast that batch changed; a SKU without synced
stock, or whose forecast is shorter than the lead time, is not evaluated. The alerts are ordinary
alert records (``kind="system"``, ``code="reorder"``, ``observed`` = on hand, ``expected`` = the
threshold, the numbers in ``message``) stored under the gateway whose sync triggered them, with ids
``reorder:<site/SKU digest>:<raise ms>.raised`` / ``.cleared``, so alert management pairs each clear
with its raise (``cloud.services.alarm_conditions``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from cloud.db import stock_repo
from cloud.db.bulk_store import COLUMNS
from cloud.services.replenishment import latest_forecasts
from cloud.services.stock import on_hand_by_sku
from protocols import AlertPayload, alert_record_id

REORDER: Final = "reorder"


class ReorderPolicy(BaseModel):
    """When a reorder alert is raised (``EDGEHOUSE_CLOUD_REORDER_*`` settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_time_days: Annotated[int, Field(ge=1, le=28)] = 7
    safety_units: Annotated[float, Field(ge=0, le=1e9)] = 0.0


def _stem(site: str, sku: str) -> str:
    digest = hashlib.sha256(json.dumps([site, sku]).encode()).hexdigest()[:20]
    return f"{REORDER}:{digest}:"


def _open_raise(conn: Connection, site: str, sku: str) -> tuple[str, AlertPayload] | None:
    """The latest reorder alert of (site, sku) if it is a raise: (its gateway, the alert)."""
    found = stock_repo.latest_alert_with_prefix(conn, REORDER, _stem(site, sku))
    if found is None:
        return None
    gateway_id, payload = found
    alert = AlertPayload.model_validate(payload if isinstance(payload, dict) else json.loads(payload), strict=False)
    return (gateway_id, alert) if alert.state == "raised" else None


def _store_alert(conn: Connection, gateway_id: str, alert: AlertPayload, now_ms: int) -> None:
    row = {"gateway_id": gateway_id, "id": alert_record_id(alert), "alert_id": alert.alert_id, "kind": alert.kind,
           "state": alert.state, "severity": alert.severity, "device_id": None, "ts": alert.ts, "stored_ts": now_ms,
           "payload": json.loads(alert.model_dump_json(by_alias=True)), "code": alert.code, "metric": None}
    assert set(row) == set(COLUMNS["alerts"])
    stock_repo.store_cloud_alert(conn, gateway_id, row)


def evaluate(conn: Connection, gateway_id: str, pairs: Iterable[tuple[str, str]], policy: ReorderPolicy,
             now_ms: int) -> list[AlertPayload]:
    """Raise or clear the reorder alerts of ``pairs`` (site, sku); the alerts stored now."""
    wanted = sorted(set(pairs))
    if not wanted:
        return []
    stock = on_hand_by_sku(conn, wanted)
    wanted = [p for p in wanted if p in stock]
    found = latest_forecasts(conn, {s for s, _ in wanted}, {k for _, k in wanted})
    made: list[AlertPayload] = []
    for site, sku in wanted:
        latest = found.get((site, sku))
        if latest is None or len(latest.forecast.p90) < policy.lead_time_days:
            continue
        p90 = math.fsum(latest.forecast.p90[: policy.lead_time_days])
        threshold = p90 + policy.safety_units
        on_hand = stock[(site, sku)]
        is_open = _open_raise(conn, site, sku)
        numbers = (f"on hand {on_hand}, P90 demand over {policy.lead_time_days} days {p90:.1f} "
                   f"(forecast {latest.forecast.forecast_id}) + safety margin {policy.safety_units:g} "
                   f"= {threshold:.1f}")
        if on_hand < threshold and is_open is None:
            alert = AlertPayload(
                alert_id=f"{_stem(site, sku)}{now_ms}.raised", gateway_id=gateway_id, kind="system",
                state="raised", severity="warning", ts=now_ms, code=REORDER, observed=float(on_hand),
                expected=threshold, message=f"reorder {sku} at {site}: {numbers}"[:500])
            _store_alert(conn, gateway_id, alert, now_ms)
            made.append(alert)
        elif on_hand >= threshold and is_open is not None:
            raised_gw, raised = is_open
            alert = AlertPayload(
                alert_id=raised.alert_id.removesuffix(".raised") + ".cleared", gateway_id=raised_gw,
                kind="system", state="cleared", severity="info", ts=max(now_ms, raised.ts), code=REORDER,
                observed=float(on_hand), expected=threshold,
                message=f"replenished {sku} at {site}: {numbers}"[:500])
            _store_alert(conn, raised_gw, alert, now_ms)
            made.append(alert)
    return made
