"""Small fleets for the simulator tests (imported by the test modules next to it)."""

from __future__ import annotations

from typing import Any

from firmware_sim.config import Fleet


def one_gateway(devices: list[dict[str, Any]], seed: int = 7, **top: Any) -> Fleet:
    return Fleet.from_dict(
        {"seed": seed, "sites": [{"id": "s1", "gateways": [{"id": "gw1", "devices": devices}]}], **top}
    )


def mixed(seed: int = 7) -> Fleet:
    """One of every kind, fast sample rates so a few simulated hours exercise everything."""
    return one_gateway(
        [
            {"kind": "cold_room", "interval_s": 30},
            {"kind": "humidity", "interval_s": 60},
            {"kind": "conveyor", "interval_s": 30},
            {"kind": "power_meter", "interval_s": 30},
            {"kind": "barcode_scanner", "interval_s": 120, "skus": 10, "mean_daily_picks": 200},
            {"kind": "rfid_portal", "interval_s": 30, "passes_per_hour": 120, "open_hour": 0, "close_hour": 24},
        ],
        seed=seed,
        start="2026-03-02T08:00:00Z",
    )
