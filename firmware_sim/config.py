"""Fleet description: sites, gateways and device groups, loaded from TOML and validated.

A device group is one table with a ``kind`` discriminator and that kind's parameters; unknown
keys are rejected and named (``sites[0].gateways[0].devices[2] (cold_room): unknown key 'x'``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware_sim.faults import FaultConfig
from protocols import device_filter
from protocols.topics import TopicError, check_id

Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
PositiveSeconds = Annotated[float, Field(gt=0.0, le=86_400.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduledAnomaly(_Strict):
    """An anomaly placed by hand: ``at_h`` simulated hours after the fleet start."""

    kind: str
    at_h: Annotated[float, Field(ge=0.0)]
    duration_h: Annotated[float, Field(gt=0.0)]


class _GroupBase(_Strict):
    count: Annotated[int, Field(ge=1, le=10_000)] = 1
    id_prefix: Ident | None = None
    interval_s: PositiveSeconds = 60.0
    fw_version: Annotated[str, Field(min_length=1, max_length=32)] = "1.4.2"
    anomaly_rate_per_day: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    anomalies: tuple[ScheduledAnomaly, ...] = ()


class ColdRoomGroup(_GroupBase):
    kind: Literal["cold_room"]
    setpoint_c: Annotated[float, Field(ge=-40.0, le=15.0)] = 2.0
    band_c: Annotated[float, Field(gt=0.0, le=5.0)] = 1.0
    ambient_c: Annotated[float, Field(ge=-10.0, le=45.0)] = 18.0
    defrost_every_h: Annotated[float, Field(gt=0.5, le=48.0)] = 6.0
    defrost_min: Annotated[float, Field(gt=0.0, le=120.0)] = 20.0
    door_opens_per_hour: Annotated[float, Field(ge=0.0, le=120.0)] = 4.0
    compressor_w: Annotated[float, Field(gt=0.0, le=100_000.0)] = 2500.0


class HumidityGroup(_GroupBase):
    kind: Literal["humidity"]
    base_pct: Annotated[float, Field(ge=5.0, le=95.0)] = 55.0
    diurnal_pct: Annotated[float, Field(ge=0.0, le=30.0)] = 8.0
    base_c: Annotated[float, Field(ge=-20.0, le=45.0)] = 20.0
    diurnal_c: Annotated[float, Field(ge=0.0, le=15.0)] = 3.0


class ConveyorGroup(_GroupBase):
    kind: Literal["conveyor"]
    base_rms_mm_s: Annotated[float, Field(gt=0.0, le=20.0)] = 2.2
    motor_w: Annotated[float, Field(gt=0.0, le=100_000.0)] = 1500.0
    open_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = 6.0
    close_hour: Annotated[float, Field(gt=0.0, le=24.0)] = 22.0


class PumpGroup(_GroupBase):
    """A VFD-driven centrifugal water pump (cooling / sprinkler loop) reporting five channels."""

    kind: Literal["pump"]
    interval_s: PositiveSeconds = 60.0
    rated_flow_m3_h: Annotated[float, Field(gt=0.0, le=10_000.0)] = 60.0
    rated_head_m: Annotated[float, Field(gt=1.0, le=500.0)] = 40.0
    static_head_m: Annotated[float, Field(ge=0.0, le=200.0)] = 8.0
    supply_v: Annotated[float, Field(gt=0.0, le=20_000.0)] = 400.0
    ambient_c: Annotated[float, Field(ge=-10.0, le=45.0)] = 22.0
    setpoint_changes_per_day: Annotated[float, Field(ge=0.0, le=200.0)] = 3.0
    open_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = 6.0
    close_hour: Annotated[float, Field(gt=0.0, le=24.0)] = 22.0

    @model_validator(mode="after")
    def _heads(self) -> Self:
        if self.static_head_m >= 0.5 * self.rated_head_m:
            raise ValueError("static_head_m must be below half of rated_head_m (else the pump cannot deliver)")
        return self


class PowerMeterGroup(_GroupBase):
    kind: Literal["power_meter"]
    base_w: Annotated[float, Field(ge=0.0, le=500_000.0)] = 20_000.0
    shift_w: Annotated[float, Field(ge=0.0, le=500_000.0)] = 60_000.0
    open_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = 6.0
    close_hour: Annotated[float, Field(gt=0.0, le=24.0)] = 22.0


class BarcodeScannerGroup(_GroupBase):
    kind: Literal["barcode_scanner"]
    interval_s: PositiveSeconds = 300.0
    skus: Annotated[int, Field(ge=1, le=5000)] = 20
    sku_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")] = "SKU"
    mean_daily_picks: Annotated[float, Field(gt=0.0, le=100_000.0)] = 40.0
    trend_pct_per_week: Annotated[float, Field(ge=-50.0, le=50.0)] = 1.0
    promo_every_days: Annotated[float, Field(gt=0.0)] = 21.0
    stockout_every_days: Annotated[float, Field(gt=0.0)] = 30.0
    open_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = 6.0
    close_hour: Annotated[float, Field(gt=0.0, le=24.0)] = 22.0
    #: Mean days between cycle counts of each SKU's slot (0: never). A count scans what is on the
    #: shelf: the scanner's own book less 0..``count_shrink_max`` units gone missing, never below 0.
    count_every_days: Annotated[float, Field(ge=0.0)] = 0.0
    count_shrink_max: Annotated[int, Field(ge=0, le=1000)] = 3


class RfidPortalGroup(_GroupBase):
    kind: Literal["rfid_portal"]
    interval_s: PositiveSeconds = 60.0
    passes_per_hour: Annotated[float, Field(ge=0.0, le=3600.0)] = 30.0
    tags_per_pass: tuple[int, int] = (1, 4)
    reads_per_tag: tuple[int, int] = (1, 5)
    burst_span_ms: Annotated[int, Field(ge=0, le=1500)] = 1200
    direction: Literal["inbound", "outbound"] = "inbound"
    skus: Annotated[int, Field(ge=1, le=5000)] = 20
    sku_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")] = "SKU"
    open_hour: Annotated[float, Field(ge=0.0, lt=24.0)] = 6.0
    close_hour: Annotated[float, Field(gt=0.0, le=24.0)] = 22.0

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        for name in ("tags_per_pass", "reads_per_tag"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi <= 50:
                raise ValueError(f"{name} must be (low, high) with 1 <= low <= high <= 50")
        if self.interval_s * 1000 <= self.burst_span_ms:
            raise ValueError("interval_s must be longer than burst_span_ms")
        return self


DeviceGroup: TypeAlias = Annotated[
    ColdRoomGroup
    | HumidityGroup
    | ConveyorGroup
    | PumpGroup
    | PowerMeterGroup
    | BarcodeScannerGroup
    | RfidPortalGroup,
    Field(discriminator="kind"),
]
DeviceKind = Literal["cold_room", "humidity", "conveyor", "pump", "power_meter", "barcode_scanner", "rfid_portal"]
TELEMETRY_KINDS: frozenset[str] = frozenset({"cold_room", "humidity", "conveyor", "pump", "power_meter"})
_SHORT: dict[str, str] = {
    "cold_room": "cold",
    "humidity": "hum",
    "conveyor": "conv",
    "pump": "pump",
    "power_meter": "pwr",
    "barcode_scanner": "scan",
    "rfid_portal": "rfid",
}


class GatewayConfig(_Strict):
    id: Ident
    devices: tuple[DeviceGroup, ...] = ()


class SiteConfig(_Strict):
    id: Ident
    tz_offset_h: Annotated[float, Field(ge=-12.0, le=14.0)] = 0.0
    gateways: Annotated[tuple[GatewayConfig, ...], Field(min_length=1)]


class FleetConfig(_Strict):
    """The whole fleet file. ``speed`` (simulated seconds per wall second) or ``day_seconds``."""

    name: Annotated[str, Field(min_length=1, max_length=64)] = "fleet"
    seed: int = 0
    #: Mixed into the devices' boot and message ids only: the same seed and devices with another salt
    #: are the same physics with other boots, so a second run (e.g. a warm-up day before the first)
    #: never reuses a (device, boot, seq). Empty: the ids the seed alone gives.
    boot_salt: Annotated[str, Field(max_length=64)] = ""
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    speed: Annotated[float, Field(gt=0.0, le=10_000_000.0)] | None = None
    day_seconds: Annotated[float, Field(gt=0.0)] | None = None
    faults: FaultConfig = FaultConfig()
    sites: Annotated[tuple[SiteConfig, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.speed is not None and self.day_seconds is not None:
            raise ValueError("give speed or day_seconds, not both")
        if self.start.tzinfo is None:
            raise ValueError("start must carry a timezone (e.g. 2026-03-02T00:00:00Z)")
        return self

    @property
    def time_scale(self) -> float:
        """Simulated seconds per wall-clock second (default: one simulated day per 2 minutes)."""
        if self.speed is not None:
            return self.speed
        if self.day_seconds is not None:
            return 86_400.0 / self.day_seconds
        return 720.0


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One concrete device after expanding the groups."""

    site: str
    gateway_id: str
    device_id: str
    kind: DeviceKind
    index: int
    group: DeviceGroup
    tz_offset_h: float


