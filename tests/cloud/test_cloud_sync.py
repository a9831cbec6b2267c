"""POST /api/v1/sync: idempotent storage, concurrency, counters, and every refusal with its reason."""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cloud_testkit import (
    GATEWAY_ID,
    admin_headers,
    alert_record,
    batch,
    forecast_record,
    gz,
    make_settings,
    register,
    scan_record,
    status_record,
    telemetry_batch,
    telemetry_record,
)
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cloud.app import create_app
from cloud.db.tables import alerts, device_status, forecasts, readings, scans, telemetry
from protocols import SyncAck

GZ = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def post(client: TestClient, headers: dict[str, str], doc: dict[str, Any]) -> Any:
    return client.post("/api/v1/sync", content=gz(doc), headers={**headers, **GZ})


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def gateway(client: TestClient, gateway_id: str = GATEWAY_ID) -> dict[str, Any]:
    resp = client.get(f"/api/v1/gateways/{gateway_id}", headers=admin_headers())
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_retrying_a_batch_leaves_the_same_state(client: TestClient, engine: Engine, gw_headers: dict) -> None:
    doc = telemetry_batch(GATEWAY_ID, 0, 20)
    ids = [r["id"] for r in doc["records"]]
    first = post(client, gw_headers, doc)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == ids and first.json()["duplicates"] == []
    assert SyncAck.model_validate_json(first.content).settled == set(ids)  # the gateway's strict parser
    snapshot = (count(engine, telemetry), count(engine, readings), gateway(client)["counts"])
    for _ in range(2):
        again = post(client, gw_headers, doc)
        assert again.status_code == 200
        assert again.json()["stored"] == [] and again.json()["duplicates"] == ids
        assert (count(engine, telemetry), count(engine, readings), gateway(client)["counts"]) == snapshot
    assert snapshot[0] == 20 and snapshot[1] == 40 and snapshot[2]["telemetry"] == 20


def test_partially_overlapping_batches(client: TestClient, engine: Engine, gw_headers: dict) -> None:
    assert post(client, gw_headers, telemetry_batch(GATEWAY_ID, 0, 10, "b-1")).json()["stored"][-1].endswith(":9")
    ack = post(client, gw_headers, telemetry_batch(GATEWAY_ID, 5, 15, "b-2")).json()
    assert ack["batch_id"] == "b-2"
    assert [i.rsplit(":", 1)[1] for i in ack["stored"]] == [str(s) for s in range(10, 15)]
    assert [i.rsplit(":", 1)[1] for i in ack["duplicates"]] == [str(s) for s in range(5, 10)]
    assert count(engine, telemetry) == 15 and count(engine, readings) == 30
    assert gateway(client)["counts"]["telemetry"] == 15


def test_concurrent_posts_of_one_batch_store_one_copy(client: TestClient, engine: Engine,
                                                      gw_headers: dict) -> None:
    doc = telemetry_batch(GATEWAY_ID, 0, 200)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: post(client, gw_headers, doc), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    stored = [i for a in answers for i in a.json()["stored"]]
    assert sorted(stored) == sorted(r["id"] for r in doc["records"])  # each id stored by exactly one answer
    for a in answers:
        assert set(a.json()["stored"]) | set(a.json()["duplicates"]) == set(stored)
    assert count(engine, telemetry) == 200 and count(engine, readings) == 400
    assert gateway(client)["counts"]["telemetry"] == 200


def test_concurrent_overlapping_batches_from_two_gateways(client: TestClient, engine: Engine) -> None:
    """The same device messages relayed by two gateways, in opposite orders, at the same time: each
    gateway's account is stored exactly once, under that gateway (records are scoped per gateway)."""
    heads = {gw: register(client, gw) for gw in ("gw-a", "gw-b")}
    docs = [(gw, telemetry_batch(gw, 0, 150, f"batch-{gw}")) for gw in heads]
    docs[1][1]["records"].reverse()
    jobs = [docs[i % 2] for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda job: post(client, heads[job[0]], job[1]), jobs))
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    for gw, doc in docs:
        stored = [i for job, a in zip(jobs, answers, strict=True) if job[0] == gw for i in a.json()["stored"]]
        assert sorted(stored) == sorted(r["id"] for r in doc["records"])  # each id stored by exactly one answer
        assert gateway(client, gw)["counts"]["telemetry"] == 150
    assert count(engine, telemetry) == 300 and count(engine, readings) == 600


