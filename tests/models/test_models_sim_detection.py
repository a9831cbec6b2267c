"""bench/sim_detection.py: the alert-to-anomaly matching arithmetic and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
MIN = 60_000


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sim_detection_bench", REPO / "bench" / "sim_detection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the class is built
    spec.loader.exec_module(module)
    return module


sd = _bench()


def test_match_alerts_counts_each_anomaly_once_and_the_first_delay() -> None:
    w = sd.AnomalyWindow
    a = sd.RaisedAlert
    windows = [
        w("cold-1", "temperature_c", "compressor_failure", 100 * MIN, 200 * MIN),
        w("conv-1", "vibration_rms_mm_s", "bearing_wear", 0, 50 * MIN),
        w("pm-1", None, "phase_loss", 300 * MIN, 310 * MIN),  # any metric of pm-1
        w("hum-1", "humidity_pct", "humidity_excursion", 0, 10 * MIN),  # never detected
    ]
    alerts = [
        a("cold-1", "temperature_c", 130 * MIN),  # detects cold-1: delay 30 min
        a("cold-1", "temperature_c", 115 * MIN),  # earlier alert, later in the list: delay 15 min
        a("cold-1", "temperature_c", 150 * MIN),  # same anomaly again: true alert, not a second detection
        a("cold-1", "power_w", 140 * MIN),  # wrong metric: false positive
        a("cold-1", "temperature_c", 99 * MIN),  # before the window: false positive
        a("conv-1", "vibration_rms_mm_s", 54 * MIN),  # inside the 5-min grace after the end: delay 54
        a("conv-1", "vibration_rms_mm_s", 56 * MIN),  # past the grace: false positive
        a("pm-1", "temperature_c", 310 * MIN),  # the end itself counts; unnamed metric: delay 10
        a("other", "temperature_c", 120 * MIN),  # no labelled anomaly on this device
    ]
    r = sd.match_alerts(alerts, windows, grace_ms=5 * MIN)
    assert r.detected_at == (115 * MIN, 54 * MIN, 310 * MIN, None)
    assert (r.true_alerts, r.false_alerts, r.alerts, r.detected) == (5, 4, 9, 3)
    assert r.precision == pytest.approx(5 / 9)
    assert r.recall == pytest.approx(3 / 4)
    assert r.delays_min() == pytest.approx([15.0, 54.0, 10.0])
    assert r.delays_min("bearing_wear") == pytest.approx([54.0])
    assert r.delays_min("humidity_excursion") == []
    line = sd.last_line(r, readings=1234, stream_days=8.0)
    assert line == (
        "sim_detection: anomalies=4 detected=3 precision=0.556 recall=0.750 mean_delay_min=26.3 "
        "alerts=9 readings=1234 false_alerts_per_stream_day=0.500"
    )


def test_match_alerts_without_alerts_or_windows() -> None:
    empty = sd.match_alerts([], [], grace_ms=0)
    assert (empty.precision, empty.recall, empty.alerts, empty.detected) == (0.0, 0.0, 0, 0)
    assert "mean_delay_min=nan" in sd.last_line(empty, readings=0, stream_days=0.0)
    assert sd.last_line(empty, readings=0, stream_days=0.0).endswith("false_alerts_per_stream_day=nan")
    only_alerts = sd.match_alerts([sd.RaisedAlert("d", "power_w", 5)], [], grace_ms=0)
    assert (only_alerts.true_alerts, only_alerts.false_alerts, only_alerts.precision) == (0, 1, 0.0)


def test_a_device_alert_matches_every_label_of_its_device() -> None:
    w = sd.AnomalyWindow
    a = sd.RaisedAlert
    windows = [
        w("pump-1", None, "cavitation", 0, 10 * MIN),
        w("pm-1", "power_w", "power_surge", 0, 10 * MIN),
    ]
    stream = [a("pm-1", "temperature_c", 5 * MIN)]  # wrong metric: false
    device = [a("pump-1", None, 3 * MIN), a("pm-1", None, 4 * MIN), a("pm-1", None, 60 * MIN)]
    alone = sd.match_alerts(stream, windows, grace_ms=0)
    both = sd.match_alerts([*stream, *device], windows, grace_ms=0)
    assert (alone.detected, alone.false_alerts) == (0, 1)
    assert both.detected_at == (3 * MIN, 4 * MIN)
    assert (both.true_alerts, both.false_alerts, both.recall) == (2, 2, 1.0)
    assert sd.last_line(both, readings=10, stream_days=4.0, prefix="sim_detection_streams").startswith(
        "sim_detection_streams: anomalies=2 detected=2 precision=0.500"
    )


def test_labels_on_unscored_streams_are_set_aside() -> None:
    w = sd.AnomalyWindow
    streams = frozenset({("cold-1", "temperature_c"), ("cold-1", "power_w")})
    inside, outside = sd.scored_windows(
        [
            w("cold-1", "temperature_c", "compressor_failure", 0, 1),
            w("cold-1", None, "door_left_open", 0, 1),
            w("scan-1", "picks", "stock_out", 0, 1),
            w("cold-1", "humidity_pct", "humidity_excursion", 0, 1),
        ],
        streams,
    )
    assert [x.kind for x in inside] == ["compressor_failure", "door_left_open"]
    assert [x.kind for x in outside] == ["stock_out", "humidity_excursion"]


def test_tiny_end_to_end_run_prints_the_last_line() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sim_detection.py"), "--days", "0.5", "--grace-min", "15"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    m = re.fullmatch(
        r"sim_detection: anomalies=(\d+) detected=(\d+) precision=([\d.]+) recall=([\d.]+) "
        r"mean_delay_min=([\d.]+|nan) alerts=(\d+) readings=(\d+) false_alerts_per_stream_day=([\d.]+)",
        last,
    )
    assert m is not None, last
    anomalies, detected, readings = int(m[1]), int(m[2]), int(m[7])
    assert 0 <= detected <= anomalies
    assert anomalies >= 1  # the demo fleet's bearing wear starts at hour 8
    assert readings > 10_000  # half a day of the demo fleet's telemetry
