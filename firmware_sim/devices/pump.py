"""Centrifugal water pump on a variable-speed drive: five coupled channels in one message.

The channels come from one operating point, so they move together the way a real pump's do:

* speed n (fraction of rated) follows the loop's demand: a day/night profile, slow wander and a
  few setpoint steps a day (normal operation that changes every channel at once);
* the operating point is where the pump curve ``H = H0 n^2 - A Q^2`` meets the system curve
  ``H = H_static + K Q^2 / opening^2`` (affinity laws): flow ``flow_m3_h`` and discharge pressure
  ``pressure_bar`` (suction pressure + rho g H);
* shaft power = hydraulic power / efficiency (best at the best-efficiency flow, which scales with
  n); ``motor_current_a`` = electrical power / (sqrt(3) V pf) plus the magnetising current;
* ``vibration_rms_mm_s``: rotating part (grows with n^2) and hydraulic part (grows with the
  distance from the best-efficiency flow), combined as RMS;
* ``temperature_c`` (motor frame): first-order lag (15 min) towards ambient + heat from power.

Faults (ground truth ``metric`` null: the machine as a whole):

* ``cavitation``: the suction side starves (a clogging strainer): suction pressure falls, the
  head breaks down (less flow and pressure, less current), flow and pressure fluctuate and
  broadband vibration rises in bursts;
* ``valve_closure``: a discharge valve closes to a quarter open within the first fifth of the
  fault: flow falls, discharge pressure rises, current falls, hydraulic vibration rises (far
  from the best-efficiency flow);
* ``rotor_imbalance``: a deposit or a broken vane unbalances the impeller within the first tenth
  of the fault: vibration rises with n^2, the current ripples, bearing friction warms the motor
  and costs a little efficiency; flow and pressure barely move.
"""

from __future__ import annotations

import math
import random

from firmware_sim.config import PumpGroup
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
    AnomalyKind("cavitation", None, 0.5, 4.0),
    AnomalyKind("valve_closure", None, 0.3, 2.0),
    AnomalyKind("rotor_imbalance", None, 2.0, 12.0),
)
_RHO_G = 1000.0 * 9.81  # water, N/m^3
_SUCTION_BAR = 1.0
_ETA_MAX = 0.76
_MOTOR_ETA = 0.9
_POWER_FACTOR = 0.85
_MOTOR_TAU_S = 900.0
_SPEED_TAU_S = 60.0
_MIN_SPEED = 0.45


