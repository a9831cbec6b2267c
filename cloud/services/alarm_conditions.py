"""Which alert records are about the same condition, and how an alarm's ISA-18.2 state follows. Pure.

Gateways sync every raise and every clear as its own alert record. An alarm (a raise) is *active*
until a clear of the same condition from the same gateway arrives with a time at or after it:

* anomaly alerts: the same device and metric (the edge's hysteresis clears per stream);
* alerts whose id ends in ``.raised`` / ``.cleared`` (system alerts, e.g. the disk quota): the same stem;
* anything else (a kind this cloud does not know yet) is its own condition: active until acknowledged
  and shelved or cleared by a later record of the same id stem.

ISA-18.2 states of an alarm: ``unack_active`` (new), ``ack_active``, ``unack_cleared`` (returned to
normal unacknowledged), ``normal`` (cleared and acknowledged), and ``shelved`` on top of any of them
while ``shelved_until`` is in the future (it returns by itself when that time passes).
"""

from __future__ import annotations

from typing import Any, Final, Literal

CONDITION_MAX: Final = 300
IsaState = Literal["unack_active", "ack_active", "unack_cleared", "normal"]
ISA_STATES: Final[tuple[str, ...]] = ("unack_active", "ack_active", "unack_cleared", "normal")
#: The flood indicator (ISA-18.2's benchmark): more than this many alarms in 10 minutes per site is a flood.
FLOOD_WINDOW_MS: Final = 10 * 60 * 1000
FLOOD_LIMIT: Final = 10


def condition(alert_id: str, kind: str, device_id: str | None, metric: Any) -> str:
    """The condition an alert record raises or clears (see the module doc)."""
    for suffix in (".raised", ".cleared"):
        if alert_id.endswith(suffix):
            return f"id|{alert_id[:-len(suffix)]}"[:CONDITION_MAX]
    if kind == "anomaly" and device_id is not None and metric is not None:
        return f"anomaly|{device_id}|{metric}"[:CONDITION_MAX]
    return f"{kind}|{device_id or ''}|{metric or ''}|{alert_id}"[:CONDITION_MAX]


def isa_state(cleared: bool, acked: bool) -> IsaState:
    if cleared:
        return "normal" if acked else "unack_cleared"
    return "ack_active" if acked else "unack_active"


def shelved(shelved_until: int | None, now_ms: int) -> bool:
    return shelved_until is not None and shelved_until > now_ms