def test_every_kind_is_stored_and_counted(client: TestClient, engine: Engine, gw_headers: dict) -> None:
    records = [telemetry_record("cold-1", 1), scan_record("reader-1", 1), scan_record("reader-1", 2), status_record("cold-1", 0),
               alert_record(GATEWAY_ID, 1), forecast_record(GATEWAY_ID, 1), forecast_record(GATEWAY_ID, 2, sku="SKU-2")]
    doc = batch(GATEWAY_ID, records, "mixed")
    ack = post(client, gw_headers, doc).json()
    assert ack["stored"] == [r["id"] for r in records] and ack["rejected"] == []
    assert [count(engine, t) for t in (telemetry, readings, scans, device_status, alerts, forecasts)] == [
        1, 2, 2, 1, 1, 2]
    gw = gateway(client)
    assert gw["counts"] == {"telemetry": 1, "scan": 2, "device_status": 1, "alert": 1, "forecast": 2}
    assert gw["last_batch_id"] == "mixed" and gw["agent_version"] == "0.1.0"
    assert gw["last_seen_ts"] is not None and gw["last_seen_ts"] >= gw["created_ts"]
    with engine.connect() as conn:
        row = conn.execute(select(readings).where(readings.c.metric == "temperature_c")).one()
    assert (row.record_id, row.device_id, row.value) == (records[0]["id"], "cold-1", 4.0)


def test_repeated_ids_and_foreign_alerts_inside_one_batch(client: TestClient, engine: Engine,
                                                          gw_headers: dict) -> None:
    rec = telemetry_record("cold-1", 3)
    foreign = alert_record("gw-other", 9)
    ack = post(client, gw_headers, batch(GATEWAY_ID, [rec, rec, foreign])).json()
    assert ack["stored"] == [rec["id"]] and ack["duplicates"] == []
    assert [r["id"] for r in ack["rejected"]] == [foreign["id"]]
    assert "gw-other" in ack["rejected"][0]["reason"]
    assert count(engine, telemetry) == 1 and count(engine, alerts) == 0


def test_plain_json_is_accepted(client: TestClient, gw_headers: dict) -> None:
    resp = client.post("/api/v1/sync", json=telemetry_batch(GATEWAY_ID, 0, 3), headers=gw_headers)
    assert resp.status_code == 200 and len(resp.json()["stored"]) == 3


def test_a_1000_record_batch(client: TestClient, engine: Engine, gw_headers: dict) -> None:
    doc = batch(GATEWAY_ID, [telemetry_record(f"dev-{i % 50}", i) for i in range(1000)])
    resp = post(client, gw_headers, doc)
    assert resp.status_code == 200 and len(resp.json()["stored"]) == 1000
    assert count(engine, readings) == 2000


# --- refusals ---------------------------------------------------------------------------------------------


def test_missing_or_unknown_token_is_401(client: TestClient, gw_headers: dict) -> None:
    doc = telemetry_batch(GATEWAY_ID, 0, 1)
    for headers in ({}, {"Authorization": "Bearer not-a-known-token-at-all"}, {"Authorization": "Basic eDp5"}):
        resp = post(client, headers, doc)
        assert resp.status_code == 401
        assert resp.json()["detail"][0]["field"] == "authorization"
        assert resp.headers["www-authenticate"] == "Bearer"


