"""Alert management after ISA-18.2 (issue 16): raises paired with clears whatever the arrival order, states,
acknowledge one and many, shelve with automatic return, comments, the audit trail, flood per site, filters,
and the operator role: it acts on alarms, it is no admin. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from cloud_testkit import admin_headers, batch, gz, register
from fastapi.testclient import TestClient

from cloud.services import alarms as service

GZ = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def _alert(gw: str, alert_id: str, state: str, ts: int, device: str = "cold-1", metric: str = "temperature_c",
           kind: str = "anomaly", severity: str = "critical") -> dict[str, Any]:
    body: dict[str, Any] = {"schema": "edgehouse.alert", "v": 1, "alert_id": alert_id, "gateway_id": gw,
                            "kind": kind, "state": state, "severity": severity, "ts": ts,
                            "message": f"{metric} {state}"}
    if kind == "anomaly":
        body |= {"device_id": device, "metric": metric, "score": 0.9, "threshold": 0.8, "expected": 4.0,
                 "observed": 9.0}
    return {"kind": "alert", "id": f"alert:{alert_id}", "alert": body}


def _sync(client: TestClient, gw: str, headers: dict[str, str], records: list[dict[str, Any]], n: int = 1) -> None:
    resp = client.post("/api/v1/sync", content=gz(batch(gw, records, f"b-{n}-{time.monotonic_ns()}")),
                       headers={**headers, **GZ})
    assert resp.status_code == 200, resp.text
    assert not resp.json()["rejected"]


def _token(client: TestClient, role: str) -> dict[str, str]:
    resp = client.post("/api/v1/tokens", json={"role": role, "label": f"{role} of the test"}, headers=admin_headers())
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def _alarms(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    resp = client.get("/api/v1/alarms", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_raises_pair_with_clears_in_either_order_and_states_follow(client: TestClient) -> None:
    gw = register(client, "gw-a", "berlin")
    now = int(time.time() * 1000)
    # cold-1: raised then cleared (same batch); cold-2: its clear arrives first; cold-3 stays active;
    # a system alert (quota) raised and cleared by its id stem; cold-1 raised again after the clear.
    _sync(client, "gw-a", gw, [_alert("gw-a", "anomaly:cold-1:t:1", "raised", now - 5000),
                               _alert("gw-a", "anomaly:cold-1:t:2", "cleared", now - 4000),
                               _alert("gw-a", "anomaly:cold-2:t:2", "cleared", now - 3000, device="cold-2")], 1)
    _sync(client, "gw-a", gw, [_alert("gw-a", "anomaly:cold-2:t:1", "raised", now - 3500, device="cold-2"),
                               _alert("gw-a", "anomaly:cold-3:t:1", "raised", now - 2000, device="cold-3"),
                               _alert("gw-a", "quota.gw-a.1.raised", "raised", now - 1500, kind="system"),
                               _alert("gw-a", "quota.gw-a.1.cleared", "cleared", now - 1000, kind="system",
                                      severity="info"),
                               _alert("gw-a", "anomaly:cold-1:t:3", "raised", now - 500)], 2)
    page = _alarms(client, admin_headers())
    states = {a["id"]: (a["active"], a["isa_state"]) for a in page["items"]}
    assert states == {
        "alert:anomaly:cold-1:t:1": (False, "unack_cleared"),
        "alert:anomaly:cold-2:t:1": (False, "unack_cleared"),
        "alert:anomaly:cold-3:t:1": (True, "unack_active"),
        "alert:quota.gw-a.1.raised": (False, "unack_cleared"),
        "alert:anomaly:cold-1:t:3": (True, "unack_active"),
    }
    assert [a["ts"] for a in page["items"]] == sorted((a["ts"] for a in page["items"]), reverse=True)
    assert page["total"] == 5 and page["active"] == 2 and page["unacked"] == 5
    assert page["items"][0]["alert"]["observed"] == 9.0  # the record as synced, every field
    assert _alarms(client, admin_headers(), state="active")["total"] == 2
    assert _alarms(client, admin_headers(), kind="system")["total"] == 1
    assert _alarms(client, admin_headers(), device_id="cold-2")["total"] == 1
    assert _alarms(client, admin_headers(), site="hamburg")["total"] == 0


def test_pairing_across_batches_takes_the_earliest_clear_at_or_after_each_raise(client: TestClient) -> None:
    """Pairing looks only at what a batch stores (keyed statements, migration 0011's indexes): old open raises
    take a later batch's clear, a late raise takes the earliest stored clear after it, a raise after every
    clear stays active, another gateway's clear pairs nothing, and a cleared alarm is never paired again."""
    gw, other = register(client, "gw-p", "berlin"), register(client, "gw-q", "berlin")
    now = int(time.time() * 1000)
    history = [_alert("gw-p", f"anomaly:cold-9:h:{i}", "raised" if i % 2 == 0 else "cleared", now - 90_000 + i * 100,
                      device="cold-9") for i in range(40)]  # a paired history on another condition
    _sync(client, "gw-p", gw, history, 1)
    _sync(client, "gw-p", gw, [_alert("gw-p", "anomaly:cold-1:p:1", "raised", now - 9000),
                               _alert("gw-p", "anomaly:cold-1:p:2", "raised", now - 8000)], 2)
    _sync(client, "gw-q", other, [_alert("gw-q", "anomaly:cold-1:q:1", "cleared", now - 7500)], 3)
    _sync(client, "gw-p", gw, [_alert("gw-p", "anomaly:cold-1:p:3", "raised", now - 7000),
                               _alert("gw-p", "anomaly:cold-1:p:4", "cleared", now - 6000),
                               _alert("gw-p", "anomaly:cold-1:p:5", "raised", now - 5000)], 4)
    _sync(client, "gw-p", gw, [_alert("gw-p", "anomaly:cold-1:p:6", "cleared", now - 3000)], 5)
    _sync(client, "gw-p", gw, [_alert("gw-p", "anomaly:cold-1:p:7", "cleared", now - 4000),  # between, but 5 stays paired with 6
                               _alert("gw-p", "anomaly:cold-1:p:8", "raised", now - 3500),  # late: takes 6
                               _alert("gw-p", "anomaly:cold-1:p:9", "raised", now - 1000)], 6)  # after all: active
    items = _alarms(client, admin_headers(), gateway_id="gw-p", device_id="cold-1")["items"]
    cleared = {a["id"].removeprefix("alert:anomaly:cold-1:p:"): a["cleared_ts"] for a in items}
    assert cleared == {"1": now - 6000, "2": now - 6000, "3": now - 6000, "5": now - 3000, "8": now - 3000,
                       "9": None}
    history_items = _alarms(client, admin_headers(), device_id="cold-9", limit=100)["items"]
    assert len(history_items) == 20
    assert all(a["cleared_ts"] == a["ts"] + 100 for a in history_items)
    assert _alarms(client, admin_headers(), gateway_id="gw-q")["total"] == 0


def test_operator_acknowledges_one_and_many_and_every_action_is_audited(client: TestClient) -> None:
    gw = register(client, "gw-a", "berlin")
    now = int(time.time() * 1000)
    _sync(client, "gw-a", gw, [_alert("gw-a", f"anomaly:d{i}:t:1", "raised", now - i, device=f"d{i}")
                               for i in range(4)])
    operator = _token(client, "operator")
    one = client.post("/api/v1/alarms/gw-a/alert:anomaly:d0:t:1/ack", headers=operator)
    assert one.status_code == 200 and len(one.json()["acknowledged"]) == 1
    refs = [{"gateway_id": "gw-a", "id": f"alert:anomaly:d{i}:t:1"} for i in range(3)]
    many = client.post("/api/v1/alarms/ack", json={"alarms": refs, "comment": "seen, truck at the dock"},
                       headers=operator)
    assert many.status_code == 200, many.text
    assert len(many.json()["acknowledged"]) == 2 and len(many.json()["already_acknowledged"]) == 1
    assert _alarms(client, operator, ack="unacked")["total"] == 1
    detail = client.get("/api/v1/alarms/gw-a/alert:anomaly:d1:t:1", headers=operator).json()
    assert detail["isa_state"] == "ack_active" and detail["acked_by"].startswith("operator:token:")
    assert [(e["action"], e["text"]) for e in detail["events"]] == [("ack", "seen, truck at the dock")]
    # all or none: one unknown alarm refuses the whole request, naming it
    bad = client.post("/api/v1/alarms/ack", json={"alarms": [{"gateway_id": "gw-a", "id": "alert:anomaly:d3:t:1"},
                                                             {"gateway_id": "gw-a", "id": "alert:nope"}]},
                      headers=operator)
    assert bad.status_code == 404 and bad.json()["detail"][0]["field"] == "alarms.1"
    assert _alarms(client, operator, ack="unacked")["total"] == 1


def test_shelving_hides_an_alarm_until_it_returns_by_itself(client: TestClient) -> None:
    gw = register(client, "gw-a", "berlin")
    now = int(time.time() * 1000)
    _sync(client, "gw-a", gw, [_alert("gw-a", "anomaly:d0:t:1", "raised", now)])
    operator = _token(client, "operator")
    url = "/api/v1/alarms/gw-a/alert:anomaly:d0:t:1"
    short = client.post(f"{url}/shelve", json={"duration_s": 10, "reason": "x"}, headers=operator)
    assert short.status_code == 422 and short.json()["detail"][0]["field"] == "duration_s"
    shelved = client.post(f"{url}/shelve", json={"duration_s": 3600, "reason": "sensor being replaced"},
                          headers=operator)
    assert shelved.status_code == 200, shelved.text
    assert shelved.json()["shelved"] and shelved.json()["shelve_reason"] == "sensor being replaced"
    assert _alarms(client, operator, shelved="hide")["total"] == 0
    assert _alarms(client, operator, shelved="only")["total"] == 1
    comment = client.post(f"{url}/comments", json={"text": "ticket 4711"}, headers=operator)
    assert comment.status_code == 200 and comment.json()["n_comments"] == 1
    back = client.post(f"{url}/unshelve", headers=operator)
    assert back.status_code == 200 and not back.json()["shelved"]
    assert client.post(f"{url}/unshelve", headers=operator).status_code == 409
    actions = [e["action"] for e in back.json()["events"]]
    assert actions == ["shelve", "comment", "unshelve"]
    # the automatic return: a shelve whose time has passed no longer counts (read at a later "now")
    engine = client.app.state.cloud.engine  # type: ignore[attr-defined]
    client.post(f"{url}/shelve", json={"duration_s": 60, "reason": "short"}, headers=operator)
    later = service.list_alarms(engine, service.AlarmFilter(shelved="hide"), now=int(time.time() * 1000) + 61_000)
    assert later.total == 1 and not later.items[0].shelved


def test_flood_indicator_counts_alarms_per_site_in_ten_minutes(client: TestClient) -> None:
    gw_a = register(client, "gw-a", "berlin")
    register(client, "gw-b", "hamburg")
    now = int(time.time() * 1000)
    records = [_alert("gw-a", f"anomaly:d{i}:t:1", "raised", now - i * 1000, device=f"d{i}") for i in range(12)]
    records.append(_alert("gw-a", "anomaly:old:t:1", "raised", now - 11 * 60 * 1000, device="old"))
    _sync(client, "gw-a", gw_a, records)
    flood = {f["site"]: f for f in client.get("/api/v1/alarms/flood", headers=admin_headers()).json()}
    assert flood["berlin"] == {"site": "berlin", "alarms_10min": 12, "limit": 10, "flood": True}
    assert flood["hamburg"]["alarms_10min"] == 0 and not flood["hamburg"]["flood"]


def test_roles_on_alarm_actions(client: TestClient) -> None:
    gw = register(client, "gw-a", "berlin")
    _sync(client, "gw-a", gw, [_alert("gw-a", "anomaly:d0:t:1", "raised", int(time.time() * 1000))])
    planner, operator = _token(client, "planner"), _token(client, "operator")
    ack = {"alarms": [{"gateway_id": "gw-a", "id": "alert:anomaly:d0:t:1"}]}
    assert client.post("/api/v1/alarms/ack", json=ack, headers=planner).status_code == 403
    assert client.post("/api/v1/alarms/ack", json=ack, headers=gw).status_code == 403
    assert client.get("/api/v1/alarms", headers=gw).status_code == 403
    assert client.get("/api/v1/alarms", headers=planner).status_code == 200
    # an operator is no admin
    assert client.post("/api/v1/tokens", json={"role": "admin"}, headers=operator).status_code == 403
    assert client.post("/api/v1/rollouts/1/pause", headers=operator).status_code == 403
    assert client.get("/api/v1/me", headers=operator).json()["role"] == "operator"
