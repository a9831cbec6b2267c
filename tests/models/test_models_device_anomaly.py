"""The joint device score: warm-up, a broken relation between channels, contributions, re-learning."""

from __future__ import annotations

import numpy as np
import pytest

from models.device_anomaly import DeviceScorer, DeviceScorerConfig
from models.device_features import MAX_CHANNELS, N_FEATURES, WINDOW, channel_inputs, training_pairs
from models.runtime import ModelLoadError, default_model_path, load_model

CHANNELS = ("flow", "current", "pressure")


def _machine(n: int, seed: int = 3) -> np.ndarray:
    """Three channels driven by one slowly wandering speed (normal operation)."""
    rng = np.random.default_rng(seed)
    speed = 0.8 + 0.05 * np.sin(np.arange(n) / 90.0) + 0.01 * np.cumsum(rng.normal(0, 0.05, n)) / np.sqrt(n)
    flow = 50 * speed + rng.normal(0, 0.3, n)
    current = 12 * speed**3 + rng.normal(0, 0.05, n)
    pressure = 1 + 2.5 * speed**2 + rng.normal(0, 0.01, n)
    return np.stack([flow, current, pressure], axis=1)


def _score_all(scorer: DeviceScorer, rows: np.ndarray, device: str = "pump1") -> list:
    return [scorer.score(device, dict(zip(CHANNELS, r.tolist(), strict=True))) for r in rows]


def test_features_match_between_training_and_the_gateway() -> None:
    z = np.random.default_rng(1).normal(size=(WINDOW + 5, 3))
    x, y, mask = training_pairs(z)
    assert x.shape == (5, MAX_CHANNELS, N_FEATURES) and mask[:, :3].all() and not mask[:, 3:].any()
    np.testing.assert_allclose(x[2], channel_inputs(z[2 : 2 + WINDOW])[0], rtol=1e-6)
    np.testing.assert_allclose(y[2, :3], z[2 + WINDOW] - z[1 + WINDOW], rtol=1e-6)


def test_a_broken_relation_alerts_and_names_the_channel() -> None:
    scorer = DeviceScorer.default()
    assert scorer.config.threshold == load_model(default_model_path("device_anomaly")).manifest.anomaly_defaults.threshold
    rows = _machine(1200)
    results = _score_all(scorer, rows[:900])
    assert all(r.score == 0.0 for r in results[:400]) and scorer.is_warm("pump1")
    normal = [r.score for r in results[400:]]
    assert np.mean(np.array(normal) >= scorer.config.threshold) < 0.05
    broken = rows[900:].copy()
    broken[:, 1] *= 2.0  # the current doubles while flow and pressure say the load is unchanged
    out = _score_all(scorer, broken)
    alerting = [r for r in out[10:100] if r.alert]
    assert len(alerting) > 60
    top = max(alerting[-1].channels, key=lambda c: c.contribution)
    assert top.channel == "current"
    assert abs(sum(c.contribution for c in alerting[-1].channels) - 1.0) < 1e-6
    assert top.observed > top.expected


def test_a_lasting_new_normal_is_relearnt() -> None:
    cfg = DeviceScorerConfig(threshold=0.5, relearn_after=100, horizon=300)
    scorer = DeviceScorer(load_model(default_model_path("device_anomaly")), cfg)
    rows = _machine(2400)
    rows[700:, 1] *= 1.15
    scores = [r.score for r in _score_all(scorer, rows)]
    assert max(scores[700:800]) >= 0.5
    assert np.mean(np.array(scores[1800:]) >= 0.5) < 0.05


def test_the_forecast_follows_a_channel_beyond_the_clip_range() -> None:
    """A channel steady 20 robust spreads from its warm-up median (a night regime the warm-up never
    saw): the network sees it clipped at 8 and forecasts no change, so the forecast is the value
    itself; adding that change to the clipped value instead made the residual statistic read the
    distance beyond the clip, an alarm for as long as the regime lasted."""
    scorer = DeviceScorer.default()
    for level in (20.0, -20.0, 3.0):
        pred = scorer._forecast(np.full((WINDOW, 3), level))
        assert np.all(np.abs(pred - level) < 1.0), (level, pred)


def test_refuses_a_model_of_another_task() -> None:
    with pytest.raises(ModelLoadError):
        DeviceScorer(load_model(default_model_path("anomaly")))


def test_single_channel_messages_are_not_device_scored() -> None:
    assert DeviceScorer.default().score("d", {"temp": 1.0}) is None


def test_state_channels_are_left_out_and_a_device_needs_two_usable_channels() -> None:
    scorer = DeviceScorer.default()
    rows = _machine(500)
    out = [scorer.score("room", {"flow": r[0], "current": r[1], "pressure": r[2], "door_open": float(i % 50 == 0)})
           for i, r in enumerate(rows)]
    assert {c.channel for c in out[-1].channels} == {"flow", "current", "pressure"}
    two = [scorer.score("cold", {"temperature_c": r[0], "power_w": r[1], "door_open": float(i % 50 == 0)})
           for i, r in enumerate(rows)]
    assert two[-1] is None and not scorer.is_warm("cold")
    # a message missing a channel keeps its last value (the device is not reset)
    assert scorer.score("room", {"flow": rows[-1][0], "door_open": 0.0}) is not None and scorer.is_warm("room")
