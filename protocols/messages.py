"""Device messages: the envelope and the typed bodies for telemetry, scans and device status.

Every message is JSON. The envelope carries ``msg_id``, ``schema`` (the message type), ``v``
(its schema version), ``device_id``, ``boot_id`` (new at every device boot), ``seq``
(monotonic per boot), ``ts`` (device clock, ms since the epoch) and ``body``. The
de-duplication key is ``(device_id, boot_id, seq)``.

Decoding is strict: unknown fields, wrong types (no "5" for 5) and out-of-range values are
rejected with the reason and the dotted path of the offending field.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal, TypeAlias, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from protocols.errors import DecodeError

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_TS_MS: Final = 2**53 - 1

Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
BootId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MsgId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TsMs = Annotated[int, Field(ge=0, le=MAX_TS_MS)]
_T = TypeVar("_T")


def _at_least_one(items: tuple[_T, ...]) -> tuple[_T, ...]:
    if not items:
        raise ValueError("needs at least 1 item")
    return items


def non_empty(max_length: int) -> Any:
    """Metadata for a tuple of 1 to ``max_length`` items (``minItems: 1`` in the JSON Schema).

    Emptiness is checked after the items, so an invalid item is reported alone instead of also
    making the tuple "too short" (pydantic counts only the items that validated).
    """
    return (Field(max_length=max_length, json_schema_extra={"minItems": 1}), AfterValidator(_at_least_one))


class Frozen(BaseModel):
    """Base of every wire model: immutable, unknown keys rejected, no type coercion."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


Metric: TypeAlias = Literal[
    "temperature_c",
    "humidity_pct",
    "vibration_rms_mm_s",
    "power_w",
    "door_open",
    "motor_current_a",
    "pressure_bar",
    "flow_m3_h",
]
#: The metrics of telemetry v1; v2 added the multichannel machines' (pumps): current, pressure, flow.
METRICS_V1: Final[frozenset[str]] = frozenset(
    {"temperature_c", "humidity_pct", "vibration_rms_mm_s", "power_w", "door_open"}
)

#: Physically plausible range per metric; values outside are sensor faults, not readings.
METRIC_RANGES: Final[dict[str, tuple[float, float]]] = {
    "temperature_c": (-60.0, 80.0),
    "humidity_pct": (0.0, 100.0),
    "vibration_rms_mm_s": (0.0, 200.0),
    "power_w": (0.0, 1_000_000.0),
    "door_open": (0.0, 1.0),
    "motor_current_a": (0.0, 5_000.0),
    "pressure_bar": (-1.0, 400.0),
    "flow_m3_h": (0.0, 100_000.0),
}


class Reading(Frozen):
    metric: Metric
    value: float

    @model_validator(mode="after")
    def _in_range(self) -> Reading:
        lo, hi = METRIC_RANGES[self.metric]
        if not (lo <= self.value <= hi) or math.isnan(self.value):
            raise ValueError(f"{self.metric} value {self.value} outside [{lo}, {hi}]")
        if self.metric == "door_open" and self.value not in (0.0, 1.0):
            raise ValueError("door_open must be 0 or 1")
        return self


class TelemetryBody(Frozen):
    readings: Annotated[tuple[Reading, ...], *non_empty(16)]

    @model_validator(mode="after")
    def _unique_metrics(self) -> TelemetryBody:
        metrics = [r.metric for r in self.readings]
        if len(set(metrics)) != len(metrics):
            raise ValueError("each metric may appear once per message")
        return self


#: Scan directions that move stock, with the sign of their effect on the position.
STOCK_MOVES: Final[dict[str, int]] = {"inbound": 1, "pick": -1, "outbound": -1}
#: The cycle-count direction (scan schema v2): ``qty`` is the quantity counted at the location,
#: which sets the position (0 allowed).
COUNT_DIRECTION: Final = "count"


