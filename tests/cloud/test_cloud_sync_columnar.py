"""POST /api/v1/sync in the columnar encoding: advertised on every answer, stored exactly like the JSON batch,
refused as strictly (4xx naming the field); and the agent's negotiation with a real cloud and with an old one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
from cloud_testkit import (
    BASE_TS,
    GATEWAY_ID,
    admin_headers,
    batch,
    make_settings,
    mixed_records,
    telemetry_record,
)
from fastapi.testclient import TestClient
from live_cloud import LiveCloud
from sqlalchemy import Engine, func, select

from cloud.db.tables import alerts, readings, scans, telemetry
from edge_agent.cloud_client import cloud_client
from edge_agent.config import CloudConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store
from edge_agent.sync import Outcome, SyncWorker
from protocols import SyncBatchHeader
from protocols.columnar import CONTENT_TYPE, encode

COLUMNAR = {"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"}


def columnar(doc: dict[str, Any]) -> bytes:
    header = SyncBatchHeader.model_validate({k: v for k, v in doc.items() if k != "records"})
    return gzip.compress(encode(header, (json.dumps(r) for r in doc["records"])))


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_columnar_batch_is_stored_like_json_and_every_answer_advertises(
    client: TestClient, engine: Engine, gw_headers: dict[str, str]
) -> None:
    doc = batch(GATEWAY_ID, mixed_records(GATEWAY_ID, 0, 400))
    ids = [r["id"] for r in doc["records"]]
    resp = client.post("/api/v1/sync", content=columnar(doc), headers={**gw_headers, **COLUMNAR})
    assert resp.status_code == 200, resp.text
    assert set(resp.json()["stored"]) == set(ids) and resp.json()["duplicates"] == []
    assert CONTENT_TYPE in resp.headers["accept-post"] and "gzip" in resp.headers["accept-encoding"]
    n_telemetry, n_scans, n_alerts = count(engine, telemetry), count(engine, scans), count(engine, alerts)
    n_readings = count(engine, readings)
    assert n_telemetry + n_scans + n_alerts > 0
    # The same batch again as JSON: every record a duplicate, nothing stored twice.
    again = client.post("/api/v1/sync", content=gzip.compress(json.dumps(doc).encode()),
                        headers={**gw_headers, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert again.status_code == 200 and set(again.json()["duplicates"]) == set(ids)
    assert CONTENT_TYPE in again.headers["accept-post"]
    assert (count(engine, telemetry), count(engine, scans), count(engine, alerts), count(engine, readings)) == (
        n_telemetry, n_scans, n_alerts, n_readings)


def test_a_bad_columnar_batch_gets_a_4xx_naming_the_field(client: TestClient, gw_headers: dict[str, str]) -> None:
    record = telemetry_record("cold-1", 3)
    record["msg"]["seq"] = -1
    doc = batch(GATEWAY_ID, [telemetry_record("cold-1", 1), record])
    resp = client.post("/api/v1/sync", content=columnar(doc), headers={**gw_headers, **COLUMNAR})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["field"] == "records.1.msg.seq"
    assert CONTENT_TYPE in resp.headers["accept-post"]  # a refusal of the content, not of the encoding
    document = json.loads(gzip.decompress(columnar(batch(GATEWAY_ID, [telemetry_record("cold-1", 1)]))))
    document["groups"][0]["cols"][0] = {"q": 1}
    resp = client.post("/api/v1/sync", content=gzip.compress(json.dumps(document).encode()),
                       headers={**gw_headers, **COLUMNAR})
    assert resp.status_code == 400
    assert resp.json()["detail"][0]["field"] == "groups.0.cols.0"
    assert CONTENT_TYPE in resp.headers["accept-post"]
    resp = client.post("/api/v1/sync", content=b"\x28\xb5\x2f\xfd garbage",
                       headers={**gw_headers, "Content-Type": CONTENT_TYPE, "Content-Encoding": "br"})
    assert resp.status_code == 415 and resp.json()["detail"][0]["field"] == "content-encoding"


def test_an_agent_switches_to_columnar_once_this_cloud_advertises_it(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(database_url)
    with LiveCloud(settings) as cloud, httpx.Client(base_url=cloud.url) as http:
        resp = http.post("/api/v1/gateways", json={"gateway_id": GATEWAY_ID, "site": "berlin"},
                         headers=admin_headers())
        assert resp.status_code == 201, resp.text
        token = resp.json()["token"]
        store = Store(tmp_path / "agent.db")
        store.open()
        conn = store.connect()
        records = mixed_records(GATEWAY_ID, 0, 1200)
        with conn:
            conn.executemany("INSERT INTO outbox (id, kind, created_ts, payload) VALUES (?, ?, ?, ?)",
                             [(r["id"], r["kind"], BASE_TS + i, json.dumps(r, separators=(",", ":")))
                              for i, r in enumerate(records)])
        config = CloudConfig(url=cloud.url, token=token, batch_max_records=500)
        worker = SyncWorker(config, GATEWAY_ID, store, AgentMetrics())
        encodings = []
        with cloud_client(config) as client:
            while (result := worker.run_once(conn, client)).outcome is Outcome.SENT:
                encodings.append(worker.wire.encoding)
        assert result.outcome is Outcome.IDLE
        assert encodings[0] == "columnar" and encodings[-1] == "columnar"  # after the first (JSON) answer
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
        assert worker.wire.bytes_per_record() < 40
        gateway = http.get(f"/api/v1/gateways/{GATEWAY_ID}", headers=admin_headers()).json()
        assert sum(gateway["counts"].values()) == len(records)
        conn.close()
