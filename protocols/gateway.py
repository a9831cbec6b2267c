"""What a gateway agent publishes and syncs of its own: alerts, forecasts, its status, commands."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from protocols.messages import Frozen, Ident, TsMs, non_empty

Score = Annotated[float, Field(ge=0.0, le=1.0)]
#: A short machine-readable name (``alert_flood``, ``disk_quota``, ``model``, ``drift``, ...).
Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
Count = Annotated[int, Field(ge=0, le=2**53 - 1)]

#: ``code`` of the alert budget's system alert (:class:`AlertFlood` on it).
ALERT_FLOOD: Final = "alert_flood"
#: ``code`` of the disk-quota system alert (unsynced data over the quota, intake paused).
DISK_QUOTA: Final = "disk_quota"
#: ``code`` of the alert raised when the cloud refused records for good.
SYNC_REJECTED: Final = "sync_rejected"
#: At most this many drivers per alert (the largest contributions).
MAX_DRIVERS: Final = 32
#: Fields that appeared in v2 of the alert contract; a v1 alert carries none of them.
ALERT_V2_FIELDS: Final = ("code", "detector", "drivers", "window_readings", "flood")


class AlertDriver(Frozen):
    """One stream (a device's channel, ``device_id`` + ``metric``) that drove an alert.

    ``contribution`` is its share of the alert, 0..1, the shares of one alert summing to at most 1:
    1.0 for a per-stream anomaly; for a device (multichannel) anomaly each channel's share of the
    device score; for an ``alert_flood`` the stream's share of the alerts in the window
    (``alerts`` of them). ``expected`` / ``observed`` are that channel's values when known.
    """

    device_id: Ident
    metric: Annotated[str, Field(min_length=1, max_length=64)]
    contribution: Score
    score: Score | None = None
    expected: float | None = None
    observed: float | None = None
    alerts: Count | None = None


class AlertFlood(Frozen):
    """The alert budget's figures on an ``alert_flood`` system alert (after ISA-18.2).

    More than ``flood_limit`` alerts raised within ``window_s`` at ``site`` is a flood: the
    agent raises one ``alert_flood`` alert and withholds further alerts, counting them in
    ``suppressed``, until the rate falls back to ``clear_limit`` or fewer per window; the clear
    event carries the final counts.
    """

    site: Ident
    window_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600)]
    flood_limit: Annotated[int, Field(ge=1, le=1_000_000)]
    clear_limit: Annotated[int, Field(ge=0, le=1_000_000)]
    #: Alerts counted in the window at this event (withheld ones included).
    alerts_in_window: Count
    #: Alerts (raises and their clears) withheld since the flood began.
    suppressed: Count
    #: When the flood began (agent clock, ms).
    since_ts: TsMs


class AlertPayload(Frozen):
    """An alert raised (or cleared) by a gateway.

    ``kind="anomaly"``: a model scored a device's readings above its threshold; it carries the
    score, expected vs observed value and the window it looked at (``window_start_ts`` ..
    ``window_end_ts``, ``window_readings`` readings), ``detector`` (the test that set the
    score) and its ``drivers``: the stream that raised it (``metric``), or for a device alert
    (``metric`` absent) each channel with its contribution. ``kind="system"``: the agent itself
    needs attention; ``code`` says why (``alert_flood`` with ``flood``, ``disk_quota``,
    ``sync_rejected``).

    Version 2 added ``code``, ``detector``, ``drivers``, ``window_readings`` and ``flood``;
    a v1 alert (an older agent's) is still valid and carries none of them.
    """

    schema_: Literal["edgehouse.alert"] = Field("edgehouse.alert", alias="schema")
    v: Literal[1, 2] = 2
    alert_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    gateway_id: Ident
    kind: Literal["anomaly", "system"]
    state: Literal["raised", "cleared"]
    severity: Literal["info", "warning", "critical"] = "warning"
    ts: TsMs
    message: Annotated[str, Field(max_length=500)]
    device_id: Ident | None = None
    metric: Annotated[str, Field(max_length=64)] | None = None
    score: Score | None = None
    threshold: Score | None = None
    expected: float | None = None
    observed: float | None = None
    window_start_ts: TsMs | None = None
    window_end_ts: TsMs | None = None
    model_version: Annotated[int, Field(ge=0)] | None = None
    code: Code | None = None
    detector: Code | None = None
    drivers: Annotated[tuple[AlertDriver, ...], Field(max_length=MAX_DRIVERS)] = ()
    window_readings: Count | None = None
    flood: AlertFlood | None = None

    @model_serializer(mode="wrap")
    def _as_its_version(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        """A v1 alert is written as v1 (without the v2 keys), so it stays valid against its schema.

        (No return annotation on purpose: with one, pydantic would publish the annotation instead of
        this model as the serialization schema, e.g. in the cloud's OpenAPI.)
        """
        data: dict[str, Any] = handler(self)
        if self.v == 1:
            for name in ALERT_V2_FIELDS:
                data.pop(name, None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> AlertPayload:
        if self.v == 1:
            present = [f for f in ALERT_V2_FIELDS if getattr(self, f) not in (None, ())]
            if present:
                raise ValueError(f"{', '.join(present)} need v 2")
        if self.kind == "anomaly":
            needed = ("device_id", "metric", "score", "threshold")
            if self.v >= 2 and self.drivers:  # a device alert names its channels in drivers
                needed = ("device_id", "score", "threshold")
            missing = [f for f in needed if getattr(self, f) is None]
            if missing:
                raise ValueError(f"anomaly alerts need {', '.join(missing)}")
        if (self.code == ALERT_FLOOD) != (self.flood is not None):
            raise ValueError("flood goes with code 'alert_flood' (and it needs flood)")
        if self.flood is not None and self.kind != "system":
            raise ValueError("an alert_flood alert is kind 'system'")
        start, end = self.window_start_ts, self.window_end_ts
        if self.v >= 2 and start is not None and end is not None and start > end:
            raise ValueError("window_start_ts must not be after window_end_ts")
        streams = {(d.device_id, d.metric) for d in self.drivers}
        if len(streams) != len(self.drivers):
            raise ValueError("each (device_id, metric) may appear once in drivers")
        if sum(d.contribution for d in self.drivers) > 1.0 + 1e-6:
            raise ValueError("the drivers' contributions must sum to at most 1")
        return self


class ForecastPayload(Frozen):
    """Daily demand forecast for one SKU at one site, from ``origin`` (first forecast day)."""

    schema_: Literal["edgehouse.forecast"] = Field("edgehouse.forecast", alias="schema")
    v: Literal[1] = 1
    forecast_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    gateway_id: Ident
    site: Ident
    sku: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    origin: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    created_ts: TsMs
    p50: Annotated[tuple[Annotated[float, Field(ge=0)], ...], *non_empty(366)]
    p90: Annotated[tuple[Annotated[float, Field(ge=0)], ...], *non_empty(366)]
    model_version: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _same_horizon(self) -> ForecastPayload:
        if len(self.p50) != len(self.p90):
            raise ValueError("p50 and p90 must have the same horizon")
        if any(hi + 1e-9 < lo for lo, hi in zip(self.p50, self.p90, strict=True)):
            raise ValueError("p90 must not be below p50")
        return self


class GatewayStatusPayload(Frozen):
    """Retained birth / last-will message of an agent on ``.../gw/{gateway_id}/status``."""

    schema_: Literal["edgehouse.gateway_status"] = Field("edgehouse.gateway_status", alias="schema")
    v: Literal[1] = 1
    gateway_id: Ident
    state: Literal["online", "offline"]
    agent_version: Annotated[str, Field(min_length=1, max_length=32)]
    ts: TsMs


class GatewayCommand(Frozen):
    """A command to an agent on ``.../gw/{gateway_id}/cmd``."""

    schema_: Literal["edgehouse.gateway_cmd"] = Field("edgehouse.gateway_cmd", alias="schema")
    v: Literal[1] = 1
    cmd: Literal["sync_now", "check_models"]
    cmd_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
