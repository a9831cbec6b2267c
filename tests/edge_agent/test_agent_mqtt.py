"""The agent against a private Mosquitto started from the shipped config."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import paho.mqtt.client as paho
from agent_testkit import GATEWAY, SITE, FakeCloud, status_msg, telemetry
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import runtime
from edge_agent.app import Agent
from edge_agent.config import AgentConfig
from protocols import AlertPayload, GatewayStatusPayload, device_topic, encode, gateway_topic
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.waiting import wait_for


def publisher(broker: Mosquitto, client_id: str = "pub") -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
    )
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def publish_telemetry(client: paho.Client, seqs: range, device: str = "dev-1") -> None:
    topic = device_topic(SITE, device, "telemetry")
    infos = [client.publish(topic, encode(telemetry(i, device=device)), qos=1) for i in seqs]
    for info in infos:
        info.wait_for_publish(10)


def config_for(make_config: Any, broker: Mosquitto, **extra: Any) -> AgentConfig:
    return make_config(mqtt={"port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5}, **extra)


def stored(agent: Agent, table: str = "telemetry") -> int:
    conn = agent.store.connect()
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_messages_stored_once_acked_and_session_persists(make_config: Any, broker: Mosquitto) -> None:
    cfg = config_for(make_config, broker)
    pub = publisher(broker)
    agent = Agent(cfg)
    agent.start()
    try:
        assert agent.mqtt.wait_connected(10)
        time.sleep(0.2)  # subscription acknowledged
        publish_telemetry(pub, range(2000))
        pub.publish(device_topic(SITE, "dev-1", "telemetry"), encode(telemetry(5)), qos=1).wait_for_publish(5)
        assert wait_for(lambda: stored(agent) == 2000 and agent.status().duplicates == 1)
        info = runtime.read(cfg.runtime_path)
        base = f"http://127.0.0.1:{info.http_port}"
        status = httpx.get(f"{base}/status").json()
        assert status["gateway_id"] == GATEWAY and status["mqtt_connected"] is True
        assert status["stored"] == {"telemetry": 2000, "scan": 0, "device_status": 0}
        assert status["messages_in"] == 2001 and status["outbox_depth"] == 2000
        assert status["oldest_unsynced_age_s"] is not None and status["last_sync_ts"] is None
        assert httpx.get(f"{base}/healthz").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert "edgehouse_agent_messages_in_total 2001.0" in metrics
        assert "edgehouse_agent_outbox_depth 2000.0" in metrics
    finally:
        agent.stop()
    assert not cfg.runtime_path.exists()

    # While the agent is down the broker keeps its session: these wait for it.
    publish_telemetry(pub, range(2000, 2500))
    second = Agent(cfg)
    second.start()
    try:
        assert wait_for(lambda: stored(second) == 2500)
        time.sleep(0.5)
        # Everything of the first run was acknowledged: nothing came back as a duplicate.
        assert second.status().duplicates == 0 and second.status().messages_in == 500
    finally:
        second.stop()
        pub.loop_stop()
        pub.disconnect()


def test_birth_offline_status_and_alert_publish(make_config: Any, broker: Mosquitto) -> None:
    cfg = config_for(make_config, broker)
    seen: list[GatewayStatusPayload] = []
    alerts: list[AlertPayload] = []
    watcher = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="watch", protocol=paho.MQTTv5
    )

    def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            seen.append(GatewayStatusPayload.model_validate_json(msg.payload))
        else:
            alerts.append(AlertPayload.model_validate_json(msg.payload))

    watcher.on_message = on_message
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(gateway_topic(SITE, GATEWAY, "status"), qos=1)
    watcher.subscribe(gateway_topic(SITE, GATEWAY, "alert"), qos=1)
    watcher.loop_start()
    agent = Agent(cfg)
    agent.start()
    try:
        assert wait_for(lambda: any(s.state == "online" for s in seen))
        alert = AlertPayload(
            alert_id="a-1", gateway_id=GATEWAY, kind="system", state="raised", ts=1, message="test"
        )
        assert agent.enqueue_alert(alert) and not agent.enqueue_alert(alert)
        assert wait_for(lambda: alerts == [alert])
        assert agent.status().outbox_depth == 1
    finally:
        agent.stop()
    assert wait_for(lambda: seen[-1].state == "offline")
    watcher.loop_stop()
    watcher.disconnect()


def test_reconnects_after_broker_restart_and_syncs(
    make_config: Any, broker: Mosquitto, fake_cloud: FakeCloud
) -> None:
    cfg = config_for(make_config, broker, cloud={"url": fake_cloud.url, "token": "t", "interval_s": 0.2})
    agent = Agent(cfg)
    agent.start()
    try:
        assert agent.mqtt.wait_connected(10)
        time.sleep(0.2)
        pub = publisher(broker, "pub-1")
        publish_telemetry(pub, range(100))
        pub.publish(device_topic(SITE, "dev-1", "status"), encode(status_msg(1000)), qos=1, retain=True)
        pub.loop_stop()
        pub.disconnect()
        assert wait_for(lambda: stored(agent) == 100)
        broker.stop()
        assert wait_for(lambda: not agent.mqtt.connected, 5)
        assert httpx.get(f"http://127.0.0.1:{agent.http.port}/healthz").status_code == 503  # type: ignore[union-attr]
        broker.start()
        assert agent.mqtt.wait_connected(10)
        time.sleep(0.2)
        pub = publisher(broker, "pub-2")
        publish_telemetry(pub, range(100, 200))
        pub.loop_stop()
        pub.disconnect()
        assert wait_for(lambda: stored(agent) == 200)
        assert wait_for(lambda: len(fake_cloud.stored) == 201)
        assert stored(agent, "device_status") == 1
        assert agent.status().synced == 201 and agent.status().outbox_depth == 0
    finally:
        agent.stop()
    data = json.loads(json.dumps([b.model_dump(mode="json") for b in fake_cloud.batches]))
    assert all(b["gateway_id"] == GATEWAY for b in data)
