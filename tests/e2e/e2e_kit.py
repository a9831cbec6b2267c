"""Helpers shared by the end-to-end tests (fleet, waiting)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from firmware_sim.config import Fleet
from tests.helpers.waiting import patience


def two_site_fleet(seed: int = 11, day_seconds: float = 60.0) -> Fleet:
    """Two sites, one gateway each, every device kind, fast enough for a short test."""

    def devices(setpoint: float) -> list[dict[str, Any]]:
        return [
            {"kind": "cold_room", "interval_s": 60, "setpoint_c": setpoint, "count": 2},
            {"kind": "humidity", "interval_s": 120},
            {"kind": "conveyor", "interval_s": 60},
            {"kind": "power_meter", "interval_s": 60},
            {"kind": "barcode_scanner", "interval_s": 120, "skus": 10, "mean_daily_picks": 300},
            {"kind": "rfid_portal", "interval_s": 60, "passes_per_hour": 60, "open_hour": 0, "close_hour": 24},
        ]

    return Fleet.from_dict(
        {
            "seed": seed,
            "start": "2026-03-02T06:00:00Z",
            "day_seconds": day_seconds,
            "sites": [
                {"id": "site-a", "gateways": [{"id": "gw-a", "devices": devices(2.0)}]},
                {"id": "site-b", "gateways": [{"id": "gw-b", "devices": devices(-20.0)}]},
            ],
        }
    )



def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + patience(timeout_s)
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
