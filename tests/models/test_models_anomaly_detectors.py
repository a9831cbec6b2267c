"""The scorer's non-network detectors: the on-duration rule of 0/1 state streams, the slow-drift
CUSUM, and the refractory damping that no longer depends on the alert threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.anomaly import AnomalyScorer, AnomalyScorerConfig
from models.runtime import LoadedModel, default_model_path, load_model
from models.stream_rules import DriftCusum as _Drift

MIN = 60_000
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def anomaly_model() -> LoadedModel:
    return load_model(default_model_path("anomaly"))


def _door(minutes_open: list[tuple[int, int]], total_min: int) -> np.ndarray:
    """A 0/1 door stream, one reading a minute, open during the given (start, length) minutes."""
    door = np.zeros(total_min)
    for start, length in minutes_open:
        door[start : start + length] = 1.0
    return door


def test_state_stream_alerts_only_on_a_door_left_open(anomaly_model: LoadedModel) -> None:
    scorer = AnomalyScorer(anomaly_model, AnomalyScorerConfig(threshold=0.55))
    # short openings (1-2 readings) all day, then one left open for 30 minutes from minute 600
    openings = [(m, 1 + (m // 40) % 2) for m in range(5, 590, 40)] + [(600, 30)]
    door = _door(openings, 700)
    results = [scorer.score("cold-1/door_open", T0 + i * MIN, float(v)) for i, v in enumerate(door)]
    assert all(r.detector == "state" and r.expected is None for r in results)
    alerts = [i for i, r in enumerate(results) if r.alert]
    # alerts from 10 minutes into the long opening until the door closes, never before
    assert alerts == list(range(610, 630))
    assert all(results[i].score == 0.0 for i in range(600))


def test_state_rule_learns_long_normal_runs(anomaly_model: LoadedModel) -> None:
    """A flag that is normally on for an hour at a time alerts only past 3x its longest normal run
    (and not during its first three runs, before it knows what is normal)."""
    cfg = AnomalyScorerConfig(threshold=0.55)
    scorer = AnomalyScorer(anomaly_model, cfg)
    runs = [(k * 120, 60) for k in range(5)] + [(600, 150), (800, 500)]
    flag = _door(runs, 1400)
    scores = np.array(
        [scorer.score("line-1/running", T0 + i * MIN, float(v)).score for i, v in enumerate(flag)]
    )
    assert scores[:800].max() == 0.0  # its first runs teach it; 150 min < 3 x 60 min: no alert
    first = int(np.argmax(scores >= cfg.threshold))
    assert first == 800 + 3 * 150  # the 150-minute run, which did not alert, is the norm now


def test_a_value_other_than_0_or_1_makes_a_continuous_stream(anomaly_model: LoadedModel) -> None:
    scorer = AnomalyScorer(anomaly_model)
    assert scorer.score("s", T0, 1.0).detector == "state"
    assert scorer.score("s", T0 + MIN, 2.5).detector == "model"
    assert scorer.score("s", T0 + 2 * MIN, 1.0).detector == "model"  # once continuous, always
    off = AnomalyScorer(anomaly_model, AnomalyScorerConfig(state_min_on_s=0.0))
    assert off.score("s", T0, 1.0).detector == "model"


def _cold_room(n: int, seed: int = 0) -> np.ndarray:
    """Thermostat noise around 2 C with a 20-minute +4 C defrost bump every 6 hours."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    temp = 2.0 + 0.4 * np.sin(2 * np.pi * t / 37) + rng.normal(0, 0.1, n)
    phase = t % 360
    temp += np.where(phase < 20, 0.2 * phase, np.where(phase < 60, 4.0 - 0.1 * (phase - 20), 0.0))
    return temp


def test_drift_cusum_ignores_defrosts_and_catches_a_slow_rise() -> None:
    cfg = AnomalyScorerConfig()
    temp = _cold_room(3000)
    drift = _Drift()
    normal = [drift.step(float(v), cfg) for v in temp]
    assert max(normal) < 0.5 * cfg.drift_limit  # defrost bumps are learned, never an alarm
    rising = temp[:600] + np.minimum(np.arange(600) * 0.02, 8.0)  # +1.2 C per hour, up to +8 C
    stats = [drift.step(float(v), cfg) for v in rising]
    fired = int(np.argmax(np.array(stats) >= cfg.drift_limit))
    assert stats[fired] >= cfg.drift_limit and fired < 300  # within 5 hours of the start


def test_drift_is_upward_unless_told_otherwise() -> None:
    values = np.concatenate([np.random.default_rng(1).normal(10.0, 1.0, 1000), np.full(400, 0.0)])
    up = AnomalyScorerConfig()
    both = AnomalyScorerConfig(drift_both_ways=True)
    d_up, d_both = _Drift(), _Drift()
    up_stats = [d_up.step(float(v), up) for v in values]
    both_stats = [d_both.step(float(v), both) for v in values]
    assert max(up_stats) == 0.0 or max(up_stats) < up.drift_limit  # a machine switched off: no alarm
    assert max(both_stats) >= both.drift_limit
    assert max(both_stats) <= 2 * both.drift_limit  # capped, so it can fall back after the event


