"""Ambient humidity/temperature sensor: diurnal cycle, weather random walk, humidity excursions."""

from __future__ import annotations

import math
import random

from firmware_sim.config import HumidityGroup
from firmware_sim.devices.base import (
    AnomalyKind,
    AnomalySchedule,
    Sample,
    StepResult,
    clamp,
    local_time,
    round2,
)
from protocols import Reading

KINDS = (AnomalyKind("humidity_excursion", "humidity_pct", 2.0, 8.0),)
_WEATHER_TAU_S = 2 * 86_400.0


class AmbientSensor:
    def __init__(self, group: HumidityGroup, rng: random.Random, start_ms: int, tz_offset_h: float) -> None:
        self.g = group
        self._rng = rng
        self._tz = tz_offset_h
        self.schedule = AnomalySchedule(rng, KINDS, group.anomaly_rate_per_day, group.anomalies, start_ms, "humidity")
        self._weather = rng.gauss(0.0, 5.0)

    def step(self, t_ms: int, dt_ms: int) -> StepResult:
        started = self.schedule.advance(t_ms)
        g = self.g
        dt = dt_ms / 1000.0
        # Ornstein-Uhlenbeck weather offset (humidity points), stationary sd ~6
        self._weather += -self._weather * dt / _WEATHER_TAU_S + self._rng.gauss(0.0, 6.0 * math.sqrt(2 * dt / _WEATHER_TAU_S))
        t = t_ms + dt_ms
        phase = 2 * math.pi * (local_time(t, self._tz).hour - 15.0) / 24.0  # warmest mid-afternoon
        temp = g.base_c + g.diurnal_c * math.cos(phase) - 0.15 * self._weather
        hum = g.base_pct - g.diurnal_pct * math.cos(phase) + self._weather
        exc = self.schedule.get("humidity_excursion", t)
        if exc is not None:
            hum += 25.0 * min(1.0, 4 * exc.progress(t))
        readings = (
            Reading(metric="humidity_pct", value=round2(clamp(hum + self._rng.gauss(0, 0.6), 0.0, 100.0))),
            Reading(metric="temperature_c", value=round2(clamp(temp + self._rng.gauss(0, 0.1), -60, 80))),
        )
        return StepResult([Sample(t, readings=readings)], started)
