"""``edgehouse-cloud serve --workers 2``: two real API processes ingest concurrently from several gateways.

Every gateway sends overlapping batches (each record in two batches) and posts each batch twice, from
several threads at once, so the two processes race on the same gateways' records. Checked against
what was sent: every record stored exactly once (no loss, no duplicate acked as stored twice), every
answer a 200 whose ack settles the whole batch, the counters and the rows agree, and both processes
did the work.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from cloud_testkit import admin_headers, batch, mixed_records
from served_cloud import ServedCloud
from sqlalchemy import create_engine, func, select

from cloud.db.tables import RECORD_TABLES, gateways, readings

GATEWAYS = 6
BATCHES = 8
STEP, SIZE = 100, 200  # batch k holds records [k*STEP, k*STEP+SIZE): each record in two batches


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _post_all(url: str, token: str, gw: str, acks: list[dict[str, Any]], errors: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"}
    with httpx.Client(base_url=url, timeout=60) as http:
        for k in range(BATCHES):
            body = gzip.compress(json.dumps(batch(gw, mixed_records(gw, k * STEP, SIZE), f"b{k}")).encode())
            for _ in range(2):
                resp = http.post("/api/v1/sync", content=body, headers=headers)
                if resp.status_code != 200:
                    errors.append(f"{gw} b{k}: {resp.status_code} {resp.text[:200]}")
                    continue
                acks.append(resp.json())


def test_two_worker_processes_ingest_concurrently_without_loss_or_duplicates(database_url: str) -> None:
    with ServedCloud(database_url, workers=2) as cloud:
        pids = cloud.worker_pids()
        assert len(pids) == 2, pids
        before = {pid: _cpu_ticks(pid) for pid in pids}
        tokens = {}
        for i in range(GATEWAYS):
            gw = f"gw-par-{i}"
            resp = httpx.post(f"{cloud.url}/api/v1/gateways", json={"gateway_id": gw, "site": f"site-{i % 2}"},
                              headers=admin_headers(), timeout=30)
            assert resp.status_code == 201, resp.text
            tokens[gw] = resp.json()["token"]
        acks: dict[str, list[dict[str, Any]]] = {gw: [] for gw in tokens}
        errors: list[str] = []
        threads = [threading.Thread(target=_post_all, args=(cloud.url, tokens[gw], gw, acks[gw], errors))
                   for gw in tokens for _ in range(2)]  # two senders per gateway: its batches race too
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        busy = {pid: _cpu_ticks(pid) - before[pid] for pid in pids}

    assert all(ticks > 0 for ticks in busy.values()), busy  # both processes served requests
    sent = {gw: {r["id"] for k in range(BATCHES) for r in mixed_records(gw, k * STEP, SIZE)} for gw in tokens}
    assert all(len(ids) == (BATCHES - 1) * STEP + SIZE for ids in sent.values())
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            for gw, ids in sent.items():
                stored = Counter(rid for ack in acks[gw] for rid in ack["stored"])
                assert set(stored) == ids and max(stored.values()) == 1  # each stored once, none lost
                assert all(not ack["rejected"] for ack in acks[gw])
                n_rows = sum(conn.execute(select(func.count()).select_from(t).where(t.c.gateway_id == gw))
                             .scalar_one() for t in RECORD_TABLES.values())
                assert n_rows == len(ids)
                counters = conn.execute(select(*(gateways.c[f"n_{k}"] for k in RECORD_TABLES))
                                        .where(gateways.c.gateway_id == gw)).one()
                assert sum(counters) == len(ids)
                n_readings = conn.execute(select(func.count()).select_from(readings)
                                          .where(readings.c.gateway_id == gw)).scalar_one()
                telemetry = {r["id"]: r for k in range(BATCHES) for r in mixed_records(gw, k * STEP, SIZE)
                             if r["kind"] == "telemetry"}
                assert n_readings == sum(len(r["msg"]["body"]["readings"]) for r in telemetry.values())
    finally:
        engine.dispose()