def test_drift_score_reaches_the_threshold_exactly_at_the_limit(anomaly_model: LoadedModel) -> None:
    cfg = AnomalyScorerConfig(threshold=0.55, warmup=10_000)  # network tests silent: drift only
    scorer = AnomalyScorer(anomaly_model, cfg)
    temp = np.concatenate(
        [_cold_room(1500), _cold_room(600, seed=2) + np.minimum(np.arange(600) * 0.02, 8.0)]
    )
    results = [scorer.score("cold-1/temperature_c", T0 + i * MIN, float(v)) for i, v in enumerate(temp)]
    assert not any(r.alert for r in results[:1500])
    alerts = [i for i, r in enumerate(results) if r.alert]
    assert alerts and all(results[i].detector == "drift" for i in alerts)
    assert 1500 < alerts[0] < 1800


def test_scores_do_not_depend_on_the_alert_threshold(anomaly_model: LoadedModel) -> None:
    """The refractory damping starts at `refractory_from`, not at the threshold (drift test off:
    its score is scaled to the threshold on purpose)."""
    rng = np.random.default_rng(3)
    values = 50 + 10 * np.sin(2 * np.pi * np.arange(700) / 144) + rng.normal(0, 0.5, 700)
    values[[400, 420, 600]] += 30.0
    runs = []
    for threshold in (0.3, 0.9):
        scorer = AnomalyScorer(anomaly_model, AnomalyScorerConfig(threshold=threshold, drift_limit=0.0))
        runs.append([scorer.score("s", T0 + i * 600_000, float(v)).score for i, v in enumerate(values)])
    assert runs[0] == runs[1]
    assert max(runs[0]) > 0.3  # the spikes do score


def test_is_warm_after_the_warm_up_and_for_state_streams(anomaly_model: LoadedModel) -> None:
    scorer = AnomalyScorer(anomaly_model, AnomalyScorerConfig(threshold=0.5, warmup=20))
    assert not scorer.is_warm("t")
    values = _cold_room(200)
    for i, v in enumerate(values):
        scorer.score("t", i * 1_000, float(v))  # 1 s apart: no daily lag, the 20 readings suffice
    assert scorer.is_warm("t")
    daily = AnomalyScorer(anomaly_model)  # a minute apart: a day (1,440 readings) before it may alert
    for i, v in enumerate(_cold_room(1500)):
        r = daily.score("t", i * 60_000, float(v))
        assert r.score == 0.0 or r.detector == "drift" or i >= 1440  # the drift test has its own warm-up
    assert daily.is_warm("t")
    # A 0/1 stream: warm once its duration rule has seen the three on-runs it learns from.
    for run in range(3):
        assert not scorer.is_warm("door")
        scorer.score("door", run * 600_000, 0.0)
        scorer.score("door", run * 600_000 + 60_000, 1.0)
    assert not scorer.is_warm("door")  # the third run is still on
    scorer.score("door", 3 * 600_000, 0.0)
    assert scorer.is_warm("door")


def _excursions(drift: _Drift, cfg: AnomalyScorerConfig, before: float | None) -> tuple[list[int], float]:
    """Three +10 std excursions of 200 readings, 800 readings apart, on N(0, 1) noise after 1,000
    normal readings; `before` is what the day before showed at each alarm. Returns the readings
    (from the first excursion's start) at which the statistic reached the limit, and the baseline's
    std after the last excursion."""
    rng = np.random.default_rng(5)
    for v in rng.normal(0.0, 1.0, 1000):
        drift.step(float(v), cfg)
    alarms: list[int] = []
    i = 0
    for _ in range(3):
        for v in np.concatenate([rng.normal(10.0, 1.0, 200), rng.normal(0.0, 1.0, 800)]):
            if drift.step(float(v), cfg) >= cfg.drift_limit:
                alarms.append(i)
                drift.seen_before(before, cfg)
            i += 1
    return alarms, math.sqrt(drift.var)


def test_drift_excursion_that_ends_restores_the_baseline() -> None:
    """A recurring excursion (not seen a day earlier) meets the baseline the first one met: every
    one of them raises its alarm, and the baseline's spread is not inflated by them."""
    cfg = AnomalyScorerConfig()
    alarms, std = _excursions(_Drift(), cfg, before=0.0)
    starts = [0, 1000, 2000]
    assert [sum(s <= a < s + 200 for a in alarms) for s in starts] == [1, 1, 1]
    assert std < 1.5


def test_drift_excursion_seen_a_day_earlier_is_learnt() -> None:
    """An excursion that was there a day earlier too (or whose day before is unknown) is the
    stream's pattern: the baseline learns it as before (its spread widens), nothing is restored."""
    cfg = AnomalyScorerConfig()
    for before in (10.0, None):
        drift = _Drift()
        alarms, std = _excursions(drift, cfg, before=before)
        assert alarms and alarms[0] < 200
        assert std > 2.0 and drift.prior is None