def test_wrong_role_or_other_gateway_is_403(client: TestClient, engine: Engine, gw_headers: dict) -> None:
    assert post(client, admin_headers(), telemetry_batch(GATEWAY_ID, 0, 1)).status_code == 403
    register(client, "gw-other")
    resp = post(client, gw_headers, telemetry_batch("gw-other", 0, 1))
    assert resp.status_code == 403
    assert resp.json()["detail"][0]["field"] == "gateway_id"
    assert count(engine, telemetry) == 0


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (lambda d: d["records"][3]["msg"].update(seq="7"), "records.3.msg.seq", "valid integer"),
        (lambda d: d["records"][1]["msg"]["body"]["readings"][0].update(value=500.0),
         "records.1.msg.body.readings.0", "outside"),
        (lambda d: d["records"][2].update(kind="weather"), "records.2", "does not match any of the expected tags"),
        (lambda d: d["records"][0].update(extra=1), "records.0.extra", "Extra inputs"),
        (lambda d: d.pop("batch_id"), "batch_id", "Field required"),
        (lambda d: d.update(records=[]), "records", "at least 1"),
    ],
)
def test_invalid_batch_is_422_naming_the_field(client: TestClient, gw_headers: dict, mutate: Any, field: str,
                                               fragment: str) -> None:
    doc = telemetry_batch(GATEWAY_ID, 0, 5)
    mutate(doc)
    resp = post(client, gw_headers, doc)
    assert resp.status_code == 422
    errors = resp.json()["detail"]
    assert errors[0]["field"] == field, errors
    assert fragment in errors[0]["message"]


def test_invalid_alert_inside_batch_names_the_field(client: TestClient, gw_headers: dict) -> None:
    bad = alert_record(GATEWAY_ID, 1)
    bad["alert"]["score"] = 1.5
    resp = post(client, gw_headers, batch(GATEWAY_ID, [telemetry_record(), bad]))
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "records.1.alert.score"


def test_malformed_json_is_422(client: TestClient, gw_headers: dict) -> None:
    resp = client.post("/api/v1/sync", content=gzip.compress(b'{"records": ['), headers={**gw_headers, **GZ})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "body"


def test_unknown_encoding_is_415(client: TestClient, gw_headers: dict) -> None:
    resp = client.post("/api/v1/sync", content=b"xx", headers={**gw_headers, "Content-Encoding": "br"})
    assert resp.status_code == 415
    assert resp.json()["detail"][0]["field"] == "content-encoding"


@pytest.mark.parametrize("body", [b"\x1f\x8b\x08\x00garbage", gz(telemetry_batch(GATEWAY_ID, 0, 5))[:-12], b""])
def test_bad_gzip_is_400(client: TestClient, gw_headers: dict, body: bytes) -> None:
    resp = client.post("/api/v1/sync", content=body, headers={**gw_headers, **GZ})
    assert resp.status_code == 400
    assert resp.json()["detail"][0]["field"] == "body"


def test_size_limits_are_413(database_url: str) -> None:
    settings = make_settings(database_url, max_body_bytes=4096, max_decompressed_bytes=64 * 1024)
    with TestClient(create_app(settings)) as client:
        headers = register(client)
        bomb = gzip.compress(b" " * (1024 * 1024))  # ~1 KB that inflates to 1 MB
        assert len(bomb) < 4096
        too_big_inflated = client.post("/api/v1/sync", content=bomb, headers={**headers, **GZ})
        assert too_big_inflated.status_code == 413
        assert "decompressed" in too_big_inflated.json()["detail"][0]["message"]
        raw = json.dumps(telemetry_batch(GATEWAY_ID, 0, 40)).encode()
        assert len(raw) > 4096
        too_big_sent = client.post("/api/v1/sync", content=raw, headers=headers)
        assert too_big_sent.status_code == 413
        fits = client.post("/api/v1/sync", content=gz(telemetry_batch(GATEWAY_ID, 0, 40)), headers={**headers, **GZ})
        assert fits.status_code == 200


def _readings_of(engine: Engine, gateway_id: str) -> list[tuple[str, str, float]]:
    with engine.connect() as conn:
        rows = conn.execute(select(readings.c.record_id, readings.c.metric, readings.c.value)
                            .where(readings.c.gateway_id == gateway_id)
                            .order_by(readings.c.record_id, readings.c.metric)).all()
    return [tuple(r) for r in rows]


