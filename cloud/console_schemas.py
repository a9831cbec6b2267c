"""Request and response bodies of the fleet and alert-management API (what the console shows)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, Field

from cloud.schemas import GatewayIdStr, Kind, _Request
from cloud.services.alarm_conditions import FLOOD_LIMIT, IsaState

#: A synced record id (protocols' RecordId: no ``/``), as it appears in a path or body.
RecordIdStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]
MAX_BULK: Final = 500
#: Shelving lasts from a minute to a week; it ends by itself.
SHELVE_MIN_S: Final = 60
SHELVE_MAX_S: Final = 7 * 24 * 3600

GatewayStatus = Literal["online", "late", "offline"]
FleetSort = Literal["gateway_id", "site", "status", "last_contact", "outbox_depth", "oldest_unsynced",
                    "agent_version", "rejected"]
AlarmSort = Literal["-ts", "ts", "severity"]


class Me(BaseModel):
    role: str
    gateway_id: str | None
    token_id: int | None


class ModelRun(BaseModel):
    task: str
    state: str
    version: int | None
    pending_version: int | None = None
    shadow_version: int | None = None
    rollout_id: int | None = None


class RejectedUpdate(BaseModel):
    task: str
    version: int
    code: str | None
    reason: str | None
    ts: int | None


class FleetGateway(BaseModel):
    gateway_id: str
    site: str
    status: GatewayStatus
    #: The later of the last sync and the last model report (ms); None when never heard from.
    last_contact_ts: int | None
    last_sync_ts: int | None
    last_report_ts: int | None
    outbox_depth: int | None
    oldest_unsynced_ts: int | None
    oldest_unsynced_age_s: float | None
    mqtt_connected: bool | None
    agent_version: str | None
    models: list[ModelRun]
    rejected: list[RejectedUpdate]
    counts: dict[Kind, int]


class FleetPage(BaseModel):
    items: list[FleetGateway]
    total: int = Field(description="Gateways matching the filters (all pages)")
    offset: int
    limit: int
    #: Gateways per status under the other filters (the status chips).
    by_status: dict[GatewayStatus, int]
    late_after_s: float
    offline_after_s: float


class DeviceOut(BaseModel):
    device_id: str
    last_ts: int
    messages: int
    metrics: list[str]


class GatewayDetail(BaseModel):
    gateway: FleetGateway
    devices: list[DeviceOut]
    devices_since_ts: int | None = Field(
        None, description="Devices and their messages counted from this device time on; None: every stored message")
    report: dict[str, Any] | None = Field(description="The latest protocols.ModelReport, as the gateway sent it")


class AlarmOut(BaseModel):
    gateway_id: str
    id: str
    site: str
    isa_state: IsaState
    active: bool
    acked: bool
    shelved: bool
    ts: int
    cleared_ts: int | None
    acked_ts: int | None
    acked_by: str | None
    shelved_until: int | None
    shelved_by: str | None
    shelve_reason: str | None
    n_comments: int
    alert: dict[str, Any] = Field(description="The alert record as synced (every field the gateway sent)")


class AlarmEventOut(BaseModel):
    ts: int
    actor: str
    action: Literal["ack", "shelve", "unshelve", "comment"]
    text: str | None
    shelved_until: int | None


class AlarmDetail(AlarmOut):
    events: list[AlarmEventOut]


class SiteFlood(BaseModel):
    site: str
    alarms_10min: int
    limit: int = FLOOD_LIMIT
    flood: bool


class AlarmPage(BaseModel):
    items: list[AlarmOut]
    total: int
    offset: int
    limit: int
    #: Among the matching alarms: how many are active, unacknowledged, shelved now.
    active: int
    unacked: int
    shelved: int
    flood: list[SiteFlood]


class AlarmRef(_Request):
    gateway_id: GatewayIdStr
    id: RecordIdStr


class AckRequest(_Request):
    alarms: Annotated[list[AlarmRef], Field(min_length=1, max_length=MAX_BULK)]
    comment: Annotated[str | None, Field(min_length=1, max_length=1000)] = None


class AckResult(BaseModel):
    acknowledged: list[AlarmRef]
    already_acknowledged: list[AlarmRef]


class ShelveRequest(_Request):
    duration_s: Annotated[int, Field(ge=SHELVE_MIN_S, le=SHELVE_MAX_S, description="How long (seconds)")]
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class CommentRequest(_Request):
    text: Annotated[str, Field(min_length=1, max_length=1000)]
