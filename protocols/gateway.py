"""What a gateway agent publishes and syncs of its own: alerts, forecasts, its status, commands."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocols.messages import Frozen, Ident, TsMs, non_empty

Score = Annotated[float, Field(ge=0.0, le=1.0)]


class AlertPayload(Frozen):
    """An alert raised (or cleared) by a gateway.

    ``kind="anomaly"``: a model scored a device's readings above its threshold; it carries the
    score, expected vs observed value and the window it looked at. ``kind="system"``: the
    agent itself needs attention (e.g. unsynced data over its disk quota).
    """

    schema_: Literal["edgehouse.alert"] = Field("edgehouse.alert", alias="schema")
    v: Literal[1] = 1
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

    @model_validator(mode="after")
    def _anomaly_fields(self) -> AlertPayload:
        if self.kind == "anomaly":
            missing = [f for f in ("device_id", "metric", "score", "threshold") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"anomaly alerts need {', '.join(missing)}")
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
