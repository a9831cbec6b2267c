"""GET /api/v1/alerts and /api/v1/forecasts: filters and keyset pagination."""

from __future__ import annotations

from cloud_testkit import BASE_TS, admin_headers, alert_record, batch, forecast_record, gz, register
from fastapi.testclient import TestClient


def _sync(client: TestClient, headers: dict[str, str], gateway_id: str, records: list) -> None:
    resp = client.post("/api/v1/sync", content=gz(batch(gateway_id, records)),
                       headers={**headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text


def test_alerts_filters_and_pages(client: TestClient) -> None:
    a, b = register(client, "gw-a"), register(client, "gw-b")
    _sync(client, a, "gw-a", [alert_record("gw-a", n, device="cold-1" if n % 2 else "cold-2") for n in range(5)])
    _sync(client, b, "gw-b", [alert_record("gw-b", n, device="cold-3", ts=BASE_TS + 2) for n in range(3)])
    everything = client.get("/api/v1/alerts", headers=admin_headers(), params={"limit": 1000}).json()
    assert len(everything["items"]) == 8 and everything["next_cursor"] is None
    ts = [item["alert"]["ts"] for item in everything["items"]]
    assert ts == sorted(ts)
    first = everything["items"][0]
    assert first["gateway_id"] == "gw-a" and first["alert"]["kind"] == "anomaly" and first["alert"]["score"] == 0.97

    only_b = client.get("/api/v1/alerts", headers=admin_headers(), params={"gateway_id": "gw-b"}).json()
    assert {i["gateway_id"] for i in only_b["items"]} == {"gw-b"} and len(only_b["items"]) == 3
    cold1 = client.get("/api/v1/alerts", headers=admin_headers(), params={"device_id": "cold-1"}).json()
    assert len(cold1["items"]) == 2
    since = client.get("/api/v1/alerts", headers=admin_headers(), params={"since": BASE_TS + 3}).json()
    assert [i["alert"]["alert_id"] for i in since["items"]] == ["a3", "a4"]

    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/alerts", headers=admin_headers(), params=params).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i["id"] for i in everything["items"]]


def test_forecasts_filter_by_sku_and_since(client: TestClient) -> None:
    gw = register(client, "gw-a")
    _sync(client, gw, "gw-a", [forecast_record("gw-a", n, sku=f"SKU-{n % 2}") for n in range(6)])
    sku1 = client.get("/api/v1/forecasts", headers=admin_headers(), params={"sku": "SKU-1"}).json()["items"]
    assert [f["forecast"]["forecast_id"] for f in sku1] == ["f1", "f3", "f5"]
    assert sku1[0]["forecast"]["p50"] == [3.0, 4.0, 5.0]
    recent = client.get("/api/v1/forecasts", headers=admin_headers(),
                        params={"since": BASE_TS + 4, "limit": 1}).json()
    assert [f["forecast"]["forecast_id"] for f in recent["items"]] == ["f4"] and recent["next_cursor"]


def test_bad_query_parameters_name_the_field(client: TestClient) -> None:
    resp = client.get("/api/v1/alerts", headers=admin_headers(), params={"limit": 0})
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "limit"
    resp = client.get("/api/v1/forecasts", headers=admin_headers(), params={"cursor": "nonsense"})
    assert resp.status_code == 400 and resp.json()["detail"][0]["field"] == "cursor"

