"""A device alert end to end: a multichannel machine over Mosquitto → agent (joint device score) → cloud.

The machine's current doubles while its flow and pressure say the load is unchanged: the agent
raises one device alert (no metric; every channel a driver with its contribution, expected vs
observed; the window) and the cloud stores it as sent.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import paho.mqtt.client as paho
from e2e_kit import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edgehouse_cli.broker import MosquittoBroker
from edgehouse_cli.stack import AgentProcess, CloudProcess
from protocols import Reading, TelemetryBody, TelemetryMessage, device_topic, encode

SITE = "site-d"
GATEWAY = "gw-d"
DEVICE = "pump-01"
N = 900
FAULT_AT = 700
BASE_TS = 1_772_409_600_000  # 2026-03-02T00:00:00Z


def _rows() -> list[dict[str, float]]:
    rng = random.Random(5)
    rows = []
    for i in range(N):
        speed = 0.8 + 0.05 * math.sin(i / 90.0)
        current = 12 * speed**3 + rng.gauss(0, 0.05)
        rows.append({
            "flow_m3_h": round(50 * speed + rng.gauss(0, 0.3), 3),
            "motor_current_a": round(current * (2.0 if i >= FAULT_AT else 1.0), 3),
            "pressure_bar": round(1 + 2.5 * speed**2 + rng.gauss(0, 0.01), 4),
        })
    return rows


def _publish(broker: MosquittoBroker) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="pump", protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for i, row in enumerate(_rows()):
            msg = TelemetryMessage(
                msg_id=f"t-{DEVICE}-{i}", device_id=DEVICE, boot_id="boot-a", seq=i, ts=BASE_TS + i * 60_000,
                body=TelemetryBody(readings=tuple(Reading(metric=k, value=v) for k, v in row.items())),  # type: ignore[arg-type]
            )
            client.publish(device_topic(SITE, DEVICE, "telemetry"), encode(msg), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _device_alerts(cloud: CloudProcess) -> list[dict]:  # type: ignore[type-arg]
    with cloud.admin() as client:
        resp = client.get("/api/v1/alerts", params={"gateway_id": GATEWAY, "device_id": DEVICE, "kind": "anomaly"})
        resp.raise_for_status()
        return [item["alert"] for item in resp.json()["items"] if item["alert"]["metric"] is None]


def test_a_broken_relation_between_channels_reaches_the_cloud_as_one_device_alert(
    tmp_path: Path, broker: MosquittoBroker, cloud: CloudProcess
) -> None:
    agent = AgentProcess(
        gateway_id=GATEWAY, site=SITE, workdir=tmp_path / "agents", mqtt_host=broker.host,
        mqtt_port=broker.port, filters=[f"edgehouse/v1/{SITE}/+/+"], cloud_url=cloud.url,
        cloud_token=cloud.register_gateway(GATEWAY, SITE),
    )
    agent.start()
    try:
        _publish(broker)
        wait_until(lambda: agent.metric("edgehouse_agent_device_scored_messages_total") == N, 60,
                   "every message scored per device")
        wait_until(lambda: len(_device_alerts(cloud)) >= 1, 60, "the device alert in the cloud")
        raised = agent.metric('edgehouse_agent_device_alerts_total{state="raised"}')
    finally:
        assert agent.stop() == 0
    [alert] = _device_alerts(cloud)
    assert raised == 1
    assert alert["state"] == "raised" and alert["v"] == 2 and alert["detector"].startswith("device_")
    assert BASE_TS + (FAULT_AT + 9) * 60_000 <= alert["ts"] <= BASE_TS + (FAULT_AT + 20) * 60_000
    assert alert["score"] >= alert["threshold"]
    drivers = alert["drivers"]
    assert {d["metric"] for d in drivers} == {"flow_m3_h", "motor_current_a", "pressure_bar"}
    assert drivers[0]["metric"] == "motor_current_a" and drivers[0]["observed"] > drivers[0]["expected"]
    assert sum(d["contribution"] for d in drivers) <= 1.0
    assert alert["window_start_ts"] < alert["window_end_ts"] == alert["ts"] and alert["window_readings"] >= 1
