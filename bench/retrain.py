"""Anomaly retrain on demo-sized data, end to end through the cloud API.

The demo fleet (firmware_sim/fleets/demo.toml, no faults) runs offline for ``--days`` simulated days;
its telemetry is synced into a fresh SQLite cloud through ``POST /api/v1/sync``; then one
``POST /api/v1/models/train {"task": "anomaly"}`` job runs in its worker process (default epochs
from the settings). Prints the data size, the job's metrics and, on the last line, its wall time.

    .venv/bin/python bench/retrain.py --days 1
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from cloud.app import create_app
from cloud.settings import CloudSettings
from firmware_sim.config import Fleet
from firmware_sim.faults import FaultConfig
from firmware_sim.generator import messages
from protocols import record_id

FLEET = Path(__file__).resolve().parents[1] / "firmware_sim" / "fleets" / "demo.toml"
ADMIN = "bench-admin-" + "Zr8Qm2Lx7Vp4Kt9W"


def telemetry_by_gateway(fleet: Fleet, days: float) -> dict[str, list[dict[str, Any]]]:
    gateway_of = {fleet.site_of(g): g for g in fleet.gateway_ids}
    out: dict[str, list[dict[str, Any]]] = {g: [] for g in fleet.gateway_ids}
    for topic, payload, _truth in messages(fleet, days * 86_400, FaultConfig()):
        if not topic.endswith("/telemetry"):
            continue
        msg = json.loads(payload)
        site = topic.split("/")[2]
        rid = record_id("telemetry", msg["device_id"], msg["boot_id"], msg["seq"])
        out[gateway_of[site]].append({"kind": "telemetry", "id": rid, "received_ts": msg["ts"], "msg": msg})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=1.0, help="simulated days of demo-fleet telemetry")
    parser.add_argument("--epochs", type=int, default=None, help="default: the cloud's train_anomaly_epochs")
    args = parser.parse_args()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with tempfile.TemporaryDirectory(prefix="edgehouse-retrain-") as tmp:
        settings = CloudSettings(admin_token=SecretStr(ADMIN), database_url=f"sqlite:///{tmp}/cloud.db",
                                 train_workdir=Path(tmp) / "train")
        fleet = Fleet.load(FLEET)
        records = telemetry_by_gateway(fleet, args.days)
        with TestClient(create_app(settings)) as client:
            for gateway_id, recs in records.items():
                resp = client.post("/api/v1/gateways", json={"gateway_id": gateway_id,
                                                              "site": fleet.site_of(gateway_id)}, headers=admin)
                token = {"Authorization": f"Bearer {resp.json()['token']}"}
                for k in range(0, len(recs), 2000):
                    doc = {"schema": "edgehouse.sync_batch", "v": 1, "gateway_id": gateway_id, "batch_id": f"b{k}",
                           "sent_ts": 0, "agent_version": "0.1.0", "records": recs[k : k + 2000]}
                    resp = client.post("/api/v1/sync", content=gzip.compress(json.dumps(doc).encode()),
                                       headers={**token, "Content-Encoding": "gzip",
                                                "Content-Type": "application/json"})
                    resp.raise_for_status()
            body: dict[str, Any] = {"task": "anomaly"} | ({"epochs": args.epochs} if args.epochs else {})
            started = time.monotonic()
            job = client.post("/api/v1/models/train", json=body, headers=admin).json()
            while job["state"] in ("queued", "running"):
                time.sleep(0.2)
                job = client.get(f"/api/v1/models/jobs/{job['job_id']}", headers=admin).json()
            elapsed = time.monotonic() - started
        n_msgs = sum(len(r) for r in records.values())
        print(f"{n_msgs} telemetry messages of {len(fleet.gateway_ids)} gateways, {args.days:g} simulated days")
        print(f"job {job['job_id']}: {job['state']} {job['error'] or ''}")
        for line in job["log"][-6:]:
            print("  " + line)
        for name, value in sorted((job["metrics"] or {}).items()):
            print(f"  {name} = {value:.4f}")
        print(f"anomaly retrain on demo-sized data: {elapsed:.1f} s (submit to finished)")


if __name__ == "__main__":
    main()
