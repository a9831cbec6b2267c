"""Shared set-up for the benchmark scripts: a bench fleet and small process helpers."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_sim.config import Fleet

#: Device kinds that send sensor telemetry (what the anomaly model scores).
SENSOR_KINDS = ("cold_room", "humidity", "conveyor", "power_meter")


def bench_fleet(gateways: int = 1, per_kind: int = 4, seed: int = 1, sensors_only: bool = False) -> Fleet:
    """A realistic mixed fleet: every device kind, ``per_kind`` of each per gateway.

    By message count the mix is dominated by RFID portal reads (about 93 % scans, 7 % telemetry).
    ``sensors_only``: the sensor kinds alone, four times as many of each (all telemetry).
    """
    devices = [
        {"kind": "cold_room", "interval_s": 30, "count": per_kind},
        {"kind": "humidity", "interval_s": 60, "count": per_kind},
        {"kind": "conveyor", "interval_s": 30, "count": per_kind},
        {"kind": "power_meter", "interval_s": 30, "count": per_kind},
        {"kind": "barcode_scanner", "interval_s": 60, "skus": 50, "mean_daily_picks": 2000, "count": per_kind},
        {"kind": "rfid_portal", "interval_s": 30, "passes_per_hour": 120, "open_hour": 0, "close_hour": 24,
         "count": per_kind},
    ]
    if sensors_only:
        devices = [{**d, "count": 4 * per_kind} for d in devices if d["kind"] in SENSOR_KINDS]
    sites = [{"id": f"site-{i}", "gateways": [{"id": f"gw-{i}", "devices": devices}]} for i in range(gateways)]
    return Fleet.from_dict({"seed": seed, "start": "2026-03-02T06:00:00Z", "sites": sites})


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = float(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False
