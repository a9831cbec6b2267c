"""Joint scoring per multichannel device: the device alert's payload, the worker on a real store."""

from __future__ import annotations

import math
import random

import pytest
from agent_testkit import BASE_TS, GATEWAY, inbound, storing
from test_agent_scoring import outbox_alerts

from edge_agent.config import ModelsConfig
from edge_agent.ingest_batch import BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.scoring.device_alerts import DeviceAlertConfig, DeviceAlerts, device_alert_id
from edge_agent.scoring.device_worker import DeviceScoringWorker
from edge_agent.store import Store
from models.device_anomaly import ChannelShare, DeviceResult
from protocols import AlertPayload, Reading, TelemetryBody, TelemetryMessage
from tests.helpers.waiting import wait_for

SITE = "site-1"
N = 900
FAULT_AT = 700


def _result(score: float) -> DeviceResult:
    return DeviceResult(
        score=score,
        alert=score >= 0.9,
        detector="spe",
        channels=(
            ChannelShare("flow_m3_h", 0.1, 40.0, 39.0),
            ChannelShare("motor_current_a", 0.7, 6.4, 8.7),
            ChannelShare("pressure_bar", 0.2, 2.6, 2.5),
        ),
        window=5,
    )


def test_device_alert_names_every_channel_with_its_contribution_and_clears() -> None:
    alerts = DeviceAlerts(GATEWAY, DeviceAlertConfig(0.9, 0.5, 60_000, 10, confirm=2), model_version=3)
    scores = [0.1] * 4 + [0.95, 0.1, 0.95, 0.97, 0.99, 0.4]  # one message at the threshold is not enough
    out = [alerts.observe("pump-1", BASE_TS + i * 1000, _result(s)) for i, s in enumerate(scores)]
    raised, cleared = out[7], out[9]
    assert out[:7] == [None] * 7 and out[8] is None
    assert raised is not None and cleared is not None
    again = AlertPayload.model_validate_json(raised.model_dump_json(by_alias=True))
    assert again == raised and again.metric is None and again.kind == "anomaly" and again.v == 2
    assert [d.metric for d in raised.drivers] == ["motor_current_a", "pressure_bar", "flow_m3_h"]
    top = raised.drivers[0]
    assert top.contribution == pytest.approx(0.7) and top.expected == 6.4 and top.observed == 8.7
    assert sum(d.contribution for d in raised.drivers) <= 1.0
    assert raised.detector == "device_spe" and raised.window_readings == 5
    assert raised.window_start_ts == BASE_TS + 3000 and raised.window_end_ts == BASE_TS + 7000
    assert "motor_current_a 70% (observed 8.7, expected 6.4)" in raised.message
    assert raised.alert_id == device_alert_id(GATEWAY, "pump-1", BASE_TS + 7000, "raised")
    assert cleared.state == "cleared" and cleared.window_start_ts == raised.ts
    # the cool-down: a new raise within 60 s of the last one is suppressed and counted
    assert alerts.observe("pump-1", BASE_TS + 20_000, _result(0.99)) is None
    assert alerts.observe("pump-1", BASE_TS + 21_000, _result(0.99)) is None and alerts.suppressed == 1
    assert alerts.observe("pump-1", BASE_TS + 70_000, _result(0.99)) is None
    assert alerts.observe("pump-1", BASE_TS + 71_000, _result(0.99)) is not None


def _pump_rows(n: int, fault_at: int | None) -> list[dict[str, float]]:
    """A pump-like device: speed wanders, flow ~ n, pressure ~ n², current ~ n³; after ``fault_at``
    the current doubles while flow and pressure stay (a relation broken)."""
    rng = random.Random(5)
    rows = []
    for i in range(n):
        speed = 0.8 + 0.05 * math.sin(i / 90.0)
        current = 12 * speed**3 + rng.gauss(0, 0.05)
        if fault_at is not None and i >= fault_at:
            current *= 2.0
        rows.append(
            {
                "flow_m3_h": round(50 * speed + rng.gauss(0, 0.3), 3),
                "motor_current_a": round(current, 3),
                "pressure_bar": round(1 + 2.5 * speed**2 + rng.gauss(0, 0.01), 4),
            }
        )
    return rows


def _write(store: Store, rows: list[dict[str, float]], device: str = "pump-1", batch: int = 100,
           seq0: int = 0) -> None:
    conn = store.connect()
    try:
        writer = BatchWriter(conn, SITE, 2000, 4096)
        msgs = [
            inbound(
                TelemetryMessage(
                    msg_id=f"t-{device}-{i}",
                    device_id=device,
                    boot_id="boot-a",
                    seq=i,
                    ts=BASE_TS + i * 60_000,
                    body=TelemetryBody(readings=tuple(Reading(metric=k, value=v) for k, v in r.items())),  # type: ignore[arg-type]
                ),
                i + 1,
            )
            for i, r in enumerate(rows, seq0)
        ]
        for start in range(0, len(msgs), batch):
            writer.write(msgs[start : start + batch], 1)
    finally:
        conn.close()


