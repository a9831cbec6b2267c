"""What the sync worker writes around outbox records: the batch header (its version), the alert for records
the cloud refused, and the reading of ``Retry-After``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Final

import httpx

from edge_agent import __version__
from edge_agent.store.outbox import OutboxRow
from protocols import SYNC_REJECTED, AlertPayload, SyncBatchHeader, batch_version

#: How a device message of version 2 or later starts inside its outbox record (written by pydantic from
#: ``protocols`` models, whose first message field is ``v``): read without parsing the record again.
_NEWER_MESSAGE: Final = re.compile(r'"msg":\{"v":(?:[2-9]|\d\d)')


def newer_message(row: OutboxRow) -> bool:
    """Whether the row carries a device message a v1 batch cannot (telemetry v2: the multichannel machines)."""
    return row.kind == "telemetry" and _NEWER_MESSAGE.search(row.payload, 0, 200) is not None


def batch_header(gateway_id: str, batch_id: str, rows: Sequence[OutboxRow], sent_ts: int) -> SyncBatchHeader:
    """The header of a batch of ``rows``: the lowest batch version that carries them."""
    return SyncBatchHeader(
        v=batch_version((r.kind for r in rows), any(newer_message(r) for r in rows)),
        gateway_id=gateway_id,
        batch_id=batch_id,
        sent_ts=sent_ts,
        agent_version=__version__,
    )


def rejected_alert(gateway_id: str, now_ms: int, rejected: Sequence[tuple[str, str]]) -> AlertPayload:
    """The system alert raised when records were set aside in ``sync_rejected``."""
    first_id, first_reason = rejected[0]
    return AlertPayload(
        alert_id=f"sync-rejected.{gateway_id}.{now_ms}.{uuid.uuid4().hex[:8]}",
        gateway_id=gateway_id,
        kind="system",
        state="raised",
        severity="warning",
        ts=now_ms,
        message=f"{len(rejected)} records rejected by the cloud (kept in sync_rejected); "
        f"first {first_id}: {first_reason}"[:500],
        code=SYNC_REJECTED,
    )


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form), None when absent or not a number."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
