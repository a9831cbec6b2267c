"""Store-and-forward contract between a gateway and the cloud.

The gateway ``POST``s a :class:`SyncBatch` (JSON, ``Content-Encoding: gzip``) to
``/api/v1/sync`` with ``Authorization: Bearer <gateway token>``. Every record has a stable
``id`` derived from its content (``content_id``: :func:`record_id` for a device message, the
alert or forecast id for what the gateway produced), so the cloud stores each record at most once
however often a batch is retried. The cloud keys records by (authenticated gateway, id): a gateway
can never pre-empt, overwrite or shadow another gateway's records, and a record whose ``id`` is not
its ``content_id`` is rejected. The cloud answers with a :class:`SyncAck` naming the ids it stored
now and those it already had; the gateway deletes exactly those from its outbox. Ids listed in
``rejected`` were refused for good (with the reason): the gateway keeps them aside and alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Final, Literal, TypeAlias

from pydantic import Field, model_validator

from protocols.gateway import AlertPayload, ForecastPayload
from protocols.messages import Frozen, Ident, ScanMessage, StatusMessage, TelemetryMessage, TsMs, non_empty
from protocols.stock import StockDiscrepancy, StockPosition, discrepancy_record_id, stock_record_id

MAX_BATCH_RECORDS: Final = 5000
RecordId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]


def record_id(kind: str, device_id: str, boot_id: str, seq: int) -> str:
    """Stable id of a device message as a sync record: same message, same id, on any gateway."""
    return f"{kind}:{device_id}:{boot_id}:{seq}"


def own_record_id(kind: str, own_id: str) -> str:
    """Stable id of a record the gateway produced itself: its kind and the payload's own id."""
    return f"{kind}:{own_id}"


def alert_record_id(alert: AlertPayload) -> str:
    """Stable id of an alert (one raise or clear event) as a sync record."""
    return own_record_id("alert", alert.alert_id)


def forecast_record_id(forecast: ForecastPayload) -> str:
    """Stable id of a forecast as a sync record."""
    return own_record_id("forecast", forecast.forecast_id)


class _DeviceMessageRecord(Frozen):
    """A device message as a sync record: its id is :func:`record_id` of the message's dedup key."""

    @property
    def content_id(self) -> str:
        """The id this record must carry: derived from the message it holds."""
        kind: str = getattr(self, "kind")  # noqa: B009 - declared by each subclass
        msg: TelemetryMessage | ScanMessage | StatusMessage = getattr(self, "msg")  # noqa: B009
        return record_id(kind, msg.device_id, msg.boot_id, msg.seq)


class TelemetryRecord(_DeviceMessageRecord):
    kind: Literal["telemetry"] = "telemetry"
    id: RecordId
    received_ts: TsMs
    msg: TelemetryMessage


class ScanRecord(_DeviceMessageRecord):
    kind: Literal["scan"] = "scan"
    id: RecordId
    received_ts: TsMs
    msg: ScanMessage


class DeviceStatusRecord(_DeviceMessageRecord):
    kind: Literal["device_status"] = "device_status"
    id: RecordId
    received_ts: TsMs
    msg: StatusMessage


class AlertRecord(Frozen):
    kind: Literal["alert"] = "alert"
    id: RecordId
    alert: AlertPayload

    @property
    def content_id(self) -> str:
        """The id this record must carry: derived from what it holds."""
        return alert_record_id(self.alert)


class ForecastRecord(Frozen):
    kind: Literal["forecast"] = "forecast"
    id: RecordId
    forecast: ForecastPayload

    @property
    def content_id(self) -> str:
        """The id this record must carry: derived from what it holds."""
        return forecast_record_id(self.forecast)


class StockRecord(Frozen):
    """One version of a stock position (sync batch v2); the cloud keeps the highest version."""

    kind: Literal["stock"] = "stock"
    id: RecordId
    position: StockPosition

    @property
    def content_id(self) -> str:
        """The id this record must carry: derived from what it holds."""
        p = self.position
        return stock_record_id(p.site, p.location, p.sku, p.version)


class StockDiscrepancyRecord(Frozen):
    """One revision of a cycle count's discrepancy (sync batch v2); the cloud keeps the highest."""

    kind: Literal["stock_discrepancy"] = "stock_discrepancy"
    id: RecordId
    discrepancy: StockDiscrepancy

    @property
    def content_id(self) -> str:
        """The id this record must carry: derived from what it holds."""
        d = self.discrepancy
        return discrepancy_record_id(d.device_id, d.boot_id, d.seq, d.revision)