def test_the_worker_raises_one_device_alert_for_a_broken_relation(store: Store) -> None:
    metrics = AgentMetrics()
    worker = DeviceScoringWorker(ModelsConfig(), GATEWAY, store, metrics, storing(store))
    worker.start()
    try:
        assert worker.running and worker.error is None
        _write(store, _pump_rows(N, FAULT_AT))
        worker.notify()
        assert wait_for(lambda: metrics.value("device_scored_messages_total") == N, timeout=30)
    finally:
        worker.stop()
    alerts = outbox_alerts(store)
    assert [a.state for a in alerts] == ["raised"]
    raised = alerts[0]
    assert raised.device_id == "pump-1" and raised.metric is None
    # confirmed after 10 messages at the threshold (ModelsConfig.device_confirm_messages)
    assert BASE_TS + (FAULT_AT + 9) * 60_000 <= raised.ts <= BASE_TS + (FAULT_AT + 20) * 60_000
    assert raised.window_readings is not None and raised.window_readings >= 10
    assert raised.drivers[0].metric == "motor_current_a"
    assert raised.drivers[0].observed is not None and raised.drivers[0].expected is not None
    assert raised.drivers[0].observed > raised.drivers[0].expected
    assert metrics.value("device_alerts_total", {"state": "raised"}) == 1
    assert metrics.value("model_loaded", {"task": "device_anomaly"}) == 1


def test_single_channel_devices_are_left_to_the_stream_scorer(store: Store) -> None:
    metrics = AgentMetrics()
    worker = DeviceScoringWorker(ModelsConfig(), GATEWAY, store, metrics, storing(store))
    worker.start()
    try:
        _write(store, [{"temperature_c": 20.0 + 0.01 * i} for i in range(50)], device="temp-1")
        _write(store, _pump_rows(10, None), device="pump-2")
        worker.notify()
        assert wait_for(lambda: metrics.value("device_scored_messages_total") == 10)
    finally:
        worker.stop()
    assert outbox_alerts(store) == []


def test_a_missing_model_leaves_the_agent_without_device_scoring(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    metrics = AgentMetrics()
    config = ModelsConfig(device_model=tmp_path / "nope.tflite")
    worker = DeviceScoringWorker(config, GATEWAY, store, metrics, storing(store))
    worker.start()
    assert not worker.running and not worker.should_run and worker.error is not None
    assert metrics.value("model_loaded", {"task": "device_anomaly"}) == 0
    worker.stop()
    off = DeviceScoringWorker(ModelsConfig(device_enabled=False), GATEWAY, store, metrics, storing(store))
    off.start()
    assert not off.running and not off.should_run


def test_a_shadow_device_model_is_counted_next_to_the_running_one_then_promoted(store: Store) -> None:
    from edge_agent.updates.slot import ModelInfo
    from models.runtime import default_model_path, load_model

    metrics = AgentMetrics()
    worker = DeviceScoringWorker(ModelsConfig(), GATEWAY, store, metrics, storing(store))
    worker.start()
    try:
        path = default_model_path("device_anomaly")
        man = load_model(path).manifest
        info = ModelInfo("device_anomaly", man.version + 1, man.sha256, path, metadata_version=1)
        shipped = load_model(path)
        assert worker.install(_relabelled(worker, info, shipped), "shadow")
        assert worker.shadow_model() == info
        _write(store, _pump_rows(N, FAULT_AT))
        worker.notify()
        assert wait_for(lambda: metrics.value("device_scored_messages_total") == N, timeout=30)
        stats = worker.model_stats()
        assert stats.shadow is not None and stats.baseline is not None and stats.active is not None
        # counted from the message that completes each device's warm-up (the 400th) on
        assert stats.shadow.readings == stats.baseline.readings == N - 399 == stats.active.readings
        assert stats.shadow.alerts_raised == stats.baseline.alerts_raised == 1
        assert worker.promote_shadow(info)
        assert worker.running_model() == info and worker.shadow_model() is None
    finally:
        worker.stop()
    assert len(outbox_alerts(store)) == 1  # the shadow's alert was counted, never emitted


def _relabelled(worker: DeviceScoringWorker, info, model):  # type: ignore[no-untyped-def]
    """The shipped bytes prepared as if they were release ``info`` (a newer version, same file)."""
    from edge_agent.scoring.device_worker import _DeviceModel
    from models.device_anomaly import DeviceScorer

    return _DeviceModel(DeviceScorer(model), info)
