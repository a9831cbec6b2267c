"""Device physics models, one small module per family, built from a fleet's device spec."""

from __future__ import annotations

import random

from firmware_sim.config import (
    BarcodeScannerGroup,
    ColdRoomGroup,
    ConveyorGroup,
    DeviceSpec,
    HumidityGroup,
    PowerMeterGroup,
    PumpGroup,
    RfidPortalGroup,
)
from firmware_sim.devices.ambient import AmbientSensor
from firmware_sim.devices.base import Anomaly, DeviceModel, Sample, StepResult
from firmware_sim.devices.cold_room import ColdRoom
from firmware_sim.devices.conveyor import Conveyor
from firmware_sim.devices.power import PowerMeter
from firmware_sim.devices.pump import Pump
from firmware_sim.devices.scanners import BarcodeScanner, RfidPortal


def build_model(spec: DeviceSpec, rng: random.Random, start_ms: int) -> DeviceModel:
    """The physics model for one device (``rng`` is that device's own seeded generator)."""
    g = spec.group
    tz = spec.tz_offset_h
    if isinstance(g, ColdRoomGroup):
        return ColdRoom(g, rng, start_ms, tz)
    if isinstance(g, HumidityGroup):
        return AmbientSensor(g, rng, start_ms, tz)
    if isinstance(g, ConveyorGroup):
        return Conveyor(g, rng, start_ms, tz)
    if isinstance(g, PumpGroup):
        return Pump(g, rng, start_ms, tz)
    if isinstance(g, PowerMeterGroup):
        return PowerMeter(g, rng, start_ms, tz)
    if isinstance(g, BarcodeScannerGroup):
        return BarcodeScanner(g, rng, start_ms, tz, spec.device_id)
    if isinstance(g, RfidPortalGroup):
        return RfidPortal(g, rng, start_ms, tz, spec.device_id)
    raise TypeError(f"no model for device kind {spec.kind!r}")


__all__ = ["Anomaly", "DeviceModel", "Sample", "StepResult", "build_model"]
