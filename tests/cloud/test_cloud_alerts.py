"""Alert v2 in the cloud: drivers, detector, window, flood figures stored and served by GET /api/v1/alerts
exactly as the gateway sent them, next to v1 alerts of older agents; the code/kind/metric/state filters."""

from __future__ import annotations

from typing import Any

from cloud_testkit import BASE_TS, admin_headers, alert_record, batch, gz, register
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cloud.db.tables import alerts
from protocols import ALERT_FLOOD, AlertPayload, alert_record_id

GW = "gw-a"


def _record(alert: dict[str, Any]) -> dict[str, Any]:
    payload = AlertPayload.model_validate(alert, strict=False)
    return {"kind": "alert", "id": alert_record_id(payload), "alert": alert}


def stream_alert(n: int) -> dict[str, Any]:
    return {"schema": "edgehouse.alert", "v": 2, "alert_id": f"anomaly:cold-{n}:temperature_c:{BASE_TS + n}:raised",
            "gateway_id": GW, "kind": "anomaly", "state": "raised", "severity": "warning", "ts": BASE_TS + n,
            "message": "temperature_c of cold-1: anomaly score 0.91", "device_id": f"cold-{n}",
            "metric": "temperature_c", "score": 0.91, "threshold": 0.55, "expected": 4.0, "observed": 9.5,
            "window_start_ts": BASE_TS - 60_000, "window_end_ts": BASE_TS + n, "model_version": 3, "code": None,
            "detector": "model", "window_readings": 64,
            "drivers": [{"device_id": f"cold-{n}", "metric": "temperature_c", "contribution": 1.0, "score": 0.91,
                         "expected": 4.0, "observed": 9.5, "alerts": None}],
            "flood": None}


def device_alert() -> dict[str, Any]:
    return {**stream_alert(0), "alert_id": f"anomaly:pump-1:device:{BASE_TS + 20}:raised", "device_id": "pump-1",
            "metric": None, "ts": BASE_TS + 20, "window_end_ts": BASE_TS + 20, "detector": "joint", "drivers": [
                {"device_id": "pump-1", "metric": "vibration_rms_mm_s", "contribution": 0.625, "score": None,
                 "expected": 2.0, "observed": 6.1, "alerts": None},
                {"device_id": "pump-1", "metric": "power_w", "contribution": 0.375, "score": None,
                 "expected": 900.0, "observed": 1010.0, "alerts": None}]}


def flood_alert(state: str, ts: int, suppressed: int) -> dict[str, Any]:
    return {"schema": "edgehouse.alert", "v": 2, "alert_id": f"alert_flood.{GW}.{BASE_TS + 30}.{state}",
            "gateway_id": GW, "kind": "system", "state": state, "severity": "critical", "ts": ts,
            "message": "alert flood at berlin", "device_id": None, "metric": None, "score": None, "threshold": None,
            "expected": None, "observed": None, "window_start_ts": BASE_TS, "window_end_ts": ts,
            "model_version": None, "code": ALERT_FLOOD, "detector": None, "window_readings": None,
            "drivers": [{"device_id": "cold-1", "metric": "temperature_c", "contribution": 0.5, "score": None,
                         "expected": None, "observed": None, "alerts": 6}],
            "flood": {"site": "berlin", "window_s": 600, "flood_limit": 10, "clear_limit": 5,
                      "alerts_in_window": 12, "suppressed": suppressed, "since_ts": BASE_TS + 30}}


def _sync(client: TestClient, headers: dict[str, str], records: list[dict[str, Any]]) -> dict[str, Any]:
    resp = client.post("/api/v1/sync", content=gz(batch(GW, records)), headers={**headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _alerts(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    resp = client.get("/api/v1/alerts", headers=admin_headers(), params={"limit": 1000, **params})
    assert resp.status_code == 200, resp.text
    return [item["alert"] for item in resp.json()["items"]]


def test_v2_alert_fields_round_trip_next_to_v1_alerts(client: TestClient, engine: Engine) -> None:
    headers = register(client, GW)
    old = alert_record(GW, 99, ts=BASE_TS - 1)  # an older agent's v1 alert
    sent = [stream_alert(1), stream_alert(2), device_alert(), flood_alert("raised", BASE_TS + 30, 1),
            flood_alert("cleared", BASE_TS + 700_000, 37)]
    ack = _sync(client, headers, [old, *(_record(a) for a in sent)])
    assert len(ack["stored"]) == 6 and ack["rejected"] == []
    served = _alerts(client)
    v1_defaults = {"window_start_ts": None, "window_end_ts": None, "model_version": None}
    assert served == [{**v1_defaults, **old["alert"]}, *sent]  # as sent: v1 as v1 (no v2 keys), v2 with every field
    # retried: nothing new, nothing changed
    assert _sync(client, headers, [old, *(_record(a) for a in sent)])["stored"] == []
    assert _alerts(client) == served
    with engine.connect() as conn:
        rows = {r.alert_id: (r.code, r.metric) for r in conn.execute(select(alerts.c.alert_id, alerts.c.code,
                                                                             alerts.c.metric))}
    assert rows[old["alert"]["alert_id"]] == (None, "temperature_c")
    assert rows[sent[3]["alert_id"]] == (ALERT_FLOOD, None)


def test_alerts_filter_by_code_kind_metric_and_state(client: TestClient) -> None:
    headers = register(client, GW)
    _sync(client, headers, [alert_record(GW, 99, ts=BASE_TS - 1)]
          + [_record(a) for a in (stream_alert(1), device_alert(), flood_alert("raised", BASE_TS + 30, 1),
                                  flood_alert("cleared", BASE_TS + 700_000, 37))])
    floods = _alerts(client, code=ALERT_FLOOD)
    assert [(a["state"], a["flood"]["suppressed"]) for a in floods] == [("raised", 1), ("cleared", 37)]
    assert [a["code"] for a in _alerts(client, kind="system")] == [ALERT_FLOOD, ALERT_FLOOD]
    assert len(_alerts(client, kind="anomaly")) == 3
    assert [a["v"] for a in _alerts(client, metric="temperature_c")] == [1, 2]
    assert [a["alert_id"] for a in _alerts(client, code=ALERT_FLOOD, state="cleared")] == [
        f"alert_flood.{GW}.{BASE_TS + 30}.cleared"]
    assert _alerts(client, code="disk_quota") == []


def test_bad_alert_filters_name_the_parameter(client: TestClient) -> None:
    for params, field in (({"code": "Alert-Flood"}, "code"), ({"kind": "bogus"}, "kind"),
                          ({"state": "open"}, "state"), ({"metric": "m" * 65}, "metric")):
        resp = client.get("/api/v1/alerts", headers=admin_headers(), params=params)
        assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == field, resp.text
