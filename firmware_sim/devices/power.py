"""Site power meter: base load, shift load (weekdays heavier), surges and phase loss."""

from __future__ import annotations

import math
import random

from firmware_sim.config import PowerMeterGroup
from firmware_sim.devices.base import (
    AnomalyKind,
    AnomalySchedule,
    Sample,
    StepResult,
    clamp,
    is_open,
    local_time,
    round2,
)
from protocols import Reading

KINDS = (
    AnomalyKind("power_surge", "power_w", 0.15, 1.0),
    AnomalyKind("phase_loss", "power_w", 0.5, 3.0),
)
_WEEKDAY_FACTOR = (1.0, 1.0, 1.0, 1.0, 0.95, 0.5, 0.2)


class PowerMeter:
    def __init__(self, group: PowerMeterGroup, rng: random.Random, start_ms: int, tz_offset_h: float) -> None:
        self.g = group
        self._rng = rng
        self._tz = tz_offset_h
        self.schedule = AnomalySchedule(rng, KINDS, group.anomaly_rate_per_day, group.anomalies, start_ms, "power_meter")
        self._wander = 0.0

    def step(self, t_ms: int, dt_ms: int) -> StepResult:
        started = self.schedule.advance(t_ms)
        g = self.g
        t = t_ms + dt_ms
        lt = local_time(t, self._tz)
        self._wander = 0.98 * self._wander + self._rng.gauss(0.0, 0.02)
        shift = g.shift_w * _WEEKDAY_FACTOR[lt.weekday] if is_open(lt, g.open_hour, g.close_hour) else 0.0
        hvac = 0.15 * g.base_w * (1.0 + math.cos(2 * math.pi * (lt.hour - 15.0) / 24.0))
        power = (g.base_w + shift + hvac) * (1.0 + self._wander)
        if self.schedule.get("power_surge", t) is not None:
            power *= 1.5
        if self.schedule.get("phase_loss", t) is not None:
            power *= 0.66
        panel_c = 24.0 + 12.0 * power / max(1.0, g.base_w + g.shift_w)
        readings = (
            Reading(metric="power_w", value=round2(clamp(power * self._rng.gauss(1.0, 0.01), 0.0, 1_000_000.0))),
            Reading(metric="temperature_c", value=round2(clamp(panel_c + self._rng.gauss(0, 0.2), -60, 80))),
        )
        return StepResult([Sample(t, readings=readings)], started)
