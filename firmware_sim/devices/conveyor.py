"""Conveyor drive: vibration and motor power on a shift schedule; bearing wear drifts vibration up."""

from __future__ import annotations

import math
import random

from firmware_sim.config import ConveyorGroup
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
    AnomalyKind("bearing_wear", "vibration_rms_mm_s", 48.0, 240.0),
    AnomalyKind("jam", "power_w", 0.1, 0.4),
)
_MOTOR_TAU_S = 1200.0


class Conveyor:
    def __init__(self, group: ConveyorGroup, rng: random.Random, start_ms: int, tz_offset_h: float) -> None:
        self.g = group
        self._rng = rng
        self._tz = tz_offset_h
        self.schedule = AnomalySchedule(
            rng, KINDS, group.anomaly_rate_per_day, group.anomalies, start_ms, "conveyor", self._can_start
        )
        self._motor_c = 22.0
        self._load = 0.6

    def _can_start(self, kind: str, t_ms: int) -> bool:
        """A stopped belt cannot jam (a random jam drawn for a time it stands still is not placed)."""
        return kind != "jam" or self.running(t_ms)

    def running(self, t_ms: int) -> bool:
        lt = local_time(t_ms, self._tz)
        return lt.weekday < 6 and is_open(lt, self.g.open_hour, self.g.close_hour)

    def step(self, t_ms: int, dt_ms: int) -> StepResult:
        started = self.schedule.advance(t_ms)
        g = self.g
        t = t_ms + dt_ms
        run = self.running(t)
        self._load = clamp(self._load + self._rng.gauss(0.0, 0.05), 0.2, 1.0)
        wear = self.schedule.get("bearing_wear", t)
        jam = self.schedule.get("jam", t)
        if run:
            wear_factor = 1.0 if wear is None else 1.0 + 3.0 * (math.exp(3.0 * wear.progress(t)) - 1.0) / (math.e**3 - 1.0)
            rms = g.base_rms_mm_s * (0.8 + 0.4 * self._load) * wear_factor * self._rng.lognormvariate(0.0, 0.06)
            power = g.motor_w * (0.5 + 0.5 * self._load) * (1.0 + 0.08 * (wear_factor - 1.0))
            if jam is not None:
                rms *= 0.3
                power = g.motor_w * 1.8
        else:
            rms = 0.05 + abs(self._rng.gauss(0.0, 0.02))
            power = 40.0
        target = 22.0 + (35.0 * power / g.motor_w if run else 0.0)
        self._motor_c += (target - self._motor_c) * (1.0 - math.exp(-dt_ms / 1000.0 / _MOTOR_TAU_S))
        readings = (
            Reading(metric="vibration_rms_mm_s", value=round2(clamp(rms, 0.0, 200.0))),
            Reading(metric="power_w", value=round2(max(0.0, power + self._rng.gauss(0.0, 10.0)))),
            Reading(metric="temperature_c", value=round2(clamp(self._motor_c + self._rng.gauss(0, 0.2), -60, 80))),
        )
        return StepResult([Sample(t, readings=readings)], started)
