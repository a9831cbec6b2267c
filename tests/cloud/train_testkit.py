"""Helpers of the retraining tests: realistic telemetry series and daily scans, synced through the real API."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from cloud_testkit import admin_headers, batch, gz
from fastapi.testclient import TestClient

from protocols import record_id
from tests.helpers.waiting import patience

DAY_MS = 86_400_000
#: Sunday 2026-03-01 00:00 UTC: the first day of the generated data.
T0 = 1_772_323_200_000
GZ = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def sync(client: TestClient, headers: dict[str, str], gateway_id: str, records: list[dict[str, Any]],
         prefix: str = "b") -> None:
    for k in range(0, len(records), 2000):
        doc = batch(gateway_id, records[k : k + 2000], f"{prefix}-{k}")
        resp = client.post("/api/v1/sync", content=gz(doc), headers={**headers, **GZ})
        assert resp.status_code == 200, resp.text
        assert not resp.json().get("rejected"), resp.text


def telemetry_records(device: str, n: int, interval_s: int = 60, seed: int = 0, start_ms: int = T0,
                      base: float = 4.0) -> list[dict[str, Any]]:
    """``n`` readings of temperature (a daily cycle + AR noise) and humidity, one message each."""
    rng = np.random.default_rng(seed)
    noise = 0.0
    out = []
    for seq in range(n):
        ts = start_ms + seq * interval_s * 1000
        noise = 0.8 * noise + rng.normal(0, 0.15)
        temp = base + 1.5 * math.sin(2 * math.pi * (ts % DAY_MS) / DAY_MS) + noise
        hum = 60 + 5 * math.cos(2 * math.pi * (ts % DAY_MS) / DAY_MS) + rng.normal(0, 0.5)
        out.append({
            "kind": "telemetry", "id": record_id("telemetry", device, "b1", seq), "received_ts": ts + 5,
            "msg": {"schema": "edgehouse.telemetry", "v": 1, "msg_id": f"m-{device}-{seq}", "device_id": device,
                    "boot_id": "b1", "seq": seq, "ts": ts,
                    "body": {"readings": [{"metric": "temperature_c", "value": round(temp, 3)},
                                          {"metric": "humidity_pct", "value": round(hum, 2)}]}},
        })
    return out


def scan_records(reader: str, days: int, skus: list[str], seed: int = 0, direction: str = "pick",
                 start_ms: int = T0, seq0: int = 0) -> list[dict[str, Any]]:
    """Poisson daily picks per SKU with a weekly pattern: one scan message per (day, sku) with qty = units."""
    rng = np.random.default_rng(seed)
    out = []
    seq = seq0
    for day in range(days):
        for k, sku in enumerate(skus):
            weekday = (day + 6) % 7  # T0 is a Sunday
            qty = int(rng.poisson((3 + 2 * k) * (0.5 if weekday >= 5 else 1.0)))
            if qty == 0:
                continue
            ts = start_ms + day * DAY_MS + 9 * 3_600_000 + k * 60_000
            out.append({
                "kind": "scan", "id": record_id("scan", reader, "b1", seq), "received_ts": ts + 5,
                "msg": {"schema": "edgehouse.scan", "v": 1, "msg_id": f"s-{reader}-{seq}", "device_id": reader,
                        "boot_id": "b1", "seq": seq, "ts": ts,
                        "body": {"code_type": "barcode", "sku": sku, "location": "A-01", "direction": direction,
                                 "qty": qty, "reader_id": reader}},
            })
            seq += 1
    return out


def wait_for_state(client: TestClient, job_id: int, states: set[str], timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + patience(timeout_s)
    while True:
        resp = client.get(f"/api/v1/models/jobs/{job_id}", headers=admin_headers())
        assert resp.status_code == 200, resp.text
        job: dict[str, Any] = resp.json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}: {job['log'][-5:]}"
        time.sleep(0.2)


def machine_records(device: str, n: int, interval_s: int = 60, seed: int = 0, start_ms: int = T0,
                    speed: float = 1.0) -> list[dict[str, Any]]:
    """``n`` messages of a conveyor-like machine: vibration, power and motor temperature driven by one
    speed (a slow cycle plus wander), all three readings in one telemetry message (v1 metrics)."""
    rng = np.random.default_rng(seed)
    wander = 0.0
    out = []
    for seq in range(n):
        ts = start_ms + seq * interval_s * 1000
        wander = 0.98 * wander + rng.normal(0, 0.01)
        s = speed * (0.8 + 0.15 * math.sin(2 * math.pi * seq / 240) + wander)
        readings = [
            {"metric": "vibration_rms_mm_s", "value": round(2.0 + 3.0 * s * s + rng.normal(0, 0.05), 3)},
            {"metric": "power_w", "value": round(4000.0 * s**1.5 + rng.normal(0, 20.0), 1)},
            {"metric": "temperature_c", "value": round(30.0 + 12.0 * s + rng.normal(0, 0.1), 3)},
        ]
        out.append({
            "kind": "telemetry", "id": record_id("telemetry", device, "b1", seq), "received_ts": ts + 5,
            "msg": {"schema": "edgehouse.telemetry", "v": 1, "msg_id": f"m-{device}-{seq}", "device_id": device,
                    "boot_id": "b1", "seq": seq, "ts": ts, "body": {"readings": readings}},
        })
    return out
