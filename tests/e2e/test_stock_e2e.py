"""Stock end to end: simulator scans → Mosquitto → agent (killed with -9 mid-stream) → cloud.

The gateway's stock book and the cloud's synced positions must both equal the ground truth replayed
from the scans the simulator published (``firmware_sim.stock_truth``), exactly, with duplicates,
reordered and late messages, RFID bursts, reboots, malformed messages and cycle counts in the stream.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from e2e_kit import wait_until

from edgehouse_cli.stack import CloudProcess
from firmware_sim.config import Fleet
from firmware_sim.faults import FaultConfig
from firmware_sim.runner import SimRunner
from firmware_sim.stock_truth import StockTruth


def stock_fleet() -> Fleet:
    return Fleet.from_dict({
        "seed": 21,
        "start": "2026-03-02T06:00:00Z",
        "day_seconds": 20.0,
        "sites": [{"id": "site-s", "gateways": [{"id": "gw-s", "devices": [
            {"kind": "barcode_scanner", "interval_s": 300, "skus": 6, "mean_daily_picks": 120, "count": 2,
             "count_every_days": 0.5, "open_hour": 0, "close_hour": 24},
            {"kind": "rfid_portal", "interval_s": 60, "passes_per_hour": 120, "skus": 6, "open_hour": 0,
             "close_hour": 24},
            {"kind": "cold_room", "interval_s": 60, "setpoint_c": 2.0},
        ]}]}],
    })


def cloud_stock(cloud: CloudProcess) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    with cloud.admin() as client:
        while True:
            resp = client.get("/api/v1/stock", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
            resp.raise_for_status()
            page = resp.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items


def test_stock_matches_the_scans_ground_truth_through_kill9(tmp_path: Path, broker, cloud: CloudProcess,
                                                            start_agents) -> None:
    fleet = stock_fleet()
    [agent] = start_agents(fleet)
    truth = StockTruth()
    faults = FaultConfig().with_overrides("duplicates=0.05,reorder=0.05,late=0.02,malformed=0.02,reboots=0.002")
    total = 6000
    runner = SimRunner(fleet, broker.host, broker.port, faults=faults, count=total, rate=400.0,
                       on_publish=truth.record)
    runner.start()
    for share in (0.3, 0.65):
        while not runner.done and runner.stats().published < share * total:
            time.sleep(0.05)
        assert not runner.done, "the stream ended before the kill"
        agent.kill9()
        agent.start()
    summary = runner.join(timeout=180)
    assert summary is not None and summary.duplicates > 0 and summary.rfid_burst_repeats > 0
    expected, discrepancies = truth.replay()
    assert discrepancies, "the fleet made no cycle counts"

    def synced() -> dict[tuple[str, str, str], int]:
        return {(i["site"], i["location"], i["sku"]): i["on_hand"] for i in cloud_stock(cloud)}

    def drained() -> bool:  # the stock worker queues positions every [stock] interval_s
        return (cloud.counts().get("scan", 0) >= summary.expected_stored.scan
                and agent.status()["outbox_depth"] == 0 and synced() == expected)

    wait_until(drained, 90, "the scans and stock to reach the cloud")
    assert cloud.counts()["scan"] == summary.expected_stored.scan

    db = sqlite3.connect(agent.data_dir / "agent.db")
    try:
        book = {(r[0], r[1], r[2]): int(r[3]) for r in db.execute("SELECT site, location, sku, on_hand FROM stock")}
        counted = {(r[0], r[1], int(r[2])): (int(r[3]), int(r[4])) for r in
                   db.execute("SELECT device_id, boot_id, seq, counted, expected FROM stock_discrepancies")}
    finally:
        db.close()
    assert book == expected
    assert counted == {k: (d.counted, d.expected) for k, d in discrepancies.items()}
    assert synced() == expected
    assert all(i["gateway_id"] == "gw-s" and i["last_scan_ts"] > 0 for i in cloud_stock(cloud))
    assert agent.stop() == 0
