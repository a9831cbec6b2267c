"""``Range: bytes=…`` requests over an in-memory artifact (one range; RFC 9110 semantics)."""

from __future__ import annotations

import re
from typing import Final

_SINGLE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ValueError):
    """The range lies outside the resource (answer 416 with ``Content-Range: bytes */size``)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single range, or None to send the whole body.

    ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (the last n bytes) are understood; a header we
    cannot parse (or several ranges) is ignored, as the RFC allows. Raises
    :class:`RangeNotSatisfiable` when the range starts at or past the end.
    """
    if header is None:
        return None
    match = _SINGLE.match(header.strip().replace(" ", ""))
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first_s, last_s = match.groups()
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
