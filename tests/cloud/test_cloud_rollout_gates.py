"""The anomaly quality gate: ratios of raises and of readings in alert, with an excess floor."""

from __future__ import annotations

from cloud.model_schemas import Gates
from cloud.services.rollout_gates import compare
from protocols.model_update import ModelStats


def _stats(version: int, readings: int, raised: int, in_alert: int) -> ModelStats:
    return ModelStats(model_version=version, since_ts=0, readings=readings, alerts_raised=raised,
                      alert_readings=in_alert)


def test_pending_until_enough_readings() -> None:
    assert compare("anomaly", _stats(2, 99, 50, 50), _stats(1, 99, 0, 0), Gates(min_readings=100)).verdict == "pending"


def test_a_few_extra_raises_are_noise() -> None:
    result = compare("anomaly", _stats(2, 581, 2, 97), _stats(1, 581, 0, 97), Gates(min_readings=100))
    assert result.verdict == "pass", result.detail


def test_many_more_raises_fail() -> None:
    result = compare("anomaly", _stats(2, 400, 15, 20), _stats(1, 400, 0, 18), Gates(min_readings=100))
    assert result.verdict == "fail" and "alert rate 15/400 vs 0/400" in result.detail


def test_a_model_stuck_in_alert_fails_on_readings_in_alert() -> None:
    # Raises alone look fine (one per stream); the time in alert gives it away.
    result = compare("anomaly", _stats(2, 400, 1, 231), _stats(1, 400, 0, 0), Gates(min_readings=100))
    assert result.verdict == "fail" and "readings in alert 231 vs 0" in result.detail


def test_the_excess_floor_is_configurable() -> None:
    strict = Gates(min_readings=100, min_excess_alerts=0)
    assert compare("anomaly", _stats(2, 581, 2, 97), _stats(1, 581, 0, 97), strict).verdict == "fail"