def test_another_gateway_cannot_pre_empt_or_shadow_records(client: TestClient, engine: Engine) -> None:
    """The takeover of issue 10: gw-b posts gw-a's upcoming dev-1 seq 7 (forged values) and a record named
    seq 8 that carries another device's message, before gw-a syncs its real ones."""
    heads = {gw: register(client, gw) for gw in ("gw-a", "gw-b")}
    forged = telemetry_record("dev-1", 7, temp=-40.0)
    mislabelled = {**telemetry_record("zzz-other", 12345), "id": telemetry_record("dev-1", 8)["id"]}
    ack = post(client, heads["gw-b"], batch("gw-b", [forged, mislabelled], "forged")).json()
    assert ack["stored"] == [forged["id"]] and ack["duplicates"] == []
    assert [r["id"] for r in ack["rejected"]] == [mislabelled["id"]]
    assert ack["rejected"][0]["reason"] == ("id 'telemetry:dev-1:b1:8' does not match the record's content "
                                            "(expected 'telemetry:zzz-other:b1:12345')")

    real = [telemetry_record("dev-1", 7, temp=4.5), telemetry_record("dev-1", 8, temp=4.75)]
    ack = post(client, heads["gw-a"], batch("gw-a", real, "real")).json()
    assert ack["stored"] == [r["id"] for r in real] and ack["duplicates"] == [] and ack["rejected"] == []
    assert gateway(client, "gw-a")["counts"]["telemetry"] == 2
    assert gateway(client, "gw-b")["counts"]["telemetry"] == 1
    assert _readings_of(engine, "gw-a") == [
        ("telemetry:dev-1:b1:7", "door_open", 1.0), ("telemetry:dev-1:b1:7", "temperature_c", 4.5),
        ("telemetry:dev-1:b1:8", "door_open", 0.0), ("telemetry:dev-1:b1:8", "temperature_c", 4.75)]
    assert _readings_of(engine, "gw-b") == [
        ("telemetry:dev-1:b1:7", "door_open", 1.0), ("telemetry:dev-1:b1:7", "temperature_c", -40.0)]
    # gw-b retrying its forgery changes nothing for gw-a.
    again = post(client, heads["gw-b"], batch("gw-b", [forged], "forged")).json()
    assert again["duplicates"] == [forged["id"]]
    assert len(_readings_of(engine, "gw-a")) == 4


@pytest.mark.parametrize("make", [
    lambda: {**telemetry_record("c-dev", 30), "id": "telemetry:c-dev:cb1:999999"},
    lambda: {**telemetry_record("c-dev", 30), "id": "scan:c-dev:b1:30"},
    lambda: {**scan_record("reader-1", 3), "id": "scan:reader-1:b1:4"},
    lambda: {**status_record("cold-1", 2), "id": "status:cold-1:b1:2"},
    lambda: {**alert_record(GATEWAY_ID, 1), "id": "alert:a2"},
    lambda: {**forecast_record(GATEWAY_ID, 1), "id": "forecast:gw:SKU-1:1"},
], ids=["seq", "kind", "scan", "status", "alert", "forecast"])
def test_a_record_whose_id_does_not_match_its_content_is_rejected(client: TestClient, engine: Engine,
                                                                 gw_headers: dict, make: Any) -> None:
    bad = make()
    ack = post(client, gw_headers, batch(GATEWAY_ID, [bad])).json()
    assert ack["stored"] == [] and ack["duplicates"] == []
    assert [r["id"] for r in ack["rejected"]] == [bad["id"]]
    assert "does not match the record's content" in ack["rejected"][0]["reason"]
    assert sum(count(engine, t) for t in (telemetry, scans, device_status, alerts, forecasts)) == 0
    assert sum(gateway(client)["counts"].values()) == 0


def test_a_correct_record_after_a_mislabelled_one_is_stored_once(client: TestClient, engine: Engine,
                                                                 gw_headers: dict) -> None:
    good = telemetry_record("c-dev", 30)
    bad = {**good, "id": "telemetry:c-dev:cb1:999999"}
    post(client, gw_headers, batch(GATEWAY_ID, [bad], "b1"))
    ack = post(client, gw_headers, batch(GATEWAY_ID, [good, good], "b2")).json()
    assert ack["stored"] == [good["id"]]
    assert count(engine, telemetry) == 1 and count(engine, readings) == 2
