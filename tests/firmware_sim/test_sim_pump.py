"""The pump: five physically coupled channels in one (v2) message, three faults with ground truth."""

from __future__ import annotations

import itertools
import json
import statistics

import pytest
from sim_fleets import one_gateway

from firmware_sim.generator import messages, simulate
from protocols import TelemetryMessage, decode_device_message

HOUR_MS = 3_600_000
CHANNELS = ("vibration_rms_mm_s", "motor_current_a", "pressure_bar", "temperature_c", "flow_m3_h")


def _pump(hours: float, anomalies: list[dict[str, object]] | None = None, seed: int = 7) -> list[tuple[float, dict[str, float]]]:
    fleet = one_gateway([{"kind": "pump", "interval_s": 60, "anomalies": anomalies or []}], seed=seed,
                        start="2026-03-02T00:00:00Z")
    out = []
    for e in simulate(fleet, hours * 3600):
        if e.kind == "telemetry":
            doc = json.loads(e.payload)
            out.append(((doc["ts"] - fleet.start_ms) / HOUR_MS, {r["metric"]: r["value"] for r in doc["body"]["readings"]}))
    return out


def _mean(rows: list[tuple[float, dict[str, float]]], metric: str, a: float, b: float) -> float:
    return statistics.mean(r[metric] for h, r in rows if a <= h < b)


def test_one_v2_message_carries_all_five_channels() -> None:
    fleet = one_gateway([{"kind": "pump", "interval_s": 60}])
    payloads = [p for t, p, _ in messages(fleet, 3600) if t.endswith("/telemetry")]
    assert len(payloads) == 60
    msg = decode_device_message(payloads[0], "telemetry")
    assert isinstance(msg, TelemetryMessage) and msg.v == 2
    assert tuple(r.metric for r in msg.body.readings) == CHANNELS


def test_channels_move_together_in_normal_operation() -> None:
    rows = _pump(48)
    flow = [r["flow_m3_h"] for _, r in rows]
    for metric in ("motor_current_a", "pressure_bar"):
        assert statistics.correlation(flow, [r[metric] for _, r in rows]) > 0.9, metric
    # Opening hours run faster than the night (demand), every channel with the speed.
    assert _mean(rows, "flow_m3_h", 10, 20) > 1.15 * _mean(rows, "flow_m3_h", 0, 5)
    assert 1.0 < min(flow) and max(flow) < 70.0
    assert all(0.5 < r["vibration_rms_mm_s"] < 3.0 for _, r in rows)


@pytest.mark.parametrize("kind", ["cavitation", "valve_closure", "rotor_imbalance"])
def test_each_fault_has_its_signature_and_is_labelled_for_the_whole_device(kind: str) -> None:
    at, dur = 26.0, 3.0
    base = _pump(30, seed=11)
    rows = _pump(30, [{"kind": kind, "at_h": at, "duration_h": dur}], seed=11)
    fault = at + 0.6, at + dur

    def ratio(metric: str) -> float:
        return _mean(rows, metric, *fault) / _mean(base, metric, *fault)

    if kind == "cavitation":
        assert ratio("flow_m3_h") < 0.9 and ratio("pressure_bar") < 0.85 and ratio("motor_current_a") < 0.95
        assert ratio("vibration_rms_mm_s") > 2.0
        def jitter(series: list[tuple[float, dict[str, float]]]) -> float:  # reading-to-reading
            flow = [r["flow_m3_h"] for h, r in series if fault[0] <= h < fault[1]]
            return statistics.mean(abs(b - a) for a, b in itertools.pairwise(flow))

        assert jitter(rows) > 2.0 * jitter(base)
    elif kind == "valve_closure":
        assert ratio("flow_m3_h") < 0.5 and ratio("pressure_bar") > 1.05 and ratio("motor_current_a") < 0.95
        assert ratio("vibration_rms_mm_s") > 1.2
    else:
        assert ratio("vibration_rms_mm_s") > 1.4 and ratio("temperature_c") > 1.05
        assert abs(ratio("flow_m3_h") - 1.0) < 0.03
    # Before the fault both runs are the same machine reading for reading.
    assert [r for h, r in rows if h < at] == [r for h, r in base if h < at]
    fleet = one_gateway([{"kind": "pump", "interval_s": 60, "anomalies": [{"kind": kind, "at_h": at, "duration_h": dur}]}],
                        seed=11, start="2026-03-02T00:00:00Z")
    truth = [ev for _, _, evs in messages(fleet, 30 * 3600) for ev in evs if ev["type"] == "anomaly"]
    assert truth == [{"type": "anomaly", "device_id": "s1-pump-01", "site": "s1", "metric": None, "kind": kind,
                      "start_ts": fleet.start_ms + int(at * HOUR_MS), "end_ts": fleet.start_ms + int((at + dur) * HOUR_MS)}]


def test_random_pump_faults_are_all_three_kinds() -> None:
    fleet = one_gateway([{"kind": "pump", "interval_s": 300, "anomaly_rate_per_day": 3.0}], seed=5)
    kinds = {ev["kind"] for _, _, evs in messages(fleet, 20 * 86_400) for ev in evs if ev["type"] == "anomaly"}
    assert kinds == {"cavitation", "valve_closure", "rotor_imbalance"}
