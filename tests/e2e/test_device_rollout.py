"""A signed device_anomaly release rolled out to a real agent: shadow on the canary's multichannel
telemetry, the device gate (model errors, device alerts per device-day) passes on what the agent
reports, then the release is active and the device worker scores with it.

Real Mosquitto, the cloud and the agent as processes; the cloud signs with an online key the agent trusts.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path

import paho.mqtt.client as paho
from e2e_kit import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edgehouse_cli.broker import MosquittoBroker
from edgehouse_cli.lifecycle import ModelAdmin, running_version
from edgehouse_cli.stack import AgentProcess, CloudProcess
from models.manifest import manifest_path_for
from models.runtime import default_model_path
from protocols import Reading, TelemetryBody, TelemetryMessage, device_topic, encode
from protocols.signing import Signer, generate_private_key_pem

TASK = "device_anomaly"
SITE = "site-r"
GATEWAY = "gw-r"
DEVICE = "pump-07"
BASE_TS = 1_772_409_600_000  # 2026-03-02T00:00:00Z


def _publish(broker: MosquittoBroker, start: int, n: int) -> None:
    """``n`` messages of a healthy pump (flow, current, pressure in one message), a minute apart."""
    rng = random.Random(start)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pump-{start}", protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for i in range(start, start + n):
            speed = 0.8 + 0.05 * math.sin(i / 90.0)
            row = {"flow_m3_h": round(50 * speed + rng.gauss(0, 0.3), 3),
                   "motor_current_a": round(12 * speed**3 + rng.gauss(0, 0.05), 3),
                   "pressure_bar": round(1 + 2.5 * speed**2 + rng.gauss(0, 0.01), 4)}
            msg = TelemetryMessage(
                msg_id=f"t-{DEVICE}-{i}", device_id=DEVICE, boot_id="boot-a", seq=i, ts=BASE_TS + i * 60_000,
                body=TelemetryBody(readings=tuple(Reading(metric=k, value=v) for k, v in row.items())),  # type: ignore[arg-type]
            )
            client.publish(device_topic(SITE, DEVICE, "telemetry"), encode(msg), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _candidate() -> tuple[bytes, dict[str, object]]:
    """The shipped device network with one byte of its description changed: new bytes, it loads."""
    path = default_model_path(TASK)
    data = path.read_bytes().replace(b"MLIR Converted.", b"MLIR Converted!")
    manifest = json.loads(manifest_path_for(path).read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    return data, manifest


def test_a_device_release_rolled_out_to_a_gateway_is_installed_and_scores(tmp_path: Path,
                                                                          broker: MosquittoBroker) -> None:
    key = tmp_path / "release.pem"
    key.write_bytes(generate_private_key_pem())
    cloud = CloudProcess(workdir=tmp_path / "cloud", settings={"signing_key_file": str(key), "rollout_tick_s": "0.2"})
    cloud.start()
    agent = AgentProcess(
        gateway_id=GATEWAY, site=SITE, workdir=tmp_path / "agents", mqtt_host=broker.host, mqtt_port=broker.port,
        filters=[f"edgehouse/v1/{SITE}/+/+"], cloud_url=cloud.url, cloud_token=cloud.register_gateway(GATEWAY, SITE),
        extra={"updates": {"trusted_keys": [Signer.from_file(key).public_key.public_key], "poll_interval_s": 0.3,
                           "report_interval_s": 0.3, "min_free_bytes": 0}},
    )
    agent.start()
    try:
        admin = ModelAdmin(cloud.url, cloud.admin_token)
        assert running_version(agent.status(), TASK) == 1  # the shipped device model
        # The agent's model_report v3 says it supports device_anomaly: its desired state becomes v2.
        wait_until(lambda: admin.desired(GATEWAY)["v"] == 2, 30, "the agent's v3 report in the cloud")
        data, manifest = _candidate()
        version = admin.upload(TASK, data, manifest, parent_version=1)
        admin.promote(TASK, version)
        gates = {"min_device_days": 0.1, "min_stage_duration_s": 1.0, "stage_timeout_s": 120}
        rollout = admin.rollout(TASK, version, shadow=True, gates=gates)
        assert [m["gateway_id"] for m in rollout["members"]] == [GATEWAY]
        wait_until(lambda: agent.status()["models"][TASK].get("shadow_version") == version, 30,
                   "the candidate in shadow")
        _publish(broker, 0, 700)  # 400 messages of warm-up, then 300 compared (5 h of one device)
        final = admin.wait_rollout(rollout["rollout_id"], 120)
        assert final["state"] == "completed", json.dumps([final["events"], final["members"]])
        shadow_passed = next(e for e in final["events"] if e["kind"] == "shadow_passed")
        assert "device alerts per device-day" in shadow_passed["reason"] and "errors 0" in shadow_passed["reason"]
        [member] = final["members"]
        assert member["current_version"] == version  # what the agent's model_report says it runs
        line = agent.status()["models"][TASK]
        assert line["version"] == version and line["previous_version"] == 1 and line.get("rejected_code") is None
        assert agent.metric(f'edgehouse_agent_model_version{{task="{TASK}"}}') == version
        # The device worker scores with the new model: every further message of the pump is scored.
        before = agent.metric("edgehouse_agent_device_scored_messages_total")
        assert before >= 700 - 400
        _publish(broker, 700, 50)
        wait_until(lambda: agent.metric("edgehouse_agent_device_scored_messages_total") >= before + 50, 30,
                   "the new messages scored")
        desired = admin.desired(GATEWAY)
        [model] = [m for m in desired["models"] if m["task"] == TASK]
        assert model["mode"] == "active" and model["release"]["signed"]["v"] == 2
        assert model["release"]["signed"]["model_version"] == version
    finally:
        assert agent.stop() == 0
        cloud.stop()
