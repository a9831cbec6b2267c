"""Staged rollouts driven by the reports simulated gateways post through the real API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cloud_testkit import admin_headers, make_settings
from fastapi.testclient import TestClient
from model_testkit import (
    desired,
    desired_versions,
    post_report,
    promote,
    register_fleet,
    rollout_status,
    stats,
    upload,
    wait_rollout,
    write_key,
)

from cloud.services.rollouts import assign_stages, stage_sizes
from cloud.settings import CloudSettings
from protocols import SignedRelease
from protocols.signing import Signer, trusted_map, verify

ADMIN = admin_headers()
FAST = {"min_stage_duration_s": 0, "min_readings": 100, "min_actual_units": 50}


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return write_key(tmp_path / "release.pem")


@pytest.fixture
def settings(database_url: str, tmp_path: Path, signer: Signer) -> CloudSettings:
    return make_settings(database_url, signing_key_file=tmp_path / "release.pem", rollout_tick_s=0.05)


def _start(client: TestClient, task: str, version: int, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"task": task, "model_version": version, "gates": dict(FAST)}
    gates = over.pop("gates", {})
    body.update(over)
    body["gates"].update(gates)
    resp = client.post("/api/v1/rollouts", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _candidate(client: TestClient, task: str = "anomaly") -> int:
    v = upload(client, task)
    promote(client, task, v)
    return v


def _good_shadow(client: TestClient, gw: str, headers: dict[str, str], v: int) -> None:
    post_report(client, gw, headers, current_version=1, shadow_version=v, state="shadow",
                shadow_stats=stats(v, readings=400, alerts=6), shadow_baseline_stats=stats(1, readings=400, alerts=4))


def _running(client: TestClient, gw: str, headers: dict[str, str], v: int, task: str = "anomaly",
             **extra: Any) -> None:
    post_report(client, gw, headers, task=task, current_version=v, previous_version=1, **extra)


def _action(client: TestClient, rollout_id: int, action: str, expect: int = 200) -> dict[str, Any]:
    resp = client.post(f"/api/v1/rollouts/{rollout_id}/{action}", json={"reason": f"test {action}"}, headers=ADMIN)
    assert resp.status_code == expect, resp.text
    return dict(resp.json())


def _release_of(client: TestClient, gw: str, headers: dict[str, str], task: str = "anomaly") -> SignedRelease:
    [model] = [m for m in desired(client, gw, headers)["models"] if m["task"] == task]
    return SignedRelease.model_validate_json(json.dumps(model["release"]))


def test_stage_assignment_is_deterministic() -> None:
    assert stage_sizes(10, 0.1, [0.5, 1.0]) == [1, 4, 5]
    assert stage_sizes(1, 0.1, [0.5, 1.0]) == [1]
    assert stage_sizes(3, 0.1, [0.5, 1.0]) == [1, 1, 1]
    assert stage_sizes(40, 0.25, [1.0]) == [10, 30]
    gws = [f"gw-{i}" for i in range(10)]
    first = assign_stages(7, gws, 0.1, [0.5, 1.0])
    assert first == assign_stages(7, list(reversed(gws)), 0.1, [0.5, 1.0])
    assert sorted(first.values()) == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert first != assign_stages(8, gws, 0.1, [0.5, 1.0])


def test_shadow_rollout_advances_stage_by_stage_on_reports(client: TestClient, signer: Signer) -> None:
    fleet = register_fleet(client, 10)
    v = _candidate(client)
    st = _start(client, "anomaly", v)
    rid = st["rollout_id"]
    stages = [s["gateways"] for s in st["stages"]]
    assert [len(s) for s in stages] == [1, 4, 5] and st["state"] == "running" and st["phase"] == "shadow"
    for index, members in enumerate(stages):
        later = [gw for s in stages[index + 1:] for gw in s]
        wait_rollout(client, rid, lambda s, i=index: s["stage"] == i and s["phase"] == "shadow", f"stage {index}")
        for gw in members:
            assert desired_versions(client, gw, fleet[gw]) == {"anomaly": (v, "shadow")}
            assert _release_of(client, gw, fleet[gw]).signed.model_version == v
        for gw in later:
            assert desired_versions(client, gw, fleet[gw]) == {}
        for gw in members:  # too few readings: the gate waits
            post_report(client, gw, fleet[gw], current_version=1, shadow_version=v, state="shadow",
                        shadow_stats=stats(v, readings=50), shadow_baseline_stats=stats(1, readings=50))
        time.sleep(0.3)
        st = rollout_status(client, rid)
        assert st["phase"] == "shadow" and {m["gate"] for m in st["members"] if m["stage"] == index} == {"pending"}
        for gw in members:
            _good_shadow(client, gw, fleet[gw], v)
        wait_rollout(client, rid, lambda s, i=index: s["stage"] == i and s["phase"] == "active", "active phase")
        for gw in members:
            assert desired_versions(client, gw, fleet[gw]) == {"anomaly": (v, "active")}
            _running(client, gw, fleet[gw], v)
        wait_rollout(client, rid, lambda s, i=index: s["stage"] > i or s["state"] == "completed", "next stage")
    st = wait_rollout(client, rid, lambda s: s["state"] == "completed", "completion")
    kinds = [e["kind"] for e in st["events"]]
    assert kinds == ["created", "stage_started", "shadow_passed", "stage_done", "stage_started", "shadow_passed",
                     "stage_done", "stage_started", "shadow_passed", "stage_done", "completed"]
    assert all(e["reason"] and e["ts"] for e in st["events"])
    assert [s["state"] for s in st["stages"]] == ["done", "done", "done"]
    detail = client.get(f"/api/v1/models/anomaly/versions/{v}", headers=ADMIN).json()
    assert detail["baseline_of"] == ["fleet"] and detail["status"] == "promoted"
    assert client.get("/api/v1/models/anomaly/versions/1", headers=ADMIN).json()["status"] == "retired"
    for gw, headers in fleet.items():
        [model] = desired(client, gw, headers)["models"]
        assert model["mode"] == "active" and model["rollout_id"] is None
        doc = SignedRelease.model_validate_json(json.dumps(model["release"]))
        assert doc.signed.model_version == v
        verify(doc.signed, doc.signatures, trusted_map([signer.public_raw]))


def test_worse_candidate_halts_at_canary_and_rolls_back(client: TestClient) -> None:
    fleet = register_fleet(client, 10)
    v = _candidate(client)
    st = _start(client, "anomaly", v)
    rid = st["rollout_id"]
    [canary] = st["stages"][0]["gateways"]
    others = [gw for gw in fleet if gw != canary]
    candidate_md = _release_of(client, canary, fleet[canary]).signed.metadata_version
    for gw in others:
        assert "anomaly" not in desired_versions(client, gw, fleet[gw])
    # the candidate raises ten times the alerts of the running model on the same readings
    post_report(client, canary, fleet[canary], current_version=1, shadow_version=v, state="shadow",
                shadow_stats=stats(v, readings=1000, alerts=60), shadow_baseline_stats=stats(1, readings=1000, alerts=5))
    st = wait_rollout(client, rid, lambda s: s["state"] == "rolled_back", "rollback")
    assert st["stage"] == 0 and canary in st["reason"] and "alert rate" in st["reason"]
    assert st["events"][-1]["kind"] == "rolled_back" and canary in st["events"][-1]["reason"]
    assert next(m for m in st["members"] if m["gateway_id"] == canary)["gate"] == "fail"
    assert client.get(f"/api/v1/models/anomaly/versions/{v}", headers=ADMIN).json()["status"] == "rejected"
    time.sleep(0.2)  # the controller keeps running: nothing advances any more
    assert rollout_status(client, rid)["stage"] == 0
    for gw, headers in fleet.items():  # everyone is told to run version 1, by a newer rollback document
        doc = _release_of(client, gw, headers)
        assert doc.signed.model_version == 1 and doc.signed.rollback and doc.signed.metadata_version > candidate_md
    assert all(desired_versions(client, gw, fleet[gw])["anomaly"][0] != v for gw in others)
    again = client.post("/api/v1/rollouts", json={"task": "anomaly", "model_version": v}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["detail"][0]["field"] == "model_version"


def test_a_gateway_rejecting_the_candidate_rolls_back(client: TestClient) -> None:
    fleet = register_fleet(client, 4)
    v = _candidate(client)
    st = _start(client, "anomaly", v)
    [canary] = st["stages"][0]["gateways"]
    post_report(client, canary, fleet[canary], state="rejected", current_version=1, rejected_version=v,
                rejected_code="sha256_mismatch", rejected_reason="downloaded bytes differ", rejected_ts=1)
    st = wait_rollout(client, st["rollout_id"], lambda s: s["state"] == "rolled_back", "rollback")
    assert canary in st["reason"] and "sha256_mismatch" in st["reason"]


def test_rollout_without_shadow_gates_demand_on_wape(client: TestClient) -> None:
    fleet = register_fleet(client, 2)
    v = _candidate(client, "demand")
    st = _start(client, "demand", v, shadow=False)
    rid = st["rollout_id"]
    [[canary], [second]] = [s["gateways"] for s in st["stages"]]
    assert desired_versions(client, canary, fleet[canary]) == {"demand": (v, "active")}
    assert desired_versions(client, second, fleet[second]) == {}
    # running, but not enough actual units yet: waits
    _running(client, canary, fleet[canary], v, "demand", active_stats=stats(v, actual=20, error=4),
             previous_stats=stats(1, actual=20, error=4))
    time.sleep(0.3)
    assert rollout_status(client, rid)["stage"] == 0
    _running(client, canary, fleet[canary], v, "demand", active_stats=stats(v, actual=100, error=21),
             previous_stats=stats(1, actual=100, error=20))
    wait_rollout(client, rid, lambda s: s["stage"] == 1, "wave 1")
    assert desired_versions(client, second, fleet[second]) == {"demand": (v, "active")}
    _running(client, second, fleet[second], v, "demand", active_stats=stats(v, actual=100, error=40),
             previous_stats=stats(1, actual=100, error=20))
    st = wait_rollout(client, rid, lambda s: s["state"] == "rolled_back", "rollback")
    assert second in st["reason"] and "WAPE" in st["reason"]
    for gw in (canary, second):
        doc = _release_of(client, gw, fleet[gw], "demand")
        assert doc.signed.model_version == 1 and doc.signed.rollback


def test_pause_resume_abort_and_manual_rollback(client: TestClient) -> None:
    fleet = register_fleet(client, 3)
    v = _candidate(client)
    st = _start(client, "anomaly", v, shadow=False)
    rid = st["rollout_id"]
    [[canary], [middle], [last]] = [s["gateways"] for s in st["stages"]]
    assert _action(client, rid, "pause")["state"] == "paused"
    _action(client, rid, "pause", expect=409)
    _running(client, canary, fleet[canary], v, active_stats=stats(v, readings=500, alerts=2),
             previous_stats=stats(1, readings=500, alerts=2))
    time.sleep(0.3)
    st = rollout_status(client, rid)
    assert st["state"] == "paused" and st["stage"] == 0
    assert desired_versions(client, canary, fleet[canary]) == {"anomaly": (v, "active")}
    assert _action(client, rid, "resume")["state"] == "running"
    wait_rollout(client, rid, lambda s: s["stage"] == 1, "wave 1")
    st = _action(client, rid, "abort")
    assert st["state"] == "aborted" and [e["kind"] for e in st["events"]][-1] == "aborted"
    assert {"paused", "resumed", "aborted"} <= {e["kind"] for e in st["events"]}
    time.sleep(0.2)
    assert rollout_status(client, rid)["stage"] == 1
    # gateways stay as they are: the reached stages keep the candidate, the last never gets it
    assert desired_versions(client, canary, fleet[canary]) == {"anomaly": (v, "active")}
    assert desired_versions(client, middle, fleet[middle]) == {"anomaly": (v, "active")}
    assert desired_versions(client, last, fleet[last]) == {}
    _action(client, rid, "resume", expect=409)
    st = _action(client, rid, "rollback")
    assert st["state"] == "rolled_back" and "test rollback" in st["reason"]
    for gw, headers in fleet.items():
        doc = _release_of(client, gw, headers)
        assert doc.signed.model_version == 1 and doc.signed.rollback
    _action(client, rid, "rollback", expect=409)
    assert client.post("/api/v1/rollouts/999/pause", headers=ADMIN).status_code == 404


def test_stage_timeout_halts_without_rolling_back(client: TestClient) -> None:
    fleet = register_fleet(client, 2)
    v = _candidate(client)
    st = _start(client, "anomaly", v, gates={"stage_timeout_s": 0.3})
    [canary] = st["stages"][0]["gateways"]
    st = wait_rollout(client, st["rollout_id"], lambda s: s["state"] == "halted", "halt")
    assert "timed out" in st["reason"] and canary in st["reason"] and "no report yet" in st["reason"]
    assert desired_versions(client, canary, fleet[canary]) == {"anomaly": (v, "shadow")}
    assert client.get(f"/api/v1/models/anomaly/versions/{v}", headers=ADMIN).json()["status"] == "promoted"
    assert _action(client, st["rollout_id"], "resume")["state"] == "running"


def test_group_rollout_pins_the_group_only(client: TestClient) -> None:
    fleet = register_fleet(client, 4)
    pilots = ["gw-01", "gw-03"]
    for gw in pilots:
        resp = client.put(f"/api/v1/gateways/{gw}/group", json={"group": "pilot"}, headers=ADMIN)
        assert resp.status_code == 200 and resp.json() == {"gateway_id": gw, "group": "pilot"}
    v = _candidate(client)
    st = _start(client, "anomaly", v, group="pilot", shadow=False, waves=[1.0])
    assert sorted(m["gateway_id"] for m in st["members"]) == pilots and st["group"] == "pilot"
    for stage in st["stages"]:
        for gw in stage["gateways"]:
            _running(client, gw, fleet[gw], v, active_stats=stats(v, readings=300),
                     previous_stats=stats(1, readings=300))
        wait_rollout(client, st["rollout_id"], lambda s, i=stage["index"]: s["stage"] > i or s["state"] == "completed",
                     "stage done")
    wait_rollout(client, st["rollout_id"], lambda s: s["state"] == "completed", "completion")
    for gw, headers in fleet.items():
        assert desired_versions(client, gw, headers) == ({"anomaly": (v, "active")} if gw in pilots else {})
    assert client.get(f"/api/v1/models/anomaly/versions/{v}", headers=ADMIN).json()["baseline_of"] == []
    resp = client.put("/api/v1/gateways/gw-01/group", json={"group": None}, headers=ADMIN)
    assert resp.json() == {"gateway_id": "gw-01", "group": None}
    assert client.put("/api/v1/gateways/nope/group", json={"group": "x"}, headers=ADMIN).status_code == 404


def test_rollout_requests_are_validated(client: TestClient) -> None:
    register_fleet(client, 2)
    url = "/api/v1/rollouts"
    v = upload(client)

    def field(resp: Any) -> str:
        return str(resp.json()["detail"][0]["field"])

    resp = client.post(url, json={"task": "anomaly", "model_version": v}, headers=ADMIN)
    assert resp.status_code == 409 and field(resp) == "model_version"  # a candidate, not promoted
    promote(client, "anomaly", v)
    resp = client.post(url, json={"task": "anomaly", "model_version": v, "waves": [0.5]}, headers=ADMIN)
    assert resp.status_code == 422 and field(resp) == "waves"
    resp = client.post(url, json={"task": "anomaly", "model_version": v, "canary_fraction": 1.5}, headers=ADMIN)
    assert resp.status_code == 422 and field(resp) == "canary_fraction"
    resp = client.post(url, json={"task": "anomaly", "model_version": 99}, headers=ADMIN)
    assert resp.status_code == 404 and field(resp) == "model_version"
    resp = client.post(url, json={"task": "anomaly", "model_version": v, "group": "nobody"}, headers=ADMIN)
    assert resp.status_code == 409 and field(resp) == "group"
    resp = client.post(url, json={"task": "anomaly", "model_version": v, "scope": "site:hamburg"}, headers=ADMIN)
    assert resp.status_code == 409 and field(resp) == "scope"
    resp = client.post(url, json={"task": "anomaly", "model_version": 1}, headers=ADMIN)
    assert resp.status_code == 409 and field(resp) == "model_version"  # already the baseline
    _start(client, "anomaly", v)
    resp = client.post(url, json={"task": "anomaly", "model_version": v}, headers=ADMIN)
    assert resp.status_code == 409 and field(resp) == "task"
    listed = client.get(url, params={"task": "anomaly", "state": "running"}, headers=ADMIN).json()
    assert [r["model_version"] for r in listed] == [v]
    assert client.get("/api/v1/rollouts/42", headers=ADMIN).status_code == 404


def _complete(client: TestClient, fleet: dict[str, dict[str, str]], st: dict[str, Any], v: int, before: int) -> None:
    """Report every member running ``v`` stage by stage until the rollout completes."""
    for stage in st["stages"]:
        for gw in stage["gateways"]:
            post_report(client, gw, fleet[gw], current_version=v, previous_version=before,
                        active_stats=stats(v, readings=300), previous_stats=stats(before, readings=300))
        wait_rollout(client, st["rollout_id"], lambda s, i=stage["index"]: s["stage"] > i or s["state"] == "completed",
                     "stage done")
    wait_rollout(client, st["rollout_id"], lambda s: s["state"] == "completed", "completion")


def test_a_completed_fleet_rollout_replaces_the_site_baselines_it_reached(client: TestClient) -> None:
    berlin = register_fleet(client, 2, site="berlin", prefix="ber")
    munich = register_fleet(client, 2, site="munich", prefix="muc")
    fleet = {**berlin, **munich}
    site_model = _candidate(client)
    st = _start(client, "anomaly", site_model, scope="site:berlin", shadow=False, waves=[1.0])
    assert sorted(m["gateway_id"] for m in st["members"]) == sorted(berlin)
    _complete(client, berlin, st, site_model, 1)
    site_md = _release_of(client, "ber-00", berlin["ber-00"]).signed.metadata_version
    fleet_model = upload(client, "anomaly", salt=2)
    promote(client, "anomaly", fleet_model)
    st = _start(client, "anomaly", fleet_model, scope="fleet", shadow=False, waves=[1.0])
    assert sorted(m["gateway_id"] for m in st["members"]) == sorted(fleet)
    _complete(client, {gw: fleet[gw] for stage in st["stages"] for gw in stage["gateways"]}, st, fleet_model,
              site_model)
    done = rollout_status(client, st["rollout_id"])
    assert f"replaces the site:berlin baseline (version {site_model})" in done["reason"]
    # Berlin's gateways stay on what they run (not back on their site's older model), with a
    # release newer than the one they had: nothing a gateway would refuse as a replay.
    for gw, headers in fleet.items():
        assert desired_versions(client, gw, headers) == {"anomaly": (fleet_model, "active")}
        assert _release_of(client, gw, headers).signed.metadata_version > site_md
    versions = {v: client.get(f"/api/v1/models/anomaly/versions/{v}", headers=ADMIN).json()
                for v in (site_model, fleet_model)}
    assert versions[fleet_model]["baseline_of"] == ["fleet"]
    assert versions[site_model]["baseline_of"] == [] and versions[site_model]["status"] == "retired"
