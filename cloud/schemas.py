"""Request and response bodies of the REST API (separate from the tables and the wire contracts)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Generic, Literal, TypeVar, get_args

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from protocols import RECORD_KINDS, AlertPayload, ForecastPayload

#: Tokens given by provisioning scripts: long enough to be secrets, printable without quoting.
TOKEN_PATTERN = r"^[A-Za-z0-9_.~+/=-]{20,256}$"
GatewayIdStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Kind = Literal["telemetry", "scan", "device_status", "alert", "forecast"]
if get_args(Kind) != RECORD_KINDS:  # the documented counter keys are the wire contract's record kinds
    raise RuntimeError(f"cloud.schemas.Kind {get_args(Kind)} differs from protocols.RECORD_KINDS {RECORD_KINDS}")
T = TypeVar("T")

#: The largest integer the API takes: the largest a JSON number (an IEEE double) holds exactly, so
#: every client reads the documented bound as written, and well inside the BIGINT columns the values
#: end in. Larger values are refused with 422 naming the parameter instead of reaching the database.
MAX_API_INT: Final = 2**53 - 1
#: A row id in a path (rollouts, train jobs, metadata versions).
RowIdPath = Annotated[int, Path(ge=1, le=MAX_API_INT)]
#: A time in ms since the epoch, as a query parameter.
TsQuery = Annotated[int | None, Query(ge=0, le=MAX_API_INT, description="Time in ms since the epoch")]
#: A time in ms since the epoch in a request body (a JSON integer: no booleans, no strings).
TsField = Annotated[int, Field(ge=0, le=MAX_API_INT, strict=True)]


class _Request(BaseModel):
    """A request body: unknown fields refused, no silent coercion (``true`` is not ``1``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class GatewayCreate(_Request):
    gateway_id: GatewayIdStr
    site: GatewayIdStr
    token: Annotated[str | None, Field(pattern=TOKEN_PATTERN, description="Provisioned secret; random if absent")] = None


class GatewayCreated(BaseModel):
    gateway_id: str
    site: str
    created_ts: int
    token: str = Field(description="Shown once; only its hash is stored")


class GatewayOut(BaseModel):
    gateway_id: str
    site: str
    created_ts: int
    last_seen_ts: int | None
    last_batch_id: str | None
    agent_version: str | None
    counts: dict[Kind, int]


class TokenCreate(_Request):
    role: Literal["admin", "planner", "operator", "gateway"]
    gateway_id: Annotated[GatewayIdStr | None, Field(description="Required for (and only for) gateway tokens")] = None
    label: Annotated[str | None, Field(max_length=200)] = None
    token: Annotated[str | None, Field(pattern=TOKEN_PATTERN, description="Provisioned secret; random if absent")] = None


class TokenCreated(BaseModel):
    token_id: int
    role: str
    gateway_id: str | None
    label: str | None
    token: str = Field(description="Shown once; only its hash is stored")


class AlertOut(BaseModel):
    id: str
    gateway_id: str
    stored_ts: int
    alert: AlertPayload


class ForecastOut(BaseModel):
    id: str
    gateway_id: str
    stored_ts: int
    forecast: ForecastPayload


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class ReadingPoint(BaseModel):
    ts: int = Field(description="Start of the bucket (ms since the epoch)")
    min: float
    max: float
    mean: float
    count: int = Field(description="Readings in the bucket")


class ReadingsOut(BaseModel):
    device_id: str
    metric: str
    from_ts: int
    to_ts: int
    bucket_ms: int = Field(description="Width of every bucket; at most max_points buckets cover [from, to) "
                           "(an hour or more: whole hours, buckets aligned on multiples of it since the epoch)")
    points: list[ReadingPoint] = Field(description="Buckets holding readings, in time order (empty ones left out)")


class DemandDay(BaseModel):
    date: dt.date
    day_start_ts: int
    units: int = Field(description="Units picked (sum of qty of pick scans)")
    scans: int = Field(description="Pick scans")


class DemandOut(BaseModel):
    site: str
    sku: str
    from_ts: int
    to_ts: int
    days: list[DemandDay] = Field(description="Every UTC day the range touches, in order (0 when nothing was picked)")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["sqlite", "postgresql"]
    detail: str | None = None


def payload_dict(value: Any) -> dict[str, Any]:
    """A JSON column's value as a dict (drivers return dicts; be explicit for the type checker)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value
