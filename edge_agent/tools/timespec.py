"""``--since`` / ``--until`` values: epoch milliseconds, ISO 8601, or a duration ago (``90m``, ``7d``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from edge_agent.clock import now_ms

_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
#: Below this an integer is taken as epoch seconds, not milliseconds (year 2001 in ms).
_EPOCH_MS_MIN: Final = 10**12


class TimeSpecError(ValueError):
    """A time filter that cannot be read; the message shows the accepted forms."""


def parse_time(value: str, now: int | None = None) -> int:
    """Epoch ms of ``value``.

    ``1764748800000`` (ms) or ``1764748800`` (s); ``2026-12-03``, ``2026-12-03T08:00`` or
    ``2026-12-03T08:00:00+01:00`` (no offset: UTC); ``30s``, ``90m``, ``6h``, ``7d``, ``2w``: that
    long before now.
    """
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        n = int(text)
        return n if n >= _EPOCH_MS_MIN else n * 1000
    m = _DURATION.match(text)
    if m:
        base = now_ms() if now is None else now
        return base - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    try:
        parsed = datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z
    except ValueError:
        raise TimeSpecError(
            f"{value[:60]!r}: give epoch ms, an ISO 8601 time (2026-12-03T08:00Z) or a duration ago (90m, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso(ts_ms: int | None) -> str:
    """An epoch-ms value as an ISO 8601 UTC time (``-`` for None)."""
    if ts_ms is None:
        return "-"
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
