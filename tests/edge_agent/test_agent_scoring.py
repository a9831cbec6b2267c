"""edge_agent.scoring: hysteresis, the scoring thread, model load failures, alerts over MQTT."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from agent_testkit import GATEWAY, SITE, free_port, inbound, storing, telemetry
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.app import Agent
from edge_agent.config import ModelsConfig
from edge_agent.ingest_batch import BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.scoring.hysteresis import AlertHysteresis, HysteresisConfig
from edge_agent.scoring.worker import InferenceWorker
from edge_agent.store import Store
from edge_agent.store.telemetry import Reading
from models.anomaly import AnomalyResult
from models.runtime import default_model_path
from protocols import AlertPayload, AlertRecord, device_topic, encode, gateway_topic
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.waiting import wait_for

N_READINGS = 400
SPIKE_AT = 300


def series(n: int = N_READINGS, spike_at: int | None = SPIKE_AT) -> list[float]:
    """A slow wave with a little noise (seeded) and one spike of +15 degrees."""
    rng = random.Random(1)
    values = [20.0 + 2.0 * math.sin(i / 30) + rng.gauss(0.0, 0.1) for i in range(n)]
    if spike_at is not None:
        values[spike_at] += 15.0
    return values


def write_telemetry(store: Store, values: list[float], batch: int = 50, device: str = "dev-1") -> None:
    """Commit ``values`` as telemetry through the ingest batch writer, ``batch`` messages per commit."""
    conn = store.connect()
    try:
        writer = BatchWriter(conn, SITE, 2000, 4096)
        msgs = [inbound(telemetry(i, device=device, value=round(v, 3)), i + 1) for i, v in enumerate(values)]
        for start in range(0, len(msgs), batch):
            writer.write(msgs[start : start + batch], 1)
    finally:
        conn.close()


def outbox_alerts(store: Store) -> list[AlertPayload]:
    conn = store.connect()
    try:
        rows = conn.execute("SELECT payload FROM outbox WHERE kind = 'alert' ORDER BY rowid").fetchall()
    finally:
        conn.close()
    return [AlertRecord.model_validate_json(payload).alert for (payload,) in rows]


# --------------------------------------------------------------------------- hysteresis


def result(score: float) -> AnomalyResult:
    return AnomalyResult(score=score, expected=20.0, observed=21.0, alert=score >= 0.3)


def test_hysteresis_raises_once_clears_below_ratio_and_cools_down() -> None:
    h = AlertHysteresis(
        GATEWAY,
        HysteresisConfig(threshold=0.3, clear_ratio=0.5, cooldown_ms=60_000, window=3, max_streams=10),
        model_version=1,
    )
    scores = [0.1, 0.1, 0.5, 0.9, 0.2, 0.16, 0.1, 0.6, 0.05, 0.1, 0.4, 0.1]
    ts = [i * 10_000 for i in range(len(scores))]  # 10 s apart
    out = [h.observe(Reading("dev-1", "temperature_c", t, 21.0), result(s)) for t, s in zip(ts, scores)]
    emitted = [(i, a.state) for i, a in enumerate(out) if a is not None]
    # raise at 0.5 (20 s); 0.9, 0.2, 0.16 stay raised (>= 0.15); clear at 0.1; 0.6 at 70 s is within
    # the 60 s cool-down of the raise: suppressed; 0.4 at 100 s raises again, 0.1 clears it.
    assert emitted == [(2, "raised"), (6, "cleared"), (10, "raised"), (11, "cleared")]
    assert h.suppressed == 1
    raised, cleared = out[2], out[6]
    assert raised is not None and cleared is not None
    assert raised.kind == "anomaly" and raised.score == 0.5 and raised.threshold == 0.3
    assert raised.window_start_ts == 0 and raised.window_end_ts == 20_000  # the last 3 readings
    assert cleared.window_start_ts == 20_000 and cleared.window_end_ts == 60_000  # raise -> clear
    assert raised.expected == 20.0 and raised.observed == 21.0 and raised.model_version == 1
    assert raised.alert_id != cleared.alert_id
    # streams are independent
    other = h.observe(Reading("dev-2", "temperature_c", 0, 21.0), result(0.5))
    assert other is not None and other.state == "raised" and not h.active("dev-1", "temperature_c")


# --------------------------------------------------------------------------- the worker


def test_spike_gives_one_raised_and_one_cleared_alert_in_the_outbox(store: Store) -> None:
    metrics = AgentMetrics()
    worker = InferenceWorker(ModelsConfig(), GATEWAY, store, metrics, storing(store))
    worker.start()
    try:
        assert worker.running
        write_telemetry(store, series())
        worker.notify()
        assert wait_for(lambda: metrics.value("inference_scored_readings_total") == N_READINGS)
    finally:
        worker.stop()
    alerts = outbox_alerts(store)
    assert [a.state for a in alerts] == ["raised", "cleared"]
    raised, cleared = alerts
    spike_ts = telemetry(SPIKE_AT).ts
    assert raised.ts == spike_ts and raised.device_id == "dev-1" and raised.metric == "temperature_c"
    assert raised.score is not None and raised.threshold is not None and raised.score >= raised.threshold
    assert raised.observed == pytest.approx(series()[SPIKE_AT], abs=1e-3)
    assert raised.expected is not None and abs(raised.observed - raised.expected) > 10
    assert raised.window_start_ts is not None and raised.window_start_ts < spike_ts == raised.window_end_ts
    assert raised.model_version == 1
    assert cleared.ts > spike_ts and cleared.window_start_ts == spike_ts
    assert cleared.score is not None and cleared.score < raised.threshold * 0.5
    assert metrics.value("inference_alerts_total", {"state": "raised"}) == 1
    assert metrics.value("inference_alerts_total", {"state": "cleared"}) == 1
    assert metrics.value("model_loaded", {"task": "anomaly"}) == 1
    running = worker.running_model()
    assert running is not None and running.version == 1 and worker.error is None
    assert metrics.value("inference_scored_readings_total") == N_READINGS
    assert metrics.value("inference_dropped_messages_total") == 0


def test_stored_readings_warm_the_streams_up_without_alerting(store: Store) -> None:
    values = series(400, spike_at=200)
    # a second spike, after the restart (and the scorer's 150-reading damping); larger than the first,
    # since a repeat of a value already seen is no longer rare (models/surprise.py)
    values[370] += 40.0
    write_telemetry(store, values[:320])  # stored before (re)start, its spike included
    metrics = AgentMetrics()
    # readings are 1 s apart here: a cool-down shorter than the 170 s between the spikes; the threshold
    # is pinned so the test does not depend on the shipped calibration
    worker = InferenceWorker(
        ModelsConfig(cooldown_s=60, threshold=0.3), GATEWAY, store, metrics, storing(store)
    )
    worker.start()
    try:
        assert wait_for(lambda: metrics.value("inference_warmup_readings_total") == 320)
        assert outbox_alerts(store) == []  # the old spike is history: no alert for it
        conn = store.connect()
        try:
            writer = BatchWriter(conn, SITE, 2000, 4096)
            writer.write([inbound(telemetry(i, value=round(values[i], 3)), i) for i in range(320, 400)], 1)
        finally:
            conn.close()
        worker.notify()
        assert wait_for(lambda: metrics.value("inference_scored_readings_total") == 80)
    finally:
        worker.stop()
    # 50 readings after start would be inside a cold stream's 150-reading warm-up
    assert [(a.state, a.ts) for a in outbox_alerts(store)][:1] == [("raised", telemetry(370).ts)]


def test_no_warmup_scores_only_what_is_committed_after_start(store: Store) -> None:
    write_telemetry(store, series())
    metrics = AgentMetrics()
    worker = InferenceWorker(ModelsConfig(warmup_messages=0), GATEWAY, store, metrics, storing(store))
    worker.start()
    worker.stop()
    assert metrics.value("inference_scored_readings_total") == 0
    assert metrics.value("inference_warmup_readings_total") == 0 and outbox_alerts(store) == []


def test_backlog_over_queue_size_is_dropped_and_counted(store: Store) -> None:
    metrics = AgentMetrics()
    worker = InferenceWorker(ModelsConfig(queue_size=10), GATEWAY, store, metrics, storing(store))
    worker.start()
    try:
        write_telemetry(store, series(100, None), batch=100)  # one commit: the worker sees all or none
        worker.notify()
        assert wait_for(lambda: metrics.value("inference_scored_readings_total") == 10)
    finally:
        worker.stop()
    assert metrics.value("inference_dropped_messages_total") == 90


def test_disabled_loads_nothing(store: Store) -> None:
    metrics = AgentMetrics()
    worker = InferenceWorker(ModelsConfig(enabled=False), GATEWAY, store, metrics, storing(store))
    worker.start()
    assert not worker.running and not worker.should_run and worker.running_model() is None
    worker.stop()


# --------------------------------------------------------------------------- the agent


def tampered_model(tmp_path: Path) -> Path:
    src = default_model_path("anomaly")
    dst = tmp_path / "anomaly.tflite"
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("which", ["missing", "tampered"])
def test_bad_model_keeps_the_agent_running_and_reports_it(
    make_config: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    path = tmp_path / "nope.tflite" if which == "missing" else tampered_model(tmp_path)
    cfg = make_config(
        mqtt={"port": free_port(), "reconnect_min_s": 0.05, "reconnect_max_s": 0.2},
        models={"anomaly_model": str(path)},
    )
    agent = Agent(cfg)
    with caplog.at_level(logging.ERROR, logger="edge_agent.scoring.worker"):
        agent.start()
    try:
        assert agent.ingest.running and not agent.inference.running
        assert agent.forecaster.running  # the demand model is the shipped one: unaffected
        error = agent.inference.error
        assert agent.inference.running_model() is None and error is not None
        assert str(path) in error or path.name in error
        assert any("anomaly scoring is off" in r.getMessage() for r in caplog.records)
        assert agent.metrics.value("model_loaded", {"task": "anomaly"}) == 0
        assert agent.http is not None
        metrics_text = httpx.get(f"http://127.0.0.1:{agent.http.port}/metrics").text
        assert 'edgehouse_agent_model_loaded{task="anomaly"} 0.0' in metrics_text
        health = httpx.get(f"http://127.0.0.1:{agent.http.port}/healthz").json()
        # No broker here (the reason says why); inference not blamed.
        assert len(health["reasons"]) == 1 and health["reasons"][0].startswith("mqtt not connected")
    finally:
        agent.stop()


def test_agent_scores_mqtt_telemetry_and_publishes_alerts(make_config: Any, broker: Mosquitto) -> None:
    cfg = make_config(mqtt={"port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5})
    seen: list[AlertPayload] = []
    watcher = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="watch", protocol=paho.MQTTv5
    )
    watcher.on_message = lambda c, u, msg: seen.append(AlertPayload.model_validate_json(msg.payload))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(gateway_topic(SITE, GATEWAY, "alert"), qos=1)
    watcher.loop_start()
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pub", protocol=paho.MQTTv5)
    pub.max_inflight_messages_set(500)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    agent = Agent(cfg)
    agent.start()
    try:
        assert wait_for(lambda: agent.mqtt.connected)
        topic = device_topic(SITE, "dev-1", "telemetry")
        infos = [
            pub.publish(topic, encode(telemetry(i, value=round(v, 3))), qos=1) for i, v in enumerate(series())
        ]
        for info in infos:
            info.wait_for_publish(10)
        assert wait_for(lambda: agent.metrics.value("inference_scored_readings_total") == N_READINGS)
        assert wait_for(lambda: len(seen) == 2)
        assert [a.state for a in seen] == ["raised", "cleared"]
        assert [a.alert_id for a in outbox_alerts(agent.store)] == [a.alert_id for a in seen]
        assert json.loads(seen[0].model_dump_json())["kind"] == "anomaly"
    finally:
        agent.stop()
        pub.loop_stop()
        pub.disconnect()
        watcher.loop_stop()
        watcher.disconnect()
