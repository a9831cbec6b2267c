"""The fleet view's API (issue 16): online/late/offline from the last sync and report, the health a v2 model
report carries, models and rejected updates, server-side filter/sort/pagination, one gateway's devices.
SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from cloud_testkit import admin_headers, batch, gz, register, telemetry_record
from fastapi.testclient import TestClient

GZ = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def _report(client: TestClient, gw: str, headers: dict[str, str], **health: Any) -> None:
    now = int(time.time() * 1000)
    report: dict[str, Any] = {
        "schema": "edgehouse.model_report", "v": 2, "gateway_id": gw, "ts": now, "agent_version": "0.3.0",
        "tasks": [{"task": "anomaly", "state": "running", "current_version": 4, "rejected_version": 5,
                   "rejected_code": "bad_signature", "rejected_reason": "signature does not verify",
                   "rejected_ts": now - 1000},
                  {"task": "demand", "state": "running", "current_version": 2}]}
    if health:
        report["gateway"] = health
    resp = client.post(f"/api/v1/gateways/{gw}/models/report", json=report, headers=headers)
    assert resp.status_code == 204, resp.text


def _fleet(client: TestClient, **params: Any) -> dict[str, Any]:
    resp = client.get("/api/v1/fleet", params=params, headers=admin_headers())
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_status_health_and_models_of_each_gateway(client: TestClient) -> None:
    online = register(client, "gw-online", "berlin")
    late = register(client, "gw-late", "berlin")
    register(client, "gw-never", "hamburg")
    now = int(time.time() * 1000)
    _report(client, "gw-online", online, outbox_depth=1234, oldest_unsynced_ts=now - 90_000, mqtt_connected=True)
    resp = client.post("/api/v1/sync", content=gz(batch("gw-late", [telemetry_record("cold-9", 1)])),
                       headers={**late, **GZ})
    assert resp.status_code == 200
    # gw-late's agent is up but cut off from its broker: late, not online
    _report(client, "gw-late", late, outbox_depth=0, mqtt_connected=False)
    page = _fleet(client)
    by_id = {g["gateway_id"]: g for g in page["items"]}
    assert {k: g["status"] for k, g in by_id.items()} == {"gw-online": "online", "gw-late": "late",
                                                         "gw-never": "offline"}
    g = by_id["gw-online"]
    assert g["outbox_depth"] == 1234 and 80 < g["oldest_unsynced_age_s"] < 600 and g["mqtt_connected"] is True
    assert g["agent_version"] == "0.3.0"
    assert [(m["task"], m["version"]) for m in g["models"]] == [("anomaly", 4), ("demand", 2)]
    assert g["rejected"] == [{"task": "anomaly", "version": 5, "code": "bad_signature",
                              "reason": "signature does not verify", "ts": g["rejected"][0]["ts"]}]
    assert by_id["gw-never"]["last_contact_ts"] is None and by_id["gw-never"]["outbox_depth"] is None
    assert page["by_status"] == {"online": 1, "late": 1, "offline": 1} and page["total"] == 3
    assert [x["gateway_id"] for x in _fleet(client, status="late")["items"]] == ["gw-late"]
    assert _fleet(client, status="late")["by_status"]["online"] == 1  # chips count under the other filters
    assert _fleet(client, rejected=True)["total"] == 2 and _fleet(client, rejected=False)["total"] == 1
    assert _fleet(client, site="hamburg")["total"] == 1 and _fleet(client, q="LATE")["total"] == 1


def test_server_side_sort_and_pagination(client: TestClient) -> None:
    for i in range(7):
        headers = register(client, f"gw-{i:02d}", "berlin" if i % 2 else "hamburg")
        _report(client, f"gw-{i:02d}", headers, outbox_depth=(i * 37) % 11, mqtt_connected=True)
    first = _fleet(client, sort="outbox_depth", desc=True, limit=3)
    second = _fleet(client, sort="outbox_depth", desc=True, limit=3, offset=3)
    depths = [g["outbox_depth"] for g in first["items"] + second["items"]]
    assert depths == sorted(depths, reverse=True) and first["total"] == 7 and len(second["items"]) == 3
    assert not {g["gateway_id"] for g in first["items"]} & {g["gateway_id"] for g in second["items"]}
    assert client.get("/api/v1/fleet", params={"sort": "nope"}, headers=admin_headers()).status_code == 422


def test_gateway_detail_lists_devices_and_their_metrics(client: TestClient) -> None:
    gw = register(client, "gw-a", "berlin")
    records = [telemetry_record("cold-1", n) for n in range(3)] + [telemetry_record("cold-2", 0)]
    assert client.post("/api/v1/sync", content=gz(batch("gw-a", records)), headers={**gw, **GZ}).status_code == 200
    resp = client.get("/api/v1/fleet/gw-a", headers=admin_headers())
    assert resp.status_code == 200, resp.text
    devices = {d["device_id"]: d for d in resp.json()["devices"]}
    assert devices["cold-1"]["messages"] == 3 and devices["cold-1"]["metrics"] == ["door_open", "temperature_c"]
    assert resp.json()["report"] is None
    assert client.get("/api/v1/fleet/gw-zz", headers=admin_headers()).status_code == 404


def test_gateway_detail_in_a_window_lists_recent_devices_and_counts_only_them(client: TestClient, engine: Any
                                                                              ) -> None:
    from cloud.services import fleet

    gw = register(client, "gw-w", "berlin")
    now = int(time.time() * 1000)
    day = 86_400_000

    def at(record: dict[str, Any], ts: int) -> dict[str, Any]:
        record["msg"]["ts"], record["received_ts"] = ts, ts + 5
        return record

    records = ([at(telemetry_record("old-1", n), now - 10 * day + n) for n in range(2)]
               + [at(telemetry_record("cold-1", n), now - 9 * day + n) for n in range(4)]  # before the window
               + [at(telemetry_record("cold-1", 10 + n), now - 3600_000 + n) for n in range(3)])
    assert client.post("/api/v1/sync", content=gz(batch("gw-w", records)), headers={**gw, **GZ}).status_code == 200
    t = fleet.Thresholds(late_after_ms=60_000, offline_after_ms=600_000)
    detail = fleet.gateway_detail(engine, t, "gw-w", window_ms=fleet.DEVICE_WINDOW_MS)
    assert [(d.device_id, d.messages, d.last_ts) for d in detail.devices] == [("cold-1", 3, now - 3600_000 + 2)]
    assert detail.devices[0].metrics == ["door_open", "temperature_c"]
    assert detail.devices_since_ts is not None and detail.devices_since_ts <= now - fleet.DEVICE_WINDOW_MS + 60_000
    assert detail.gateway.counts["telemetry"] == 9  # the gateway's counter: every stored message
    everything = fleet.gateway_detail(engine, t, "gw-w")
    assert {d.device_id: d.messages for d in everything.devices} == {"cold-1": 7, "old-1": 2}
