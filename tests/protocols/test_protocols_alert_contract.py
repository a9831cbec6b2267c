"""The alert contract, v2: drivers, detector, window, flood figures; v1 alerts of older agents still valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from protocols import (
    ALERT_FLOOD,
    AlertDriver,
    AlertFlood,
    AlertPayload,
    AlertRecord,
    SyncBatch,
    alert_record_id,
    encode,
)
from protocols.schemas import SCHEMA_DIR, drift, export

#: What an agent before alert v2 sent (and what the cloud holds from it).
V1_ALERT: dict[str, Any] = {
    "schema": "edgehouse.alert", "v": 1, "alert_id": "anomaly:cold-1:temperature_c:1000:raised",
    "gateway_id": "gw-1", "kind": "anomaly", "state": "raised", "severity": "warning", "ts": 1000,
    "message": "temperature_c of cold-1: anomaly score 0.91", "device_id": "cold-1", "metric": "temperature_c",
    "score": 0.91, "threshold": 0.55, "expected": 4.0, "observed": 9.5, "window_start_ts": 10,
    "window_end_ts": 1000, "model_version": 3,
}


def _stream_alert(**over: Any) -> dict[str, Any]:
    alert = {**V1_ALERT, "v": 2, "detector": "model", "window_readings": 64,
             "drivers": [{"device_id": "cold-1", "metric": "temperature_c", "contribution": 1.0, "score": 0.91,
                          "expected": 4.0, "observed": 9.5}]}
    alert.update(over)
    return alert


def _device_alert(**over: Any) -> dict[str, Any]:
    alert = _stream_alert(metric=None, detector="joint", drivers=[
        {"device_id": "pump-1", "metric": "vibration_rms_mm_s", "contribution": 0.7, "expected": 2.0, "observed": 6.1},
        {"device_id": "pump-1", "metric": "power_w", "contribution": 0.3, "expected": 900.0, "observed": 1010.0},
    ], device_id="pump-1", alert_id="anomaly:pump-1:device:1000:raised")
    alert.update(over)
    return alert


def _flood(**over: Any) -> dict[str, Any]:
    alert = {"schema": "edgehouse.alert", "v": 2, "alert_id": "alert_flood.gw-1.5000.raised", "gateway_id": "gw-1",
             "kind": "system", "state": "raised", "severity": "critical", "ts": 5000, "code": ALERT_FLOOD,
             "message": "alert flood",
             "flood": {"site": "site-a", "window_s": 600, "flood_limit": 10, "clear_limit": 5,
                       "alerts_in_window": 11, "suppressed": 1, "since_ts": 5000},
             "drivers": [{"device_id": "cold-1", "metric": "temperature_c", "contribution": 0.5, "alerts": 5}]}
    alert.update(over)
    return alert


def test_an_older_agents_v1_alert_is_still_valid_and_round_trips() -> None:
    alert = AlertPayload.model_validate_json(json.dumps(V1_ALERT))
    assert alert.v == 1 and alert.drivers == () and alert.code is None
    assert json.loads(encode(alert)) == V1_ALERT  # written as v1: valid against edgehouse.alert.v1.json
    # Re-read from what a cloud stored (its JSON column, read back non-strictly) it stays v1.
    assert AlertPayload.model_validate(json.loads(encode(alert)), strict=False) == alert


def test_a_v1_alert_cannot_carry_v2_fields() -> None:
    with pytest.raises(ValidationError, match="drivers, window_readings need v 2"):
        AlertPayload.model_validate_json(json.dumps({**_stream_alert(detector=None), "v": 1}))


@pytest.mark.parametrize("payload", [_stream_alert(), _device_alert(), _flood(), _flood(state="cleared")])
def test_v2_alerts_round_trip(payload: dict[str, Any]) -> None:
    alert = AlertPayload.model_validate_json(json.dumps(payload))
    assert alert.v == 2
    assert AlertPayload.model_validate_json(encode(alert)) == alert
    record = AlertRecord(id=alert_record_id(alert), alert=alert)
    assert AlertRecord.model_validate_json(record.model_dump_json(by_alias=True)) == record


def test_new_alerts_are_v2_by_default() -> None:
    alert = AlertPayload(alert_id="a", gateway_id="gw-1", kind="system", state="raised", ts=1, message="m",
                         code="disk_quota")
    assert alert.v == 2 and alert.code == "disk_quota"


@pytest.mark.parametrize(("payload", "fragment"), [
    (_stream_alert(metric=None, drivers=[]), "anomaly alerts need metric"),
    (_device_alert(device_id=None), "anomaly alerts need device_id"),
    (_device_alert(drivers=[{"device_id": "pump-1", "metric": "power_w", "contribution": 0.8},
                            {"device_id": "pump-1", "metric": "flow", "contribution": 0.4}]), "sum to at most 1"),
    (_device_alert(drivers=[{"device_id": "pump-1", "metric": "power_w", "contribution": 0.5},
                            {"device_id": "pump-1", "metric": "power_w", "contribution": 0.5}]), "appear once"),
    (_stream_alert(window_start_ts=2000), "window_start_ts must not be after"),
    (_flood(flood=None), "flood goes with code"),
    (_flood(code="disk_quota"), "flood goes with code"),
    (_flood(kind="anomaly", device_id="d", metric="m", score=0.9, threshold=0.5), "kind 'system'"),
    (_stream_alert(code="Not-A-Code"), "pattern"),
    (_stream_alert(drivers=[{"device_id": "cold-1", "metric": "temperature_c", "contribution": 1.5}]), "less than"),
])
def test_inconsistent_alerts_are_refused(payload: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        AlertPayload.model_validate_json(json.dumps(payload))


def test_driver_and_flood_models_are_strict() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        AlertDriver.model_validate_json(json.dumps({"device_id": "d", "metric": "m", "contribution": 1.0, "extra": 1}))
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        AlertFlood.model_validate_json(json.dumps({**_flood()["flood"], "window_s": 0}))


def test_a_sync_batch_v1_carries_v1_and_v2_alerts() -> None:
    records = []
    for payload in (V1_ALERT, _device_alert(), _flood()):
        alert = AlertPayload.model_validate_json(json.dumps(payload))
        records.append(AlertRecord(id=alert_record_id(alert), alert=alert))
    batch = SyncBatch(v=1, gateway_id="gw-1", batch_id="b1", sent_ts=9, agent_version="0.1.0", records=tuple(records))
    assert batch.v == 1
    again = SyncBatch.model_validate_json(encode(batch))
    assert [r.alert.v for r in again.records] == [1, 2, 2]  # type: ignore[union-attr]


def test_the_v1_alert_schema_stays_committed_next_to_v2() -> None:
    v1 = json.loads((SCHEMA_DIR / "edgehouse.alert.v1.json").read_text())
    v2 = json.loads((SCHEMA_DIR / "edgehouse.alert.v2.json").read_text())
    assert v1["properties"]["v"] == {"const": 1, "default": 1, "title": "V", "type": "integer"}
    assert set(v2["properties"]) - set(v1["properties"]) == {"code", "detector", "drivers", "window_readings",
                                                             "flood"}
    # what the current code writes for a v1 alert has only the v1 schema's keys (additionalProperties: false)
    written = json.loads(encode(AlertPayload.model_validate_json(json.dumps(V1_ALERT))))
    assert v1["additionalProperties"] is False and set(written) <= set(v1["properties"])


def test_drift_sees_an_envelope_change_but_not_an_embedded_contracts(tmp_path: Path) -> None:
    export(tmp_path)
    assert drift(tmp_path) == []
    batch_file = tmp_path / "edgehouse.sync_batch.v2.json"
    batch = json.loads(batch_file.read_text())
    batch["$defs"]["AlertPayload"]["properties"].pop("flood")  # an embedded contract: its own file checks it
    batch_file.write_text(json.dumps(batch))
    assert drift(tmp_path) == []
    batch["properties"]["sent_ts"]["maximum"] = 5  # the batch's own field
    batch_file.write_text(json.dumps(batch))
    assert drift(tmp_path) == ["edgehouse.sync_batch.v2.json: schema changed without a version bump"]
    alert_file = tmp_path / "edgehouse.alert.v2.json"
    alert = json.loads(alert_file.read_text())
    alert["properties"].pop("flood")
    alert_file.write_text(json.dumps(alert))
    assert "edgehouse.alert.v2.json: schema changed without a version bump" in drift(tmp_path)
