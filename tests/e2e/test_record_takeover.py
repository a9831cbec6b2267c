"""A hostile gateway cannot pre-empt, overwrite or shadow another gateway's records (issue 10).

Two real agents (gw-a at site-a, gw-b at site-b) sync to one cloud on SQLite and on PostgreSQL.
Before gw-a's devices send anything, someone with gw-b's token posts a forged copy of the dev-1
messages gw-a is about to sync (seq 7 with made-up values, and a record named seq 8 carrying a
different device's message). The cloud keys records by (authenticated gateway, content-derived id):
the forged seq 7 stays gw-b's own record, the mislabelled one is rejected with its reason, and
gw-a's real messages are stored with their real values when gw-a's agent syncs them.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from e2e_kit import wait_until
from sqlalchemy import create_engine, select

from cloud.db.tables import readings
from edgehouse_cli.broker import MosquittoBroker
from edgehouse_cli.stack import AgentProcess, CloudProcess
from protocols import device_topic, record_id
from tests.helpers.postgres import fresh_database

T0 = 1_780_000_000_000


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    with fresh_database() as url:
        yield url


def _telemetry(device: str, seq: int, value: float) -> dict[str, Any]:
    return {"schema": "edgehouse.telemetry", "v": 1, "msg_id": f"m-{device}-{seq}", "device_id": device,
            "boot_id": "b1", "seq": seq, "ts": T0 + seq * 1000,
            "body": {"readings": [{"metric": "temperature_c", "value": value}]}}


def _record(rid: str, msg: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "telemetry", "id": rid, "received_ts": T0 + 60_000, "msg": msg}


def _forge(cloud: CloudProcess, token: str) -> dict[str, Any]:
    doc = {"schema": "edgehouse.sync_batch", "v": 1, "gateway_id": "gw-b", "batch_id": "forged-1",
           "sent_ts": T0 + 60_000, "agent_version": "0.1.0", "records": [
               _record(record_id("telemetry", "dev-1", "b1", 7), _telemetry("dev-1", 7, -40.0)),
               _record(record_id("telemetry", "dev-1", "b1", 8), _telemetry("zzz-other", 12345, -40.0)),
           ]}
    resp = httpx.post(f"{cloud.url}/api/v1/sync", content=gzip.compress(json.dumps(doc).encode()),
                      headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip",
                               "Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _publish(broker: MosquittoBroker, site: str, messages: list[dict[str, Any]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="takeover-dev", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for msg in messages:
            topic = device_topic(site, msg["device_id"], "telemetry")
            client.publish(topic, json.dumps(msg), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _counts(cloud: CloudProcess) -> dict[str, int]:
    return {gw["gateway_id"]: int(gw["counts"]["telemetry"]) for gw in cloud.gateways()}


def test_a_gateway_cannot_take_over_another_gateways_records(tmp_path: Path, database_url: str) -> None:
    broker = MosquittoBroker(data_dir=tmp_path / "broker")
    cloud = CloudProcess(workdir=tmp_path / "cloud", database_url=database_url)
    broker.start()
    agents: list[AgentProcess] = []
    try:
        cloud.start()
        tokens = {gw: cloud.register_gateway(gw, site) for gw, site in (("gw-a", "site-a"), ("gw-b", "site-b"))}
        for gw, site in (("gw-a", "site-a"), ("gw-b", "site-b")):
            agent = AgentProcess(gateway_id=gw, site=site, workdir=tmp_path / "agents", mqtt_host=broker.host,
                                 mqtt_port=broker.port, filters=[f"edgehouse/v1/{site}/+/+"], cloud_url=cloud.url,
                                 cloud_token=tokens[gw], extra={"models": {"enabled": False, "forecast_enabled": False}})
            agent.start()
            agents.append(agent)

        ack = _forge(cloud, tokens["gw-b"])
        assert ack["stored"] == ["telemetry:dev-1:b1:7"]
        assert [r["id"] for r in ack["rejected"]] == ["telemetry:dev-1:b1:8"]
        assert "does not match" in ack["rejected"][0]["reason"]
        assert "telemetry:zzz-other:b1:12345" in ack["rejected"][0]["reason"]

        # gw-a's device really sends seq 7 and 8; gw-b's own device sends one message of its own.
        _publish(broker, "site-a", [_telemetry("dev-1", 7, 4.5), _telemetry("dev-1", 8, 4.75)])
        _publish(broker, "site-b", [_telemetry("dev-9", 1, -18.0)])
        wait_until(lambda: _counts(cloud) == {"gw-a": 2, "gw-b": 2}, 60, "both gateways' records in the cloud")
        wait_until(lambda: all(a.status()["outbox_depth"] == 0 for a in agents), 30, "empty outboxes")
        assert agents[0].status()["sync_rejected"] == 0 and agents[1].status()["sync_rejected"] == 0
        time.sleep(1.0)  # nothing more arrives later
        assert _counts(cloud) == {"gw-a": 2, "gw-b": 2}

        engine = create_engine(database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(readings.c.gateway_id, readings.c.record_id, readings.c.value)
                                    .order_by(readings.c.gateway_id, readings.c.record_id)).all()
        finally:
            engine.dispose()
        assert [tuple(r) for r in rows] == [
            ("gw-a", "telemetry:dev-1:b1:7", 4.5),
            ("gw-a", "telemetry:dev-1:b1:8", 4.75),
            ("gw-b", "telemetry:dev-1:b1:7", -40.0),  # the forgery stays gw-b's own account
            ("gw-b", "telemetry:dev-9:b1:1", -18.0),
        ]
    finally:
        for agent in agents:
            agent.stop()
        cloud.stop()
        broker.stop()
