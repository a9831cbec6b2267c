"""The bulk store's two paths: a batch of new records (straight into the tables) and one that overlaps
what is stored (savepoint rolled back, stored keys looked up, the others inserted). Every kind, both
databases: the ack, the rows, the readings, the counters and the rollup agree with what was sent."""

from __future__ import annotations

from typing import Any

from cloud_testkit import GATEWAY_ID, admin_headers, batch, gz, mixed_records
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from cloud.db.tables import RECORD_TABLES, readings


def _post(client: TestClient, headers: dict[str, str], records: list[dict[str, Any]], batch_id: str) -> Any:
    resp = client.post("/api/v1/sync", content=gz(batch(GATEWAY_ID, records, batch_id)),
                       headers={**headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _state(engine: Engine) -> tuple[dict[str, int], int, int]:
    with engine.connect() as conn:
        rows = {kind: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for kind, t in RECORD_TABLES.items()}
        n_readings = int(conn.execute(select(func.count()).select_from(readings)).scalar_one())
        rolled = int(conn.execute(text("SELECT coalesce(sum(n), 0) FROM readings_hourly")).scalar_one())
    return rows, n_readings, rolled


def test_new_and_overlapping_batches_of_every_kind(client: TestClient, engine: Engine,
                                                   gw_headers: dict[str, str]) -> None:
    first = mixed_records(GATEWAY_ID, 0, 400)
    ack = _post(client, gw_headers, first, "b1")
    assert ack["stored"] == [r["id"] for r in first] and ack["duplicates"] == []
    # half known (every kind among them), half new, in an interleaved order
    second = [r for pair in zip(mixed_records(GATEWAY_ID, 200, 200), mixed_records(GATEWAY_ID, 400, 200),
                                strict=True) for r in pair]
    ack = _post(client, gw_headers, second, "b2")
    assert ack["stored"] == [r["id"] for r in second[1::2]] and ack["duplicates"] == [r["id"] for r in second[::2]]
    assert _post(client, gw_headers, second, "b2-retry")["stored"] == []
    sent = mixed_records(GATEWAY_ID, 0, 600)
    rows, n_readings, rolled = _state(engine)
    assert rows == {kind: sum(r["kind"] == kind for r in sent) for kind in RECORD_TABLES}
    assert all(rows[kind] > 0 for kind in RECORD_TABLES)
    assert n_readings == rolled == sum(len(r["msg"]["body"]["readings"]) for r in sent if r["kind"] == "telemetry")
    counts = client.get(f"/api/v1/gateways/{GATEWAY_ID}", headers=admin_headers()).json()["counts"]
    assert counts == rows
