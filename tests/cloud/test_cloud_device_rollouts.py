"""The device model (task ``device_anomaly``) through the cloud's update path: signed v2 releases offered
only to agents that report supporting them (an agent of the previous release keeps getting v1 documents it
accepts), staged rollouts over those gateways, and their quality gates (model errors, device alerts per
device-day), through the real API on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cloud_testkit import admin_headers, make_settings
from fastapi.testclient import TestClient
from model_testkit import desired, promote, register_fleet, rollout_status, upload, wait_rollout, write_key

from cloud.model_schemas import Gates
from cloud.services.rollout_gates import compare
from cloud.settings import CloudSettings
from models.manifest import manifest_path_for
from models.runtime import default_model_path
from protocols import ModelStats, SignedRelease
from protocols.schemas import SCHEMA_DIR
from protocols.signing import Signer, trusted_map, verify

ADMIN = admin_headers()
TASK = "device_anomaly"
DAY_MS = 86_400_000
FAST = {"min_stage_duration_s": 0, "min_device_days": 1.0, "min_excess_alerts": 3}


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return write_key(tmp_path / "release.pem")


@pytest.fixture
def settings(database_url: str, tmp_path: Path, signer: Signer) -> CloudSettings:
    return make_settings(database_url, signing_key_file=tmp_path / "release.pem", rollout_tick_s=0.05)


def _upload_device(client: TestClient, salt: int = 1) -> int:
    model = default_model_path(TASK)
    data = model.read_bytes() + salt.to_bytes(4, "big")
    manifest = json.loads(manifest_path_for(model).read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    body = {"tflite_b64": base64.b64encode(data).decode(), "manifest": manifest, "metrics": {"val_loss": 0.5},
            "data_from_ts": 1_000, "data_to_ts": 2_000, "parent_version": 1}
    resp = client.post(f"/api/v1/models/{TASK}/versions", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    version = int(resp.json()["model_version"])
    promote(client, TASK, version)
    return version


def _stats(version: int, messages: int = 0, alerts: int = 0, days: float = 0.0, errors: int = 0) -> dict[str, Any]:
    return {"model_version": version, "since_ts": 1_000, "readings": messages, "alerts_raised": alerts,
            "devices": 4, "device_days": days, "errors": errors}


def _report(client: TestClient, gw: str, headers: dict[str, str], v: int, *entries: dict[str, Any]) -> int:
    tasks = list(entries) or [{"task": "anomaly", "state": "running", "current_version": 1}]
    report = {"schema": "edgehouse.model_report", "v": v, "gateway_id": gw, "ts": int(time.time() * 1000),
              "agent_version": "0.3.0" if v >= 3 else "0.2.0", "tasks": tasks}
    return client.post(f"/api/v1/gateways/{gw}/models/report", json=report, headers=headers).status_code


def _device_entry(**fields: Any) -> dict[str, Any]:
    return {"task": TASK, "state": "running", "current_version": 1, **fields}


def _start(client: TestClient, version: int, **over: Any) -> dict[str, Any]:
    gates = {**FAST, **over.pop("gates", {})}
    body = {"task": TASK, "model_version": version, "gates": gates, **over}
    resp = client.post("/api/v1/rollouts", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _accepted_by_previous_release(doc: dict[str, Any]) -> bool:
    """What an agent of the previous release checks first: the committed v1 contracts (``v`` and ``task``
    are literals there)."""
    desired_v1 = json.loads((SCHEMA_DIR / "edgehouse.desired_models.v1.json").read_text())
    release_v1 = json.loads((SCHEMA_DIR / "edgehouse.model_release.v1.json").read_text())
    tasks = set(desired_v1["$defs"]["DesiredModel"]["properties"]["task"]["enum"])
    release_tasks = set(release_v1["properties"]["task"]["enum"])
    return doc["v"] == desired_v1["properties"]["v"]["const"] and all(
        m["task"] in tasks and m["release"]["signed"]["task"] in release_tasks
        and m["release"]["signed"]["v"] == release_v1["properties"]["v"]["const"]
        for m in doc["models"])


def test_device_model_is_offered_only_to_agents_that_report_supporting_it(client: TestClient,
                                                                          signer: Signer) -> None:
    fleet = register_fleet(client, 3)
    old, new, silent = sorted(fleet)
    assert _report(client, old, fleet[old], 2) == 204  # the previous release: model_report v2
    assert _report(client, new, fleet[new], 3, _device_entry()) == 204
    v = _upload_device(client)
    # no gateway of the group supports it: refused, naming the task
    assert client.put(f"/api/v1/gateways/{old}/group", json={"group": "old"}, headers=ADMIN).status_code == 200
    only_old = client.post("/api/v1/rollouts", json={"task": TASK, "model_version": v, "group": "old"},
                           headers=ADMIN)
    assert only_old.status_code == 409 and only_old.json()["detail"][0]["field"] == "task", only_old.text
    # an anomaly release still is model_release v1, in a desired_models v1: the previous release takes it
    av = upload(client, "anomaly")
    promote(client, "anomaly", av)
    resp = client.post("/api/v1/rollouts", json={"task": "anomaly", "model_version": av, "group": "old",
                                                 "shadow": False}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    doc = desired(client, old, fleet[old])
    assert [(m["task"], m["release"]["signed"]["v"]) for m in doc["models"]] == [("anomaly", 1)]
    assert _accepted_by_previous_release(doc)
    st = _start(client, v, shadow=False)
    assert [m["gateway_id"] for m in st["members"]] == [new]  # only the gateway reporting v3
    doc = desired(client, new, fleet[new])
    assert doc["v"] == 2
    [model] = [m for m in doc["models"] if m["task"] == TASK]
    release = SignedRelease.model_validate_json(json.dumps(model["release"]))
    assert release.signed.v == 2 and release.signed.model_version == v and model["mode"] == "active"
    verify(release.signed, release.signatures, trusted_map([signer.public_raw]))
    for gw in (old, silent):  # never a document the previous release refuses
        doc = desired(client, gw, fleet[gw])
        assert doc["v"] == 1 and TASK not in {m["task"] for m in doc["models"]}
        assert _accepted_by_previous_release(doc)
    # the new agent runs it: the rollout completes; the old agent still gets v1 documents
    assert _report(client, new, fleet[new], 3, _device_entry(current_version=v, previous_version=1,
                                                           active_stats=_stats(v, 500, 1, 2.0),
                                                           previous_stats=_stats(1, 500, 1, 2.0))) == 204
    wait_rollout(client, st["rollout_id"], lambda s: s["state"] == "completed", "completion")
    assert _accepted_by_previous_release(desired(client, old, fleet[old]))
    assert client.get(f"/api/v1/models/{TASK}/versions/{v}", headers=ADMIN).json()["baseline_of"] == ["fleet"]


def test_reports_of_every_version_are_accepted_and_v3_is_needed_for_the_device_task(
        client: TestClient) -> None:
    fleet = register_fleet(client, 1)
    [(gw, headers)] = fleet.items()
    for v in (1, 2, 3):
        assert _report(client, gw, headers, v) == 204
    assert _report(client, gw, headers, 3, _device_entry(active_stats=_stats(1, 10, 0, 0.1, errors=2))) == 204
    resp_code = _report(client, gw, headers, 2, _device_entry())
    assert 400 <= resp_code < 500


def test_device_rollout_rolls_back_on_model_errors_and_on_alerts_per_device_day(client: TestClient) -> None:
    fleet = register_fleet(client, 2)
    for gw, headers in fleet.items():
        assert _report(client, gw, headers, 3, _device_entry()) == 204
    v = _upload_device(client)
    st = _start(client, v)  # shadow phase first
    [canary] = st["stages"][0]["gateways"]
    # too few device-days: pending
    assert _report(client, canary, fleet[canary], 3, _device_entry(
        shadow_version=v, state="shadow", shadow_stats=_stats(v, 100, 0, 0.2),
        shadow_baseline_stats=_stats(1, 100, 0, 0.2))) == 204
    time.sleep(0.3)
    st = rollout_status(client, st["rollout_id"])
    member = next(m for m in st["members"] if m["gateway_id"] == canary)
    assert st["state"] == "running" and member["gate"] == "pending" and "device-days" in member["detail"]
    # 30 device alerts in 2 device-days against 2: rolled back, the reason names the rate
    assert _report(client, canary, fleet[canary], 3, _device_entry(
        shadow_version=v, state="shadow", shadow_stats=_stats(v, 2000, 30, 2.0),
        shadow_baseline_stats=_stats(1, 2000, 2, 2.0))) == 204
    st = wait_rollout(client, st["rollout_id"], lambda s: s["state"] == "rolled_back", "rollback")
    assert canary in st["reason"] and "device alerts per device-day" in st["reason"]
    assert client.get(f"/api/v1/models/{TASK}/versions/{v}", headers=ADMIN).json()["status"] == "rejected"

    v2 = _upload_device(client, salt=2)
    st = _start(client, v2)
    [canary] = st["stages"][0]["gateways"]
    assert _report(client, canary, fleet[canary], 3, _device_entry(
        shadow_version=v2, state="shadow", shadow_stats=_stats(v2, 900, 0, 0.05, errors=100),
        shadow_baseline_stats=_stats(1, 1000, 0, 0.05))) == 204
    st = wait_rollout(client, st["rollout_id"], lambda s: s["state"] == "rolled_back", "rollback on errors")
    assert "model errors 100/1000" in st["reason"]


def test_device_gate_decisions() -> None:
    gates = Gates(min_device_days=1.0, min_excess_alerts=5, max_alert_rate_ratio=2.0)

    def s(alerts: int, days: float, messages: int = 10_000, errors: int = 0, alert_msgs: int = 0) -> ModelStats:
        return ModelStats(model_version=2, since_ts=0, readings=messages, alerts_raised=alerts, devices=5,
                          device_days=days, errors=errors, alert_readings=alert_msgs)

    assert compare(TASK, s(0, 0.5), s(0, 3.0), gates).verdict == "pending"
    assert compare(TASK, s(3, 2.0), s(2, 2.0), gates).verdict == "pass"
    assert compare(TASK, s(8, 2.0), s(2, 2.0), gates).verdict == "pass"  # ratio 3, but only 4 alerts over
    assert compare(TASK, s(20, 2.0), s(2, 2.0), gates).verdict == "fail"
    # per device-day: the same alerts over twice the device-days is half the rate
    assert compare(TASK, s(20, 10.0), s(2, 2.0), gates).verdict == "pass"
    assert compare(TASK, s(0, 0.1, 1000, errors=20), s(0, 0.1), gates).verdict == "fail"  # errors first
    assert compare(TASK, s(0, 2.0, 10_000, errors=20), s(0, 2.0), gates).verdict == "pass"  # 0.2 % of messages
    budget = Gates(min_device_days=1.0, min_excess_alerts=5, max_device_alerts_per_day=1.0)
    bad = compare(TASK, s(20, 4.0), s(20, 4.0), budget)
    assert bad.verdict == "fail" and "budget" in bad.detail  # as bad as the baseline, but over the budget
    assert compare(TASK, s(3, 4.0), s(3, 4.0), budget).verdict == "pass"
    assert compare("anomaly", s(20, 0.0), s(2, 0.0), Gates(min_readings=100)).verdict == "fail"  # unchanged
