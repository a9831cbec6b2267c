"""GET /api/v1/devices/{device_id}/readings (downsampled) and /api/v1/sites/{site}/demand, both databases."""

from __future__ import annotations

from typing import Any

import pytest
from cloud_testkit import BASE_TS, admin_headers, batch, gz, register, scan_record, telemetry_record
from fastapi.testclient import TestClient

from cloud.schemas import MAX_API_INT
from cloud.services.timeseries import DAY_MS

READINGS = "/api/v1/devices/cold-1/readings"


def _sync(client: TestClient, headers: dict[str, str], gateway_id: str, records: list[dict[str, Any]],
          batch_id: str = "batch-1") -> None:
    resp = client.post("/api/v1/sync", content=gz(batch(gateway_id, records, batch_id)),
                       headers={**headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["stored"]) == len(records)


def _series(n: int, device: str = "cold-1", spike_at: int | None = None) -> list[dict[str, Any]]:
    """``n`` telemetry records one second apart: temperature 4 + (seq % 7) / 10, 9.5 at ``spike_at``."""
    return [telemetry_record(device, seq, temp=9.5 if seq == spike_at else 4.0 + (seq % 7) / 10)
            for seq in range(n)]


def _readings(client: TestClient, **params: Any) -> Any:
    resp = client.get(READINGS, headers=admin_headers(), params={"metric": "temperature_c", **params})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_readings_are_downsampled_to_buckets_that_keep_the_spike(client: TestClient) -> None:
    gw = register(client)
    _sync(client, gw, "gw-berlin-1", _series(600, spike_at=123) + _series(50, device="cold-2"))
    out = _readings(client, **{"from": BASE_TS, "to": BASE_TS + 600_000, "max_points": 10})
    assert out["bucket_ms"] == 60_000 and len(out["points"]) == 10
    assert [p["ts"] for p in out["points"]] == [BASE_TS + 60_000 * i for i in range(10)]
    assert all(p["count"] == 60 for p in out["points"])
    spiky = out["points"][2]  # seq 123 is in the third minute
    assert spiky["max"] == 9.5 and spiky["min"] == 4.0
    assert max(p["max"] for i, p in enumerate(out["points"]) if i != 2) == pytest.approx(4.6)
    expected_mean = sum(4.0 + (s % 7) / 10 for s in range(60)) / 60
    assert out["points"][0]["mean"] == pytest.approx(expected_mean)
    doors = client.get(READINGS, headers=admin_headers(),
                       params={"metric": "door_open", "from": BASE_TS, "to": BASE_TS + 600_000, "max_points": 3})
    assert [(p["min"], p["max"], p["count"]) for p in doors.json()["points"]] == [(0.0, 1.0, 200)] * 3


def test_readings_with_room_for_every_point_and_a_partial_range(client: TestClient) -> None:
    gw = register(client)
    _sync(client, gw, "gw-berlin-1", _series(30))
    out = _readings(client, **{"from": BASE_TS + 10_000, "to": BASE_TS + 20_000})  # max_points 1000: 10 ms buckets
    assert out["bucket_ms"] == 10 and [p["ts"] for p in out["points"]] == [BASE_TS + 1000 * s for s in range(10, 20)]
    assert all(p["count"] == 1 and p["min"] == p["max"] == p["mean"] for p in out["points"])
    # an odd span: ceil(span / max_points), never more buckets than max_points
    odd = _readings(client, **{"from": BASE_TS, "to": BASE_TS + 29_001, "max_points": 7})
    assert odd["bucket_ms"] == 4143 and len(odd["points"]) <= 7 and sum(p["count"] for p in odd["points"]) == 30
    assert _readings(client, **{"from": BASE_TS + 10**9, "to": BASE_TS + 2 * 10**9})["points"] == []


def test_readings_of_a_device_heard_by_two_gateways(client: TestClient) -> None:
    a, b = register(client, "gw-a", "berlin"), register(client, "gw-b", "berlin")
    _sync(client, a, "gw-a", _series(20))
    _sync(client, b, "gw-b", _series(10))
    window = {"from": BASE_TS, "to": BASE_TS + 20_000, "max_points": 1}
    assert [p["count"] for p in _readings(client, **window)["points"]] == [30]
    assert [p["count"] for p in _readings(client, **window, gateway_id="gw-b")["points"]] == [10]


@pytest.mark.parametrize(("params", "field"), [
    ({"from": 0, "to": 10}, "metric"),
    ({"metric": "pressure_pa", "from": 0, "to": 10}, "metric"),
    ({"metric": "temperature_c", "to": 10}, "from"),
    ({"metric": "temperature_c", "from": 0}, "to"),
    ({"metric": "temperature_c", "from": 10, "to": 10}, "to"),
    ({"metric": "temperature_c", "from": -1, "to": 10}, "from"),
    ({"metric": "temperature_c", "from": 0, "to": MAX_API_INT + 1}, "to"),
    ({"metric": "temperature_c", "from": "yesterday", "to": 10}, "from"),
    ({"metric": "temperature_c", "from": 0, "to": 10, "max_points": 0}, "max_points"),
    ({"metric": "temperature_c", "from": 0, "to": 10, "max_points": 10_001}, "max_points"),
    ({"metric": "temperature_c", "from": 0, "to": 10, "gateway_id": "no spaces"}, "gateway_id"),
    ({"metric": "temperature_c", "from": 0, "to": 10, "points": 5}, "points"),
])
def test_readings_parameters_are_strict(client: TestClient, params: dict[str, Any], field: str) -> None:
    resp = client.get(READINGS, headers=admin_headers(), params=params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["field"] == field


def _scan(seq: int, ts: int, sku: str = "SKU-1", qty: int = 2, direction: str = "pick") -> dict[str, Any]:
    rec = scan_record("reader-1", seq, sku)
    rec["msg"]["ts"] = ts
    rec["msg"]["body"] = {**rec["msg"]["body"], "qty": qty, "direction": direction}
    return rec


def test_daily_demand_counts_picks_of_the_sku_at_the_site(client: TestClient) -> None:
    berlin, hamburg = register(client, "gw-berlin-1", "berlin"), register(client, "gw-hh", "hamburg")
    day0 = (BASE_TS // DAY_MS) * DAY_MS
    _sync(client, berlin, "gw-berlin-1", [
        _scan(0, day0 + 1_000, qty=3), _scan(1, day0 + DAY_MS - 1, qty=4),  # day 0: 7 units, 2 scans
        _scan(2, day0 + 2 * DAY_MS + 5, qty=1),  # day 2
        _scan(3, day0 + 5_000, qty=50, direction="inbound"),  # not a pick
        _scan(4, day0 + 6_000, sku="SKU-2", qty=9),  # another SKU
        _scan(5, day0 + 4 * DAY_MS, qty=8),  # past the range
    ])
    _sync(client, hamburg, "gw-hh", [_scan(0, day0 + 1_000, qty=100)])  # another site
    resp = client.get("/api/v1/sites/berlin/demand", headers=admin_headers(),
                      params={"sku": "SKU-1", "from": day0, "to": day0 + 3 * DAY_MS})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["site"] == "berlin" and out["sku"] == "SKU-1"
    assert [(d["day_start_ts"] - day0, d["units"], d["scans"]) for d in out["days"]] == [
        (0, 7, 2), (DAY_MS, 0, 0), (2 * DAY_MS, 1, 1)]
    assert out["days"][0]["date"] == "2026-09-21"
    # a range cut inside days lists the days it touches, counting only what is inside it
    part = client.get("/api/v1/sites/berlin/demand", headers=admin_headers(),
                      params={"sku": "SKU-1", "from": day0 + 2_000, "to": day0 + DAY_MS + 1}).json()
    assert [(d["units"], d["scans"]) for d in part["days"]] == [(4, 1), (0, 0)]
    hh = client.get("/api/v1/sites/hamburg/demand", headers=admin_headers(),
                    params={"sku": "SKU-1", "from": day0, "to": day0 + DAY_MS}).json()
    assert [d["units"] for d in hh["days"]] == [100]


@pytest.mark.parametrize(("params", "field"), [
    ({"from": 0, "to": DAY_MS}, "sku"),
    ({"sku": "no spaces", "from": 0, "to": DAY_MS}, "sku"),
    ({"sku": "SKU-1", "from": DAY_MS, "to": 5}, "to"),
    ({"sku": "SKU-1", "from": 0, "to": 3_661 * DAY_MS}, "to"),
    ({"sku": "SKU-1", "to": DAY_MS}, "from"),
    ({"sku": "SKU-1", "from": 0, "to": DAY_MS, "direction": "inbound"}, "direction"),
])
def test_demand_parameters_are_strict(client: TestClient, params: dict[str, Any], field: str) -> None:
    resp = client.get("/api/v1/sites/berlin/demand", headers=admin_headers(), params=params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["field"] == field