class ScanBody(Frozen):
    """One scan. ``inbound`` / ``pick`` / ``outbound`` move ``qty`` (≥ 1) units of ``sku`` at
    ``location``; ``count`` (scan schema v2) says ``qty`` (≥ 0) units were counted there."""

    code_type: Literal["barcode", "rfid"]
    sku: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    location: Annotated[str, Field(min_length=1, max_length=64)]
    direction: Literal["inbound", "pick", "outbound", "count"]
    qty: Annotated[int, Field(ge=0, le=100_000)]
    reader_id: Ident
    tag_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ScanBody:
        if self.code_type == "rfid" and self.tag_id is None:
            raise ValueError("tag_id is required for rfid reads")
        if self.qty < 1 and self.direction != COUNT_DIRECTION:
            raise ValueError(f"qty must be at least 1 for direction {self.direction!r}")
        return self


class StatusBody(Frozen):
    state: Literal["online", "offline"]
    fw_version: Annotated[str, Field(min_length=1, max_length=32)]
    uptime_s: Annotated[float, Field(ge=0)] = 0.0
    reason: Annotated[str, Field(max_length=200)] | None = None


class _Envelope(Frozen):
    v: Literal[1] = 1
    msg_id: MsgId
    device_id: Ident
    boot_id: BootId
    seq: Annotated[int, Field(ge=0, le=MAX_TS_MS)]
    ts: TsMs

    @property
    def dedup_key(self) -> tuple[str, str, int]:
        return (self.device_id, self.boot_id, self.seq)


class TelemetryMessage(_Envelope):
    """Readings of one device at one time. Version 2 added the metrics of multichannel machines
    (``motor_current_a``, ``pressure_bar``, ``flow_m3_h``); a v1 message carries only v1 metrics
    (:data:`METRICS_V1`), so a device whose readings all exist in v1 may keep sending v1."""

    schema_: Literal["edgehouse.telemetry"] = Field("edgehouse.telemetry", alias="schema")
    v: Literal[1, 2] = 2  # type: ignore[assignment]
    body: TelemetryBody

    @model_validator(mode="after")
    def _metrics_of_version(self) -> TelemetryMessage:
        if self.v == 1:
            newer = sorted(r.metric for r in self.body.readings if r.metric not in METRICS_V1)
            if newer:
                raise ValueError(f"metrics {', '.join(newer)} need v 2")
        return self


class ScanMessage(_Envelope):
    """A scan. Version 2 added the ``count`` direction (cycle counts); a v1 scan (inbound, pick,
    outbound) is unchanged and still valid, and devices keep sending movements as v1."""

    schema_: Literal["edgehouse.scan"] = Field("edgehouse.scan", alias="schema")
    v: Literal[1, 2] = 2  # type: ignore[assignment]
    body: ScanBody

    @model_validator(mode="after")
    def _count_needs_v2(self) -> ScanMessage:
        if self.v < 2 and self.body.direction == COUNT_DIRECTION:
            raise ValueError("direction 'count' needs scan schema v 2")
        return self


class StatusMessage(_Envelope):
    schema_: Literal["edgehouse.status"] = Field("edgehouse.status", alias="schema")
    body: StatusBody


DeviceMessage: TypeAlias = Annotated[
    TelemetryMessage | ScanMessage | StatusMessage, Field(discriminator="schema_")
]
#: Only JSON keys go through pydantic-core's string cache: it is process-wide (16,384 strings),
#: and the values of device messages (msg ids, boot ids) are mostly unique, so caching them kept
#: about 1 MB of dead strings in a gateway at no gain in decode speed.
_DEVICE_ADAPTER: Final = TypeAdapter(DeviceMessage, config=ConfigDict(cache_strings="keys"))
_BY_KIND: Final = {"telemetry": TelemetryMessage, "scan": ScanMessage, "status": StatusMessage}


def decode_device_message(
    raw: bytes | str, expected: Literal["telemetry", "scan", "status"] | None = None
) -> TelemetryMessage | ScanMessage | StatusMessage:
    """Decode and validate one device message; raise :class:`DecodeError` with the reason.

    ``expected`` is the kind named by the topic: a message whose schema disagrees with its
    topic is rejected too.
    """
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise DecodeError(f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        msg = _DEVICE_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise DecodeError.from_validation(exc, skip_tag=True) from None
    if expected is not None and not isinstance(msg, _BY_KIND[expected]):
        raise DecodeError(f"schema {msg.schema_!r} published on a {expected!r} topic", "schema")
    return msg


def encode(msg: BaseModel) -> bytes:
    """Canonical JSON bytes of a wire model (aliases, no spaces)."""
    return msg.model_dump_json(by_alias=True).encode()
