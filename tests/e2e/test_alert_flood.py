"""An alert storm end to end: Mosquitto → agent (real scoring, the site's alert budget) → cloud.

Fifteen streams spike within seconds of each other: the agent sends the first ten alerts, raises
one ``alert_flood`` system alert instead of the rest, withholds the other raises and their clears
(counted in ``/metrics`` and ``/status``), clears the flood once the window calms down with the
final counts, and all of it reaches the cloud.
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
from protocols import ALERT_FLOOD, Reading, TelemetryBody, TelemetryMessage, device_topic, encode

SITE = "site-f"
GATEWAY = "gw-f"
STREAMS = 15
READINGS = 260
SPIKE_AT = 220
BASE_TS = 1_772_409_600_000  # 2026-03-02T00:00:00Z
#: Readings 1 s apart: no daily cycle to learn first, each stream scores after its 150-reading warm-up.
STEP_MS = 1_000
FLOOD_ALERTS = 10
WINDOW_S = 30


def _values(device: int) -> list[float]:
    rng = random.Random(device)
    values = [20.0 + 2.0 * math.sin(i / 30 + device) + rng.gauss(0.0, 0.1) for i in range(READINGS)]
    values[SPIKE_AT] += 40.0
    return values


def _publish_storm(broker: MosquittoBroker) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="storm", protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        series = {d: _values(d) for d in range(STREAMS)}
        for i in range(READINGS):  # every stream advances together: the spikes come within seconds
            for d in range(STREAMS):
                device = f"cold-{d:02d}"
                msg = TelemetryMessage(
                    msg_id=f"t-{device}-{i}",
                    device_id=device,
                    boot_id="boot-a",
                    seq=i,
                    ts=BASE_TS + i * STEP_MS,
                    body=TelemetryBody(readings=(Reading(metric="temperature_c", value=round(series[d][i], 3)),)),
                )
                client.publish(device_topic(SITE, device, "telemetry"), encode(msg), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _cloud_alerts(cloud: CloudProcess, **query: str) -> list[dict]:  # type: ignore[type-arg]
    with cloud.admin() as client:
        resp = client.get("/api/v1/alerts", params={"gateway_id": GATEWAY, "limit": "500", **query})
        resp.raise_for_status()
        return [item["alert"] for item in resp.json()["items"]]


def test_a_storm_raises_one_flood_alert_counts_what_it_withheld_and_syncs_it(
    tmp_path: Path, broker: MosquittoBroker, cloud: CloudProcess
) -> None:
    agent = AgentProcess(
        gateway_id=GATEWAY, site=SITE, workdir=tmp_path / "agents", mqtt_host=broker.host,
        mqtt_port=broker.port, filters=[f"edgehouse/v1/{SITE}/+/+"], cloud_url=cloud.url,
        cloud_token=cloud.register_gateway(GATEWAY, SITE),
        extra={"alerts": {"flood_window_s": WINDOW_S, "flood_alerts": FLOOD_ALERTS, "flood_clear_alerts": 5,
                          "check_interval_s": 1.0}},
    )
    agent.start()
    try:
        _publish_storm(broker)
        wait_until(lambda: agent.status()["stored"]["telemetry"] == STREAMS * READINGS, 60, "the storm stored")
        wait_until(lambda: len(_cloud_alerts(cloud, code=ALERT_FLOOD)) == 2, 90,
                   "the alert_flood alert raised and cleared in the cloud")
        status = agent.status()["alerts"]
        withheld_raised = agent.metric('edgehouse_agent_alerts_withheld_total{state="raised"}')
        withheld_cleared = agent.metric('edgehouse_agent_alerts_withheld_total{state="cleared"}')
        floods = agent.metric("edgehouse_agent_alert_floods_total")
        wait_until(lambda: agent.status()["outbox_depth"] == 0, 30, "the outbox synced")
        anomaly = _cloud_alerts(cloud, kind="anomaly")
    finally:
        assert agent.stop() == 0

    raised, cleared = sorted(_cloud_alerts(cloud, code=ALERT_FLOOD), key=lambda a: a["state"] != "raised")
    assert (raised["state"], cleared["state"]) == ("raised", "cleared")
    assert raised["kind"] == "system" and raised["flood"]["flood_limit"] == FLOOD_ALERTS
    assert raised["flood"]["window_s"] == WINDOW_S and raised["flood"]["site"] == SITE
    # every stream raised once: ten went out, the other five (and their clears) were withheld
    sent_raises = [a for a in anomaly if a["state"] == "raised"]
    assert len(sent_raises) == FLOOD_ALERTS
    assert len({a["device_id"] for a in sent_raises}) == FLOOD_ALERTS
    withheld = STREAMS - FLOOD_ALERTS
    assert cleared["flood"]["suppressed"] == 2 * withheld
    assert cleared["flood"]["alerts_in_window"] <= 5
    # counted, never silent: /metrics and /status say the same
    assert (withheld_raised, withheld_cleared, floods) == (withheld, withheld, 1)
    assert status["floods"] == 1 and status["withheld"] == 2 * withheld and not status["flood_active"]
    # each anomaly alert that went out names its stream, expected vs observed and its window
    for a in sent_raises:
        assert a["drivers"][0]["metric"] == "temperature_c" and a["drivers"][0]["contribution"] == 1.0
        assert a["expected"] is not None and a["observed"] > a["expected"]
        assert a["window_start_ts"] < a["window_end_ts"] == a["ts"] == BASE_TS + SPIKE_AT * STEP_MS
