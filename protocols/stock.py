"""Stock kept by a gateway from the scans it committed: positions and cycle-count discrepancies.

A **position** is the stock on hand of one SKU at one location of a site, as one gateway's book
has it. Scans move it (``inbound`` +qty, ``pick`` and ``outbound`` -qty, :data:`STOCK_MOVES`); a
cycle count (``count``, scan schema v2) sets it. Order is device time (``ts``): a count says what
was on the shelf at its ``ts``, so a movement scanned before it (``ts`` ≤ the count's) is already
in it however late it arrives, and one scanned after it moves the counted quantity. Counts are
ordered by ``(ts, device_id, boot_id, seq)``. The book is therefore the same whatever order the
scans arrive in:

    on_hand = counted qty of the latest count + sum of the movements after it
              (no count yet: the sum of every movement; stock starts at 0)

A **discrepancy** is recorded per count: ``expected`` is what the book held at the count's ``ts``
(the previous count plus the movements between the two), ``delta = counted - expected``.

Both are versioned state, synced as records whose ids derive from their content: a position's
``version`` grows with every committed change (the cloud keeps the highest), a discrepancy's
``revision`` grows when a late movement changes what was expected at that count.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocols.messages import COUNT_DIRECTION, STOCK_MOVES, BootId, Frozen, Ident, TsMs

Sku = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
StockLocation = Annotated[str, Field(min_length=1, max_length=64)]
#: A position can go below zero (picks nobody booked in): flagged, never clipped.
Units = Annotated[int, Field(ge=-(2**53 - 1), le=2**53 - 1)]
Version = Annotated[int, Field(ge=1, le=2**53 - 1)]


def position_key(site: str, location: str, sku: str) -> str:
    """A short, stable digest of a position (a location may hold any character; ids may not)."""
    raw = json.dumps([site, location, sku], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def stock_record_id(site: str, location: str, sku: str, version: int) -> str:
    """Sync record id of one version of a position."""
    return f"stock:{site}:{position_key(site, location, sku)}:{version}"


def discrepancy_record_id(device_id: str, boot_id: str, seq: int, revision: int) -> str:
    """Sync record id of one revision of the discrepancy of the count scan (device_id, boot_id, seq)."""
    return f"stock_discrepancy:{device_id}:{boot_id}:{seq}:{revision}"


class StockPosition(Frozen):
    """One version of a position; published on ``…/gw/{id}/stock`` and synced."""

    schema_: Literal["edgehouse.stock_position"] = Field("edgehouse.stock_position", alias="schema")
    v: Literal[1] = 1
    gateway_id: Ident
    site: Ident
    location: StockLocation
    sku: Sku
    on_hand: Units
    negative: bool = Field(description="on_hand < 0: more was picked than the book knew of")
    version: Version
    last_scan_ts: TsMs = Field(description="device clock of the newest scan that changed the position")
    updated_ts: TsMs = Field(description="gateway clock of this version")
    count_ts: TsMs | None = Field(default=None, description="device clock of the latest cycle count applied")
    stock_out: bool = Field(default=False, description="a stock-out alert is open (picks at zero stock)")

    @model_validator(mode="after")
    def _flag_matches(self) -> StockPosition:
        if self.negative != (self.on_hand < 0):
            raise ValueError("negative must be true exactly when on_hand < 0")
        return self


class StockDiscrepancy(Frozen):
    """What one cycle count found against the book (one revision of it)."""

    schema_: Literal["edgehouse.stock_discrepancy"] = Field("edgehouse.stock_discrepancy", alias="schema")
    v: Literal[1] = 1
    gateway_id: Ident
    site: Ident
    location: StockLocation
    sku: Sku
    device_id: Ident
    boot_id: BootId
    seq: Annotated[int, Field(ge=0, le=2**53 - 1)]
    ts: TsMs = Field(description="the count's device clock")
    counted: Annotated[int, Field(ge=0, le=100_000)]
    expected: Units = Field(description="the book at ts: the previous count plus the movements since")
    delta: Units = Field(description="counted - expected (negative: shrinkage)")
    revision: Version
    updated_ts: TsMs

    @model_validator(mode="after")
    def _delta(self) -> StockDiscrepancy:
        if self.delta != self.counted - self.expected:
            raise ValueError("delta must equal counted - expected")
        return self


__all__ = [
    "COUNT_DIRECTION",
    "STOCK_MOVES",
    "StockDiscrepancy",
    "StockPosition",
    "discrepancy_record_id",
    "position_key",
    "stock_record_id",
]
