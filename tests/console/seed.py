"""Real data for the console's browser tests, put into a running cloud through its own API.

Gateways that sync telemetry, pick scans, alerts (raised and cleared; one site in flood) and forecasts;
model reports with the agent's health (one with a rejected update); people's tokens of each role; a
finished route job (one order too big for any van, left unserved); a running rollout. Times are around
now, so the pages' default ranges show them. ``bench/console.py`` builds its volumes from the same records.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from cloud_testkit import ADMIN_TOKEN
from model_testkit import candidate_body

from protocols import record_id
from tests.helpers.waiting import patience

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GZ = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
MIN = 60_000
DAY = 86_400_000


@dataclass
class Seeded:
    tokens: dict[str, str] = field(default_factory=dict)  # role -> secret
    gateway_tokens: dict[str, str] = field(default_factory=dict)
    done_job: str = ""
    rollout_id: int = 0
    now: int = 0
    alarm_ids: list[str] = field(default_factory=list)


def telemetry_record(device: str, seq: int, ts: int, temp: float) -> dict[str, Any]:
    return {"kind": "telemetry", "id": record_id("telemetry", device, "b1", seq), "received_ts": ts + 5,
            "msg": {"schema": "edgehouse.telemetry", "v": 1, "msg_id": f"m-{device}-{seq}", "device_id": device,
                    "boot_id": "b1", "seq": seq, "ts": ts,
                    "body": {"readings": [{"metric": "temperature_c", "value": round(temp, 3)},
                                          {"metric": "door_open", "value": float(seq % 7 == 0)}]}}}


def scan_record(device: str, seq: int, ts: int, sku: str, qty: int) -> dict[str, Any]:
    return {"kind": "scan", "id": record_id("scan", device, "b1", seq), "received_ts": ts + 5,
            "msg": {"schema": "edgehouse.scan", "v": 1, "msg_id": f"s-{device}-{seq}", "device_id": device,
                    "boot_id": "b1", "seq": seq, "ts": ts,
                    "body": {"code_type": "barcode", "sku": sku, "location": "A-01", "direction": "pick", "qty": qty,
                             "reader_id": device}}}


def alert_record(gw: str, alert_id: str, state: str, ts: int, device: str, severity: str = "critical",
           observed: float = 9.5) -> dict[str, Any]:
    return {"kind": "alert", "id": f"alert:{alert_id}", "alert": {
        "schema": "edgehouse.alert", "v": 1, "alert_id": alert_id, "gateway_id": gw, "kind": "anomaly",
        "state": state, "severity": severity, "ts": ts, "device_id": device, "metric": "temperature_c",
        "message": f"temperature_c of {device}: anomaly {state}", "score": 0.93 if state == "raised" else 0.2,
        "threshold": 0.8, "expected": 4.1, "observed": observed, "window_start_ts": ts - 5 * MIN,
        "window_end_ts": ts}}


def forecast_record(gw: str, site: str, sku: str, origin: dt.date, created_ts: int, n: int) -> dict[str, Any]:
    p50 = [20.0 + 4 * math.sin(i) for i in range(14)]
    return {"kind": "forecast", "id": f"forecast:f-{site}-{sku}-{n}", "forecast": {
        "schema": "edgehouse.forecast", "v": 1, "forecast_id": f"f-{site}-{sku}-{n}", "gateway_id": gw, "site": site,
        "sku": sku, "origin": origin.isoformat(), "created_ts": created_ts, "p50": p50,
        "p90": [v * 1.4 for v in p50], "model_version": 2}}


def sync_batch(c: httpx.Client, gw: str, token: str, records: list[dict[str, Any]], n: int) -> None:
    body = {"schema": "edgehouse.sync_batch", "v": 1, "gateway_id": gw, "batch_id": f"seed-{gw}-{n}",
            "sent_ts": int(time.time() * 1000), "agent_version": "0.3.0", "records": records}
    resp = c.post("/api/v1/sync", content=gzip.compress(json.dumps(body).encode()),
                  headers={"Authorization": f"Bearer {token}", **GZ})
    resp.raise_for_status()
    assert not resp.json()["rejected"], resp.text


def model_report(c: httpx.Client, gw: str, token: str, now: int, rejected: bool, depth: int) -> None:
    task: dict[str, Any] = {"task": "anomaly", "state": "running", "current_version": 1}
    if rejected:
        task |= {"rejected_version": 7, "rejected_code": "bad_signature", "rejected_reason": "signature does not verify",
                 "rejected_ts": now - 30 * MIN}
    report = {"schema": "edgehouse.model_report", "v": 2, "gateway_id": gw, "ts": now, "agent_version": "0.3.0",
              "tasks": [task, {"task": "demand", "state": "running", "current_version": 1}],
              "gateway": {"outbox_depth": depth, "oldest_unsynced_ts": now - 42_000 if depth else None,
                          "mqtt_connected": True}}
    resp = c.post(f"/api/v1/gateways/{gw}/models/report", json=report, headers={"Authorization": f"Bearer {token}"})
    resp.raise_for_status()


def small_problem(name: str = "console-small", orders: int = 12, oversized: bool = True) -> dict[str, Any]:
    """Two vans around a depot in Berlin, time windows on every order (some hard to make); with ``oversized``
    one more order bigger than any van (left unserved, with its reason)."""
    problem: dict[str, Any] = {"name": name, "depots": [{"id": "dc", "location": {"lat": 52.52, "lon": 13.40}}],
            "vehicles": [{"id": f"van-{k}", "start_depot": "dc", "end_depot": "dc", "capacity": [60],
                          "shift": {"start": 6 * 3600, "end": 14 * 3600}} for k in (1, 2)],
            "orders": [{"id": f"store-{i}", "location": {"lat": 52.52 + 0.03 * math.sin(i), "lon": 13.40 + 0.05 * math.cos(i)},
                        "demand": [10], "service_time": 600,
                        "time_windows": [{"start": 7 * 3600 + (i % 4) * 1800, "end": 9 * 3600 + (i % 4) * 1800}]}
                       for i in range(orders)]}
    if oversized:
        problem["orders"].append({"id": "store-big", "location": {"lat": 52.49, "lon": 13.45}, "demand": [100],
                                  "service_time": 600})
    return problem


def wait_job(c: httpx.Client, job_id: str, statuses: set[str], headers: dict[str, str], timeout_s: float = 60) -> str:
    deadline = time.monotonic() + patience(timeout_s)
    while time.monotonic() < deadline:
        status = str(c.get(f"/api/v1/route-jobs/{job_id}", headers=headers).json()["status"])
        if status in statuses:
            return status
        time.sleep(0.2)
    raise AssertionError(f"route job {job_id} did not reach {statuses}")


def seed(url: str) -> Seeded:
    out = Seeded(now=int(time.time() * 1000))
    now = out.now
    with httpx.Client(base_url=url, headers=ADMIN, timeout=60) as c:
        for gw, site in (("gw-berlin-1", "berlin"), ("gw-hamburg-1", "hamburg"), ("gw-munich-1", "munich")):
            resp = c.post("/api/v1/gateways", json={"gateway_id": gw, "site": site})
            resp.raise_for_status()
            out.gateway_tokens[gw] = resp.json()["token"]
        for role in ("operator", "planner"):
            resp = c.post("/api/v1/tokens", json={"role": role, "label": f"{role} (console tests)"})
            resp.raise_for_status()
            out.tokens[role] = resp.json()["token"]
        out.tokens["admin"] = ADMIN_TOKEN
        berlin = out.gateway_tokens["gw-berlin-1"]
        start = now - 6 * 3600_000
        telemetry = [telemetry_record("cold-1", i, start + i * 60_000, 4 + math.sin(i / 20) + (5 if 300 <= i < 306 else 0))
                     for i in range(360)]
        telemetry += [telemetry_record(dev, i, now - i * 60_000, 20.0) for dev in ("ambient-1", "dock-9") for i in range(3)]
        for n in range(0, len(telemetry), 120):
            sync_batch(c, "gw-berlin-1", berlin, telemetry[n:n + 120], n)
        today = dt.datetime.fromtimestamp(now / 1000, dt.UTC).date()
        scans = [scan_record("reader-1", d * 10 + k, now - d * DAY - k * MIN, "SKU-1", 2 + (d + k) % 3)
                 for d in range(1, 21) for k in range(10)]
        sync_batch(c, "gw-berlin-1", berlin, scans, 1000)
        forecasts = [forecast_record("gw-berlin-1", "berlin", "SKU-1", today - dt.timedelta(days=d), now - d * DAY, d)
                     for d in (14, 7, 0)]
        sync_batch(c, "gw-berlin-1", berlin, forecasts, 1001)
        alerts = [alert_record("gw-berlin-1", "anomaly:cold-1:temperature_c:r1", "raised", start + 300 * 60_000, "cold-1"),
                  alert_record("gw-berlin-1", "anomaly:cold-1:temperature_c:c1", "cleared", start + 306 * 60_000, "cold-1"),
                  alert_record("gw-berlin-1", "anomaly:cold-1:temperature_c:r2", "raised", now - 20 * MIN, "cold-1",
                         severity="warning", observed=7.7)]
        alerts += [alert_record("gw-berlin-1", f"anomaly:cold-{k}:temperature_c:r", "raised", now - k * MIN, f"cold-{k}")
                   for k in range(2, 8)]
        sync_batch(c, "gw-berlin-1", berlin, alerts, 1002)
        out.alarm_ids = [a["id"] for a in alerts if a["alert"]["state"] == "raised"]
        # hamburg floods: 11 alarms in the last 10 minutes (the limit is 10)
        flood = [alert_record("gw-hamburg-1", f"anomaly:freezer-{k}:temperature_c:f", "raised", now - k * 30_000,
                              f"freezer-{k}", severity="info") for k in range(11)]
        sync_batch(c, "gw-hamburg-1", out.gateway_tokens["gw-hamburg-1"], flood, 1)
        model_report(c, "gw-berlin-1", berlin, now, rejected=False, depth=1234)
        model_report(c, "gw-hamburg-1", out.gateway_tokens["gw-hamburg-1"], now, rejected=True, depth=0)
        job = c.post("/api/v1/route-jobs", params={"time_limit_s": 1}, json=small_problem())
        job.raise_for_status()
        out.done_job = job.json()["id"]
        v = c.post("/api/v1/models/anomaly/versions", json=candidate_body("anomaly", 4242))
        v.raise_for_status()
        version = v.json()["model_version"]
        c.post(f"/api/v1/models/anomaly/versions/{version}/promote").raise_for_status()
        rollout = c.post("/api/v1/rollouts", json={"task": "anomaly", "model_version": version})
        rollout.raise_for_status()
        out.rollout_id = rollout.json()["rollout_id"]
        wait_job(c, out.done_job, {"done"}, ADMIN)
    return out
