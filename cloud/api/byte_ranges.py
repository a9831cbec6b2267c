"""``Range: bytes=…`` requests over an in-memory artifact (one range; RFC 9110 semantics)."""

from __future__ import annotations

import re
from typing import Final

_SINGLE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")
#: Byte positions past int64 name no real resource; they are refused before int() sees them
#: (Python refuses to convert strings of more than 4,300 digits).
_MAX_DIGITS: Final = 19
_MAX_POS: Final = 2**63 - 1


class RangeNotSatisfiable(ValueError):
    """The range lies outside the resource (answer 416 with ``Content-Range: bytes */size``)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single range, or None to send the whole body.

    ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (the last n bytes) are understood; a header we
    cannot parse (or several ranges) is ignored, as the RFC allows. Raises
    :class:`RangeNotSatisfiable` when the range starts at or past the end, or names a byte
    position beyond int64 (no artifact is that large).
    """
    if header is None:
        return None
    match = _SINGLE.match(header.strip().replace(" ", ""))
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first_s, last_s = (_significant(d) for d in match.groups())
    for digits in (first_s, last_s):
        if len(digits) > _MAX_DIGITS or (digits and int(digits) > _MAX_POS):
            raise RangeNotSatisfiable(header[:64])
    if not first_s:  # suffix: the last n bytes
        n = int(last_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    first = int(first_s)
    last = size - 1 if not last_s else min(int(last_s), size - 1)
    if last_s and int(last_s) < first:
        return None  # syntactically invalid: ignore
    if first >= size:
        raise RangeNotSatisfiable(header)
    return first, last


def _significant(digits: str) -> str:
    """``digits`` without leading zeros ("0" stays "0"; "" stays "")."""
    return digits.lstrip("0") or digits[:1]
