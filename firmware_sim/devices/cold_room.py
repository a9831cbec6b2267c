"""Cold room: thermostat-driven compressor, periodic defrost, door openings, slow compressor failure."""

from __future__ import annotations

import random

from firmware_sim.config import ColdRoomGroup
from firmware_sim.devices.base import (
    HOUR_MS,
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
    AnomalyKind("compressor_failure", "temperature_c", 6.0, 36.0),
    # the whole device: the door contact reads open throughout and the room warms (door_open and temperature_c)
    AnomalyKind("door_left_open", None, 0.3, 1.0),
)
_SUBSTEP_S = 10.0
_LEAK_TAU_S = 6 * 3600.0  # envelope heat leak time constant
_DOOR_TAU_S = 1800.0  # extra leak while the door is open
_COOL_C_PER_S = 8.0 / 3600.0  # full-capacity pull-down rate
_HEATER_C_PER_S = 12.0 / 3600.0  # defrost heater


class ColdRoom:
    def __init__(self, group: ColdRoomGroup, rng: random.Random, start_ms: int, tz_offset_h: float) -> None:
        self.g = group
        self._rng = rng
        self._tz = tz_offset_h
        self.schedule = AnomalySchedule(rng, KINDS, group.anomaly_rate_per_day, group.anomalies, start_ms, "cold_room")
        self._temp = group.setpoint_c + rng.uniform(-0.5, 0.5)
        self._compressor = False
        self._door_until_ms = 0
        self._next_door_ms = start_ms + self._door_gap(start_ms)
        self._defrost_phase_ms = int(rng.uniform(0, group.defrost_every_h) * HOUR_MS)

    def _door_gap(self, t_ms: int) -> int:
        """Time to the next door opening: a Poisson process thinned to working hours (10 % at night)."""
        peak = self.g.door_opens_per_hour
        if peak <= 0:
            return 10**12
        gap = 0
        while True:
            gap += max(1000, int(self._rng.expovariate(peak) * HOUR_MS))
            working = is_open(local_time(t_ms + gap, self._tz), 6, 22)
            if working or self._rng.random() < 0.1:
                return gap

    def defrosting(self, t_ms: int) -> bool:
        period = int(self.g.defrost_every_h * HOUR_MS)
        return (t_ms + self._defrost_phase_ms) % period < self.g.defrost_min * 60_000

    def step(self, t_ms: int, dt_ms: int) -> StepResult:
        started = self.schedule.advance(t_ms)
        g = self.g
        door_seen = False
        on_s = 0.0
        heater_s = 0.0
        capacity = 1.0
        t = t_ms
        end = t_ms + dt_ms
        while t < end:
            h = min(_SUBSTEP_S * 1000, end - t)
            hs = h / 1000.0
            while self._next_door_ms <= t:
                self._door_until_ms = max(self._door_until_ms, self._next_door_ms + int(self._rng.uniform(15, 90) * 1000))
                self._next_door_ms += self._door_gap(self._next_door_ms)
            left_open = self.schedule.get("door_left_open", t)
            door = t < self._door_until_ms or left_open is not None
            door_seen = door_seen or door
            failure = self.schedule.get("compressor_failure", t)
            capacity = 1.0 if failure is None else max(0.1, 0.5 - 0.4 * failure.progress(t))
            dtemp = (g.ambient_c - self._temp) / _LEAK_TAU_S
            if door:
                dtemp += (g.ambient_c - self._temp) / _DOOR_TAU_S
            if self.defrosting(t):
                self._compressor = False
                dtemp += _HEATER_C_PER_S
                heater_s += hs
            else:
                if self._temp > g.setpoint_c + g.band_c / 2:
                    self._compressor = True
                elif self._temp < g.setpoint_c - g.band_c / 2:
                    self._compressor = False
                if self._compressor:
                    dtemp -= _COOL_C_PER_S * capacity
                    on_s += hs
            self._temp += dtemp * hs
            t += h
        span = dt_ms / 1000.0
        power = (
            150.0
            + g.compressor_w * (1.0 + 0.3 * (1.0 - capacity)) * on_s / span
            + 3000.0 * heater_s / span
            + self._rng.gauss(0.0, 15.0)
        )
        readings = (
            Reading(metric="temperature_c", value=round2(clamp(self._temp + self._rng.gauss(0, 0.08), -60, 80))),
            Reading(metric="door_open", value=1.0 if door_seen else 0.0),
            Reading(metric="power_w", value=round2(max(0.0, power))),
        )
        return StepResult([Sample(t_ms + dt_ms, readings=readings)], started)
