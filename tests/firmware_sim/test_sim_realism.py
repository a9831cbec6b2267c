"""Generated series look like the devices they claim to be, and runs are reproducible per seed."""

from __future__ import annotations

import itertools
import json
import random
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime

from sim_fleets import mixed, one_gateway

from firmware_sim.devices.base import AnomalyKind, AnomalySchedule
from firmware_sim.devices.demand import WEEKDAY_PROFILE
from firmware_sim.faults import FaultConfig
from firmware_sim.generator import messages, simulate
from protocols import DecodeError, decode_device_message

HOUR_MS = 3_600_000


def _telemetry(fleet, hours: float, device_id: str) -> list[tuple[float, dict[str, float]]]:
    out = []
    for e in simulate(fleet, hours * 3600):
        if e.kind == "telemetry" and e.device_id == device_id:
            doc = json.loads(e.payload)
            out.append(((doc["ts"] - fleet.start_ms) / HOUR_MS, {r["metric"]: r["value"] for r in doc["body"]["readings"]}))
    return out


def test_same_seed_same_bytes_other_seed_differs() -> None:
    faults = FaultConfig(duplicates=0.05, reorder=0.05, late=0.05, malformed=0.05, reboots=0.01, clock_skew=0.01,
                         disconnects=0.01)
    a = [(t, p) for t, p, _ in messages(mixed(seed=1), 3 * 3600, faults)]
    b = [(t, p) for t, p, _ in messages(mixed(seed=1), 3 * 3600, faults)]
    c = [(t, p) for t, p, _ in messages(mixed(seed=2), 3 * 3600, faults)]
    assert a == b
    assert a != c
    assert len(a) > 1000


def test_physics_do_not_depend_on_fault_rates() -> None:
    def bodies(faults: FaultConfig) -> set[str]:
        out = set()
        for _, payload, _ in messages(mixed(seed=3), 2 * 3600, faults):
            try:
                msg = decode_device_message(payload)
            except DecodeError:
                continue
            if msg.schema_ != "edgehouse.status":
                out.add(msg.body.model_dump_json())
        return out

    noisy = FaultConfig(duplicates=0.1, reorder=0.1, late=0.1, malformed=0.1, reboots=0.01, clock_skew=0.02)
    assert bodies(FaultConfig()) == bodies(noisy)


def test_defrost_raises_temperature_periodically() -> None:
    fleet = one_gateway([{"kind": "cold_room", "interval_s": 60, "setpoint_c": 2.0, "defrost_every_h": 6,
                          "defrost_min": 20}])
    series = _telemetry(fleet, 48, "s1-cold-01")
    assert all(1.0 < r["temperature_c"] < 9.0 for _, r in series)
    starts: list[float] = []
    warm = False  # hysteresis: an episode starts above setpoint + 3 and ends below setpoint + 1
    for h, r in series:
        if r["temperature_c"] > 2.0 + 3.0 and not warm:
            starts.append(h)
            warm = True
        elif r["temperature_c"] < 2.0 + 1.0:
            warm = False
    assert 7 <= len(starts) <= 9
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(abs(g - 6.0) < 0.3 for g in gaps), gaps
    # the defrost heater shows on the power meter of the room
    powers = [r["power_w"] for _, r in series]
    assert max(powers) > 2500


def test_compressor_failure_drifts_temperature_up() -> None:
    fleet = one_gateway([{"kind": "cold_room", "interval_s": 60, "setpoint_c": 2.0,
                          "anomalies": [{"kind": "compressor_failure", "at_h": 24, "duration_h": 18}]}])
    series = _telemetry(fleet, 44, "s1-cold-01")

    def mean_between(a: float, b: float) -> float:
        return statistics.mean(r["temperature_c"] for h, r in series if a <= h < b)

    assert abs(mean_between(0, 24) - 2.5) < 1.0
    assert mean_between(30, 34) > mean_between(0, 24) + 2.0
    assert mean_between(38, 42) > mean_between(30, 34) + 2.0  # keeps drifting
    truth = [ev for _, _, evs in messages(fleet, 44 * 3600) for ev in evs if ev["type"] == "anomaly"]
    assert truth == [{"type": "anomaly", "device_id": "s1-cold-01", "site": "s1", "metric": "temperature_c",
                      "kind": "compressor_failure", "start_ts": fleet.start_ms + 24 * HOUR_MS,
                      "end_ts": fleet.start_ms + 42 * HOUR_MS}]


def test_bearing_wear_drifts_vibration_up() -> None:
    fleet = one_gateway([{"kind": "conveyor", "interval_s": 300,
                          "anomalies": [{"kind": "bearing_wear", "at_h": 0, "duration_h": 96}]}])
    series = _telemetry(fleet, 96, "s1-conv-01")
    running = [(h, r["vibration_rms_mm_s"]) for h, r in series if r["vibration_rms_mm_s"] > 0.5]
    first = statistics.mean(v for h, v in running if h < 24)
    last = statistics.mean(v for h, v in running if h >= 72)
    assert last > 2.0 * first