class Pump:
    def __init__(self, group: PumpGroup, rng: random.Random, start_ms: int, tz_offset_h: float) -> None:
        self.g = group
        self._rng = rng
        self._tz = tz_offset_h
        self.schedule = AnomalySchedule(rng, KINDS, group.anomaly_rate_per_day, group.anomalies, start_ms, "pump")
        # Curves through the rated point: H0 at zero flow, the rated flow at 0.6 H0 with the valve open.
        g = group
        rated_h = 0.6 * g.rated_head_m
        self._a = (g.rated_head_m - rated_h) / g.rated_flow_m3_h**2
        self._k = (rated_h - g.static_head_m) / g.rated_flow_m3_h**2
        self._bep = g.rated_flow_m3_h
        rated_p = self._electrical_w(g.rated_flow_m3_h, rated_h, 1.0, 1.0)
        self._rated_w = rated_p
        self._speed = self._demand(start_ms)
        self._wander = 0.0
        self._offset = 0.0
        self._motor_c = g.ambient_c + 30.0 * 0.8
        self._next_setpoint = start_ms + self._setpoint_gap_ms()

    def _setpoint_gap_ms(self) -> int:
        rate = self.g.setpoint_changes_per_day
        return int(self._rng.expovariate(rate) * 24 * HOUR_MS) if rate > 0 else 2**62

    def _demand(self, t_ms: int) -> float:
        lt = local_time(t_ms, self._tz)
        day = 0.18 if is_open(lt, self.g.open_hour, self.g.close_hour) and lt.weekday < 6 else 0.0
        return 0.72 + day

    def _efficiency(self, q: float, n: float) -> float:
        x = q / max(1e-6, self._bep * n)
        return max(0.15, _ETA_MAX * (1.0 - 0.8 * (x - 1.0) ** 2))

    def _electrical_w(self, q: float, h: float, n: float, eta_factor: float) -> float:
        hydraulic = _RHO_G * (q / 3600.0) * h
        shaft = hydraulic / (self._efficiency(q, n) * eta_factor) + 120.0 * n**3  # + bearing/seal losses
        return shaft / _MOTOR_ETA

    def step(self, t_ms: int, dt_ms: int) -> StepResult:
        started = self.schedule.advance(t_ms)
        g, rng = self.g, self._rng
        t = t_ms + dt_ms
        dt_s = dt_ms / 1000.0
        if t >= self._next_setpoint:  # an operator or the BMS moves the loop's setpoint
            self._offset = clamp(self._offset + rng.choice((-1.0, 1.0)) * rng.uniform(0.04, 0.12), -0.2, 0.15)
            self._next_setpoint = t + self._setpoint_gap_ms()
        self._wander = clamp(self._wander * math.exp(-dt_s / 7200.0) + rng.gauss(0.0, 0.004 * math.sqrt(dt_s / 60.0)), -0.06, 0.06)
        target = clamp(self._demand(t) + self._offset + self._wander, _MIN_SPEED, 1.0)
        self._speed += (target - self._speed) * (1.0 - math.exp(-dt_s / _SPEED_TAU_S))
        n = self._speed

        cav = self.schedule.get("cavitation", t)
        valve = self.schedule.get("valve_closure", t)
        imb = self.schedule.get("rotor_imbalance", t)
        s_cav = 0.0 if cav is None else min(1.0, cav.progress(t) / 0.3)
        opening = 1.0 if valve is None else 1.0 - 0.75 * min(1.0, valve.progress(t) / 0.2)
        s_imb = 0.0 if imb is None else min(1.0, imb.progress(t) / 0.1)

        # Operating point: pump curve (broken down by cavitation) meets the system curve.
        h0 = g.rated_head_m * n**2 * (1.0 - 0.28 * s_cav)
        k = self._k / opening**2
        q = math.sqrt(max(0.0, h0 - g.static_head_m) / (self._a + k))
        if s_cav > 0.0:  # vapour bubbles collapse: the delivery fluctuates
            q *= max(0.0, 1.0 + rng.gauss(0.0, 0.05 * s_cav))
        head = g.static_head_m + k * q**2
        suction = _SUCTION_BAR - 0.6 * s_cav
        pressure = suction + _RHO_G * head / 1e5

        power = self._electrical_w(q, head, n, 1.0 - 0.03 * s_imb)
        current = power / (math.sqrt(3.0) * g.supply_v * _POWER_FACTOR) + 0.15 * self._rated_w / (
            math.sqrt(3.0) * g.supply_v
        )
        current *= 1.0 + rng.gauss(0.0, 0.006 + 0.03 * s_imb)  # imbalance: load torque ripples

        x = q / max(1e-6, self._bep * n)
        rotating = 1.1 * n**2 * (1.0 + 3.5 * s_imb)
        hydraulic = 0.9 + 2.2 * (x - 1.0) ** 2
        cavitating = 4.0 * s_cav * rng.lognormvariate(0.0, 0.35)
        vibration = math.sqrt(rotating**2 + hydraulic**2 + cavitating**2) * rng.lognormvariate(0.0, 0.04)

        heat = 30.0 * power / self._rated_w + 9.0 * s_imb
        self._motor_c += (g.ambient_c + heat - self._motor_c) * (1.0 - math.exp(-dt_s / _MOTOR_TAU_S))

        readings = (
            Reading(metric="vibration_rms_mm_s", value=round2(clamp(vibration, 0.0, 200.0))),
            Reading(metric="motor_current_a", value=round2(clamp(current, 0.0, 5000.0))),
            Reading(
                metric="pressure_bar",
                value=round2(clamp(pressure + rng.gauss(0.0, 0.015 + 0.08 * s_cav), -1.0, 400.0)),
            ),
            Reading(metric="temperature_c", value=round2(clamp(self._motor_c + rng.gauss(0.0, 0.1), -60, 80))),
            Reading(metric="flow_m3_h", value=round2(clamp(q + rng.gauss(0.0, 0.004 * self._bep), 0.0, 1e5))),
        )
        return StepResult([Sample(t, readings=readings)], started)