class FleetError(ValueError):
    """A fleet file that cannot be used; the message names every offending key."""


class Fleet:
    """A validated fleet with its devices expanded and unique ids checked."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        devices: list[DeviceSpec] = []
        seen: set[str] = set()
        gateways: set[str] = set()
        for site in config.sites:
            for gw in site.gateways:
                if gw.id in gateways:
                    raise FleetError(f"gateway id {gw.id!r} appears twice")
                gateways.add(gw.id)
                for group in gw.devices:
                    prefix = group.id_prefix or f"{site.id}-{_SHORT[group.kind]}"
                    for i in range(1, group.count + 1):
                        device_id = f"{prefix}-{i:02d}"
                        try:
                            check_id(device_id, "device_id")
                        except TopicError as exc:
                            raise FleetError(str(exc)) from None
                        if device_id in seen:
                            raise FleetError(f"device id {device_id!r} appears twice (set id_prefix)")
                        seen.add(device_id)
                        devices.append(
                            DeviceSpec(site.id, gw.id, device_id, group.kind, len(devices), group, site.tz_offset_h)
                        )
        self.devices: tuple[DeviceSpec, ...] = tuple(devices)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def start_ms(self) -> int:
        return int(self.config.start.timestamp() * 1000)

    @property
    def gateway_ids(self) -> list[str]:
        return [gw.id for site in self.config.sites for gw in site.gateways]

    def devices_of(self, gateway_id: str) -> list[DeviceSpec]:
        found = [d for d in self.devices if d.gateway_id == gateway_id]
        if not found and gateway_id not in self.gateway_ids:
            raise KeyError(f"unknown gateway {gateway_id!r}")
        return found

    def device(self, device_id: str) -> DeviceSpec:
        for d in self.devices:
            if d.device_id == device_id:
                return d
        raise KeyError(f"unknown device {device_id!r}")

    def topic_filters(self, gateway_id: str) -> list[str]:
        """MQTT filters covering exactly this gateway's devices (one per device)."""
        return [device_filter(d.site, d.device_id) for d in self.devices_of(gateway_id)]

    def site_of(self, gateway_id: str) -> str:
        for site in self.config.sites:
            if any(gw.id == gateway_id for gw in site.gateways):
                return site.id
        raise KeyError(f"unknown gateway {gateway_id!r}")

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Fleet:
        try:
            config = FleetConfig.model_validate(data)
        except ValidationError as exc:
            raise FleetError(format_errors(exc)) from None
        return cls(config)

    @classmethod
    def load(cls, path: str | Path) -> Fleet:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise FleetError(f"{p}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise FleetError(f"{p}: {exc.strerror}") from None
        try:
            return cls.from_dict(data)
        except FleetError as exc:
            raise FleetError(f"{p}: {exc}") from None


def _where(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _SHORT:
            out += f" ({part})"
        else:
            out += f".{part}" if out else str(part)
    return out


def format_errors(exc: ValidationError) -> str:
    """One line per problem, unknown keys named explicitly."""
    lines = []
    errors = exc.errors(include_url=False)
    locs = [tuple(e.get("loc", ())) for e in errors]
    for err in errors:
        loc = list(err.get("loc", ()))
        if err["type"] == "too_short" and any(o[: len(loc)] == tuple(loc) and len(o) > len(loc) for o in locs):
            continue  # a container emptied by its own failing items: the items' errors say why
        if err["type"] == "extra_forbidden" and loc:
            key = loc.pop()
            lines.append(f"{_where(loc) or 'top level'}: unknown key {key!r}")
        else:
            lines.append(f"{_where(loc) or 'top level'}: {err['msg']}")
    return "; ".join(lines)