SyncRecord: TypeAlias = Annotated[
    TelemetryRecord | ScanRecord | DeviceStatusRecord | AlertRecord | ForecastRecord | StockRecord
    | StockDiscrepancyRecord,
    Field(discriminator="kind"),
]

#: The record kinds of v1 batches, device records first (read off the record models); the cloud keeps
#: one append-only table and a counter per kind. The stock kinds (:data:`BATCH_V2_KINDS`) are versioned
#: state the cloud keeps the newest of.
RECORD_KINDS: Final[tuple[str, ...]] = tuple(
    str(r.model_fields["kind"].default)
    for r in (TelemetryRecord, ScanRecord, DeviceStatusRecord, AlertRecord, ForecastRecord)
)
#: Record kinds that appeared in sync batch v2 (a v1 batch carries none of them).
BATCH_V2_KINDS: Final[frozenset[str]] = frozenset({"stock", "stock_discrepancy"})
#: The kinds of records made of device messages (telemetry, scans, device status).
DEVICE_RECORD_KINDS: Final[tuple[str, ...]] = RECORD_KINDS[:3]
#: The record kind a device message becomes, per device topic kind (``status`` -> ``device_status``).
RECORD_KIND_OF_TOPIC: Final[dict[str, str]] = {
    "telemetry": TelemetryRecord.model_fields["kind"].default,
    "scan": ScanRecord.model_fields["kind"].default,
    "status": DeviceStatusRecord.model_fields["kind"].default,
}


def batch_version(kinds: Iterable[str], newer_messages: bool = False) -> Literal[1, 2]:
    """The lowest batch version that can carry records of ``kinds`` (v1 where it can: clouds of
    every release take it); ``newer_messages``: some device message is of a version v1 batches cannot carry."""
    return 2 if newer_messages or any(kind in BATCH_V2_KINDS for kind in kinds) else 1


class SyncBatchHeader(Frozen):
    """A :class:`SyncBatch` without its records: what a sender writes around records it already
    holds as JSON (:meth:`batch_json`).

    Version 2 added the stock record kinds and may carry telemetry v2 (the multichannel machines' metrics);
    a v1 batch may carry neither."""

    schema_: Literal["edgehouse.sync_batch"] = Field("edgehouse.sync_batch", alias="schema")
    v: Literal[1, 2] = 2
    gateway_id: Ident
    batch_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    sent_ts: TsMs
    agent_version: Annotated[str, Field(min_length=1, max_length=32)]

    def batch_json(self, records_json: Iterable[str]) -> str:
        """The :class:`SyncBatch` JSON of this header and records already serialised as
        ``SyncRecord`` JSON (spliced, not parsed again: the sender validated each one)."""
        return self.model_dump_json(by_alias=True)[:-1] + ',"records":[' + ",".join(records_json) + "]}"


class SyncBatch(SyncBatchHeader):
    records: Annotated[tuple[SyncRecord, ...], *non_empty(MAX_BATCH_RECORDS)]

    @model_validator(mode="after")
    def _kinds_of_its_version(self) -> SyncBatch:
        if self.v < 2:
            newer = sorted({r.kind for r in self.records} & BATCH_V2_KINDS)
            if newer:
                raise ValueError(f"records of kind {', '.join(newer)} need sync batch v 2")
            if any(isinstance(r, TelemetryRecord) and r.msg.v >= 2 for r in self.records):
                raise ValueError("telemetry v2 records need sync_batch v 2")
        return self


class RejectedRecord(Frozen):
    id: RecordId
    reason: Annotated[str, Field(max_length=500)]


class SyncAck(Frozen):
    schema_: Literal["edgehouse.sync_ack"] = Field("edgehouse.sync_ack", alias="schema")
    v: Literal[1] = 1
    batch_id: str
    stored: tuple[RecordId, ...] = ()
    duplicates: tuple[RecordId, ...] = ()
    rejected: tuple[RejectedRecord, ...] = ()

    @property
    def settled(self) -> set[str]:
        """Ids the gateway may delete from its outbox (stored now or already stored)."""
        return set(self.stored) | set(self.duplicates)
