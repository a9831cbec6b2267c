"""Rows out as CSV, a JSON array or NDJSON (one object a line), streamed.

A BLOB (a dead letter's raw payload) is written as its text when it is UTF-8, else base64: in
JSON as ``{"$base64": true, "encoded": "…"}`` (sqlite-utils' own convention), in CSV as
``base64:…``.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal, TextIO

Format = Literal["csv", "json", "ndjson"]
FORMATS: Final = ("csv", "json", "ndjson")


def _value(value: Any, for_json: bool) -> Any:
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        encoded = base64.b64encode(value).decode("ascii")
        return {"$base64": True, "encoded": encoded} if for_json else f"base64:{encoded}"


def write_rows(rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: Format, out: TextIO) -> int:
    """Write ``rows`` to ``out`` in ``fmt``; return how many were written."""
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _value(v, False) for k, v in row.items()})
            n += 1
        return n
    if fmt == "ndjson":
        for row in rows:
            out.write(json.dumps({k: _value(v, True) for k, v in row.items()}, ensure_ascii=False) + "\n")
            n += 1
        return n
    if fmt != "json":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out.write("[")
    for row in rows:
        out.write(",\n " if n else "\n ")
        out.write(json.dumps({k: _value(v, True) for k, v in row.items()}, ensure_ascii=False))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n