def test_scans_have_weekly_seasonality_and_business_hours() -> None:
    fleet = one_gateway([{"kind": "barcode_scanner", "interval_s": 600, "skus": 12, "mean_daily_picks": 60,
                          "trend_pct_per_week": 0.0, "promo_every_days": 1e6, "stockout_every_days": 1e6}])
    per_weekday: dict[int, list[int]] = defaultdict(list)
    daily: Counter[int] = Counter()
    hours: Counter[int] = Counter()
    for e in simulate(fleet, 28 * 86_400):
        if e.kind == "scan":
            ts = json.loads(e.payload)["ts"]
            daily[(ts - fleet.start_ms) // (24 * HOUR_MS)] += 1
            hours[datetime.fromtimestamp(ts / 1000, UTC).hour] += 1
    for day, n in daily.items():
        per_weekday[day % 7].append(n)  # the fleet starts on a Monday
    means = [statistics.mean(per_weekday[d]) for d in range(7)]
    assert statistics.correlation(means, list(WEEKDAY_PROFILE)) > 0.9
    assert min(means[:5]) > 2.0 * means[6]
    # closed at night (a 10-minute scanner step may straddle opening or closing time)
    assert sum(n for h, n in hours.items() if h < 5 or h >= 23) == 0
    assert sum(n for h, n in hours.items() if 10 <= h < 16) > 0.4 * sum(hours.values())


def test_stock_out_stops_picks_of_one_sku_and_is_labelled() -> None:
    fleet = one_gateway([{"kind": "barcode_scanner", "interval_s": 300, "skus": 5, "mean_daily_picks": 80,
                          "promo_every_days": 1e6, "stockout_every_days": 1e6,
                          "anomalies": [{"kind": "stock_out", "at_h": 48, "duration_h": 48}]}])
    picks: Counter[tuple[str, bool]] = Counter()
    anomalies = []
    for _, payload, events in messages(fleet, 6 * 86_400):
        anomalies += [ev for ev in events if ev["type"] == "anomaly"]
        msg = decode_device_message(payload)
        if msg.schema_ == "edgehouse.scan" and msg.body.direction == "pick":
            inside = fleet.start_ms + 48 * HOUR_MS <= msg.ts < fleet.start_ms + 96 * HOUR_MS
            picks[(msg.body.sku, inside)] += 1
    assert len(anomalies) == 1 and anomalies[0]["kind"] == "stock_out"
    sku = anomalies[0]["sku"]
    assert picks[(sku, True)] == 0
    assert picks[(sku, False)] > 20


def test_rfid_bursts_stay_inside_the_window_and_tags_never_come_back() -> None:
    fleet = one_gateway([{"kind": "rfid_portal", "interval_s": 60, "passes_per_hour": 60, "reads_per_tag": [1, 6]}])
    reads: dict[tuple[str, str], list[int]] = defaultdict(list)
    for _, payload, _ in messages(fleet, 24 * 3600):
        msg = decode_device_message(payload)
        if msg.schema_ == "edgehouse.scan":
            assert msg.body.code_type == "rfid" and msg.body.tag_id is not None
            reads[(msg.body.reader_id, msg.body.tag_id)].append(msg.ts)
    assert len(reads) > 300
    spans = [max(ts) - min(ts) for ts in reads.values()]
    assert max(spans) <= 1500  # well inside the gateway's 2000 ms window
    assert sum(len(ts) > 1 for ts in reads.values()) > 100  # most tags are read more than once


def test_every_labelled_conveyor_jam_shows_in_the_data() -> None:
    """A stopped belt cannot jam: random jams are placed only while the conveyor runs, so each
    labelled jam has readings at the jammed motor power (1.8 x motor_w), and there are some."""
    checked = 0
    for seed in range(1, 25):
        fleet = one_gateway([{"kind": "conveyor", "interval_s": 300, "anomaly_rate_per_day": 12.0}], seed=seed,
                            start="2026-03-07T00:00:00Z")  # a Saturday: the belt stands still on Sunday
        power: list[tuple[int, float]] = []
        jams: list[tuple[int, int]] = []
        for _, payload, events in messages(fleet, 3 * 24 * 3600):
            jams += [(int(e["start_ts"]), int(e["end_ts"])) for e in events
                     if e.get("type") == "anomaly" and e.get("kind") == "jam"]
            msg = decode_device_message(payload)
            if msg.schema_ == "edgehouse.telemetry":
                power += [(msg.ts, r.value) for r in msg.body.readings if r.metric == "power_w"]
        for start, end in jams:
            inside = [v for t, v in power if start <= t <= end]
            assert any(v > 1.7 * 1500.0 for v in inside), (seed, start, end, inside[:5])
            checked += 1
    assert checked >= 3


def test_an_anomaly_that_cannot_start_is_not_placed_and_the_draws_go_on() -> None:
    kinds = (AnomalyKind("jam", "power_w", 0.1, 0.4),)

    def even_hours(kind: str, t: int) -> bool:
        return (t // HOUR_MS) % 2 == 0

    free = AnomalySchedule(random.Random(3), kinds, 40.0, (), 0, "conveyor")
    gated = AnomalySchedule(random.Random(3), kinds, 40.0, (), 0, "conveyor", even_hours)
    seen_free, seen_gated = [], []
    for t in range(0, 5 * 24 * HOUR_MS, 60_000):
        seen_free += [(a.start_ms, a.end_ms) for a in free.advance(t)]
        seen_gated += [(a.start_ms, a.end_ms) for a in gated.advance(t)]
    assert seen_gated and len(seen_gated) < len(seen_free)
    assert all((s // HOUR_MS) % 2 == 0 for s, _ in seen_gated)
    assert set(seen_gated) <= set(seen_free)  # the same draws, those that cannot start left out
