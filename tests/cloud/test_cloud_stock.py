"""Stock synced by gateways: stored newest-version-wins per gateway, listed by GET /api/v1/stock, used by
the replenishment plan by default, and reorder alerts raised and cleared from it. SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from cloud_testkit import BASE_TS, admin_headers, gz, make_settings, register
from fastapi.testclient import TestClient

from cloud.settings import CloudSettings
from protocols import (
    StockDiscrepancy,
    StockDiscrepancyRecord,
    StockPosition,
    StockRecord,
    discrepancy_record_id,
    stock_record_id,
)

HOUR = 3600.0


@pytest.fixture
def settings(database_url: str) -> CloudSettings:
    """Reorder alerts at P90 over 3 days + 2 units in this module."""
    return make_settings(database_url, reorder_lead_time_days=3, reorder_safety_units=2.0)


def position(gw: str, site: str, location: str, sku: str, on_hand: int, version: int,
             last_scan: int = 0, **over: Any) -> dict[str, Any]:
    p = StockPosition(gateway_id=gw, site=site, location=location, sku=sku, on_hand=on_hand,
                      negative=on_hand < 0, version=version, last_scan_ts=BASE_TS + last_scan,
                      updated_ts=BASE_TS + last_scan + 5, **over)
    rec = StockRecord(id=stock_record_id(site, location, sku, version), position=p)
    return rec.model_dump(by_alias=True, mode="json")


def discrepancy(gw: str, seq: int, counted: int, expected: int, revision: int) -> dict[str, Any]:
    d = StockDiscrepancy(gateway_id=gw, site="berlin", location="A-01", sku="SKU-1", device_id="scan-1",
                         boot_id="b1", seq=seq, ts=BASE_TS + seq, counted=counted, expected=expected,
                         delta=counted - expected, revision=revision, updated_ts=BASE_TS + 100)
    rec = StockDiscrepancyRecord(id=discrepancy_record_id("scan-1", "b1", seq, revision), discrepancy=d)
    return rec.model_dump(by_alias=True, mode="json")


def forecast(gw: str, n: int, site: str, sku: str, p90: list[float], created: int = 0) -> dict[str, Any]:
    return {"kind": "forecast", "id": f"forecast:f{n}", "forecast": {
        "schema": "edgehouse.forecast", "v": 1, "forecast_id": f"f{n}", "gateway_id": gw, "site": site, "sku": sku,
        "origin": "2026-11-24", "created_ts": BASE_TS + created, "p50": [0.5 * v for v in p90], "p90": p90,
        "model_version": 1}}


def sync(client: TestClient, headers: dict[str, str], gw: str, records: list[dict[str, Any]],
         batch_id: str = "b-1") -> dict[str, Any]:
    doc = {"schema": "edgehouse.sync_batch", "v": 2, "gateway_id": gw, "batch_id": batch_id, "sent_ts": BASE_TS,
           "agent_version": "0.1.0", "records": records}
    resp = client.post("/api/v1/sync", content=gz(doc), headers={**headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def stock(client: TestClient, **query: Any) -> list[dict[str, Any]]:
    resp = client.get("/api/v1/stock", params=query, headers=admin_headers())
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def test_positions_keep_the_newest_version_and_resync_is_idempotent(client: TestClient) -> None:
    gw = register(client, "gw-1", "berlin")
    v1, v2, v3 = (position("gw-1", "berlin", "A-01", "SKU-1", q, v, last_scan=v * 10) for q, v in
                  ((10, 1), (7, 2), (-2, 3)))
    ack = sync(client, gw, "gw-1", [v1, v2])
    # both are acknowledged; the batch's older version is superseded by its newer one
    assert set(ack["stored"]) | set(ack["duplicates"]) == {v1["id"], v2["id"]} and ack["rejected"] == []
    assert v2["id"] in ack["stored"]
    assert sync(client, gw, "gw-1", [v1, v2], "b-1")["stored"] == []  # the same batch again: no change
    assert sync(client, gw, "gw-1", [v3], "b-2")["stored"] == [v3["id"]]
    assert sync(client, gw, "gw-1", [v2], "b-3")["duplicates"] == [v2["id"]]  # late and older: ignored
    [item] = stock(client)
    assert (item["on_hand"], item["negative"], item["version"], item["last_scan_ts"]) == (-2, True, 3, BASE_TS + 30)
    assert item["gateway_id"] == "gw-1" and item["location"] == "A-01"


def test_no_gateway_touches_another_gateways_stock(client: TestClient) -> None:
    gw1, gw2 = register(client, "gw-1", "berlin"), register(client, "gw-2", "berlin")
    sync(client, gw1, "gw-1", [position("gw-1", "berlin", "A-01", "SKU-1", 10, 1)])
    forged = position("gw-1", "berlin", "A-01", "SKU-1", 0, 9)
    ack = sync(client, gw2, "gw-2", [forged, position("gw-2", "berlin", "A-01", "SKU-1", 4, 1)])
    assert [r["id"] for r in ack["rejected"]] == [forged["id"]]
    assert "position.gateway_id" in ack["rejected"][0]["reason"] or "gateway_id" in ack["rejected"][0]["reason"]
    bad_id = {**position("gw-2", "berlin", "A-01", "SKU-1", 5, 2), "id": stock_record_id("berlin", "A-01", "SKU-1", 7)}
    assert [r["id"] for r in sync(client, gw2, "gw-2", [bad_id], "b-2")["rejected"]] == [bad_id["id"]]
    assert {(i["gateway_id"], i["on_hand"], i["version"]) for i in stock(client, site="berlin")} == {
        ("gw-1", 10, 1), ("gw-2", 4, 1)}


def test_stock_listing_filters_and_pages(client: TestClient) -> None:
    gw = register(client, "gw-1", "berlin")
    recs = [position("gw-1", "berlin", loc, sku, 5, 1, last_scan=i) for i, (loc, sku) in enumerate(
        [(loc, sku) for loc in ("A-01", "B 02/x") for sku in ("SKU-1", "SKU-2", "SKU-3")])]
    sync(client, gw, "gw-1", recs)
    assert {i["location"] for i in stock(client, sku="SKU-2")} == {"A-01", "B 02/x"}
    assert [(i["location"], i["sku"]) for i in stock(client, location="B 02/x", sku="SKU-3")] == [("B 02/x", "SKU-3")]
    assert stock(client, site="hamburg") == []
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/stock", params=params, headers=admin_headers()).json()
        seen += [(i["sku"], i["location"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == 6
    resp = client.get("/api/v1/stock", params={"cursor": "zz"}, headers=admin_headers())
    assert resp.status_code == 400 and resp.json()["detail"][0]["field"] == "cursor"
    resp = client.get("/api/v1/stock", params={"sku": "no sku"}, headers=admin_headers())
    assert resp.status_code == 422


def test_discrepancies_keep_the_highest_revision(client: TestClient, engine: Any) -> None:
    from sqlalchemy import select

    from cloud.db.stock_tables import stock_discrepancies as t
    gw = register(client, "gw-1", "berlin")
    r1, r2 = discrepancy("gw-1", 4, 5, 7, 1), discrepancy("gw-1", 4, 5, 6, 2)
    assert sync(client, gw, "gw-1", [r2])["stored"] == [r2["id"]]
    assert sync(client, gw, "gw-1", [r1, r2], "b-2")["stored"] == []
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.counted, t.c.expected, t.c.delta, t.c.revision)).all()
    assert [tuple(r) for r in rows] == [(5, 6, -1, 2)]


def plan_request(stores: list[dict[str, Any]]) -> dict[str, Any]:
    return {"depot": {"id": "dc", "location": {"lat": 52.40, "lon": 13.30},
                      "time_window": {"start": 6 * HOUR, "end": 18 * HOUR}},
            "fleet": {"count": 2, "capacity": [1000]}, "lead_time_days": 3, "stores": stores,
            "time_limit_s": 0.5, "engine": "ortools", "seed": 1}


def test_replenishment_uses_synced_stock_unless_on_hand_is_given(client: TestClient) -> None:
    gw_b, gw_p = register(client, "gw-b", "berlin"), register(client, "gw-p", "potsdam")
    sync(client, gw_b, "gw-b", [
        position("gw-b", "berlin", "A-01", "SKU-A", 3, 1, last_scan=50),
        position("gw-b", "berlin", "B-02", "SKU-A", 2, 4, last_scan=70),  # the site's stock: 3 + 2
        position("gw-b", "berlin", "A-01", "SKU-B", -4, 2, last_scan=20),  # negative: counts as 0
        position("gw-b", "berlin", "A-01", "SKU-C", 9, 1),
        forecast("gw-b", 1, "berlin", "SKU-A", [4.0, 4.5, 5.5]),
        forecast("gw-b", 2, "berlin", "SKU-B", [1.0, 1.0, 1.0]),
        forecast("gw-b", 3, "berlin", "SKU-C", [1.0, 1.0, 1.0]),
    ])
    sync(client, gw_p, "gw-p", [position("gw-p", "potsdam", "A", "SKU-A", 1, 1),
                                forecast("gw-p", 1, "potsdam", "SKU-A", [10.0, 10.0, 10.0])])
    planner = client.post("/api/v1/tokens", json={"role": "planner"}, headers=admin_headers()).json()["token"]
    stores = [{"site": "berlin", "location": {"lat": 52.52, "lon": 13.40}},
              {"site": "potsdam", "location": {"lat": 52.39, "lon": 13.06}, "on_hand": {"SKU-A": 25},
               "skus": ["SKU-Z"]}]
    resp = client.post("/api/v1/replenishment-plan", json=plan_request(stores),
                       headers={"Authorization": f"Bearer {planner}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    by_site = {s["site"]: s for s in body["stores"]}
    lines = {ln["sku"]: ln for ln in by_site["berlin"]["lines"]}
    assert {k: (ln["on_hand"], ln["on_hand_source"], ln["order_qty"]) for k, ln in lines.items()} == {
        "SKU-A": (5, "synced", 9), "SKU-B": (-4, "synced", 3), "SKU-C": (9, "synced", 0)}
    assert lines["SKU-A"]["stock_last_scan_ts"] == BASE_TS + 70
    potsdam = by_site["potsdam"]
    assert [(ln["sku"], ln["on_hand"], ln["on_hand_source"], ln["order_qty"]) for ln in potsdam["lines"]] == [
        ("SKU-A", 25, "request", 5)]
    assert [(m["sku"], m["reason"]) for m in potsdam["missing"]] == [("SKU-Z", "no_stock")]
    orders = {o["id"]: o["demand"] for o in body["problem"]["orders"]}
    assert orders == {"berlin": [12.0], "potsdam": [5.0]}
    assert body["plan"]["unserved"] == []
    assert {s["order_id"] for r in body["plan"]["routes"] for s in r["stops"] if s["kind"] == "order"} == {
        "berlin", "potsdam"}


def reorder_alerts(client: TestClient) -> list[dict[str, Any]]:
    resp = client.get("/api/v1/alerts", params={"code": "reorder"}, headers=admin_headers())
    assert resp.status_code == 200, resp.text
    return [i["alert"] for i in resp.json()["items"]]


def test_reorder_alert_raised_below_p90_over_lead_time_and_cleared_when_replenished(client: TestClient) -> None:
    gw = register(client, "gw-1", "berlin")
    sync(client, gw, "gw-1", [forecast("gw-1", 1, "berlin", "SKU-A", [4.0, 4.5, 5.5, 100.0])])
    assert reorder_alerts(client) == []  # no synced stock yet: nothing to compare
    sync(client, gw, "gw-1", [position("gw-1", "berlin", "A-01", "SKU-A", 20, 1)], "b-2")
    assert reorder_alerts(client) == []  # 20 >= 14 + 2
    sync(client, gw, "gw-1", [position("gw-1", "berlin", "A-01", "SKU-A", 15, 2)], "b-3")
    [raised] = reorder_alerts(client)
    assert (raised["state"], raised["kind"], raised["observed"], raised["expected"]) == ("raised", "system", 15, 16)
    assert "P90 demand over 3 days 14.0" in raised["message"] and "safety margin 2" in raised["message"]
    sync(client, gw, "gw-1", [position("gw-1", "berlin", "A-01", "SKU-A", 12, 3)], "b-4")
    assert len(reorder_alerts(client)) == 1  # still open: not raised twice
    sync(client, gw, "gw-1", [position("gw-1", "berlin", "A-01", "SKU-A", 40, 4)], "b-5")
    alerts = reorder_alerts(client)
    assert [a["state"] for a in alerts] == ["raised", "cleared"] and alerts[1]["observed"] == 40
    sync(client, gw, "gw-1", [position("gw-1", "berlin", "A-01", "SKU-A", 1, 5)], "b-6")
    assert [a["state"] for a in reorder_alerts(client)] == ["raised", "cleared", "raised"]
