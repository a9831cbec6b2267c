"""The compact sync encoding (content type :data:`CONTENT_TYPE`, version :data:`VERSION`): a SyncBatch as columns.

A second encoding of exactly the records of the :class:`~protocols.sync.SyncBatch` a gateway would send as JSON,
for thin, metered links. The records are grouped by shape (the same leaf fields; device records device by device, in sequence,
within their group); each group stores
its records column by column: a constant once (``c``), integers delta-coded (``d``), decimals as delta-coded
scaled integers (``f`` + ``d``), strings with few distinct values as a dictionary (``k`` + ``i``), strings of one
width as one string (``w`` + ``s``; random hex ids as their bytes in base64, ``w`` + ``b64``), anything else as a
plain list (``l``). A record whose ``id`` is its ``content_id`` does not carry the id (``ids: "derived"``).
Groups of records the gateway produced (alerts, forecasts) list their places in the batch (``at``): they
decode in the order sent (a raise before its clear); device records fill the other places group by group (their
order within a batch means nothing: each is stored once by id). The document is JSON, sent compressed
(``Content-Encoding: gzip``, or ``zstd`` where both ends have it).

Document::

    {"schema": "edgehouse.sync_columnar", "v": 1,
     "batch": {<SyncBatchHeader fields>},
     "groups": [{"n": 3, "ids": "derived",
                 "paths": [["kind"], ["msg", "seq"], ["msg", "body", "readings", 0, "value"], ...],
                 "cols": [{"c": "telemetry"}, {"d": [41, 1, 1]}, {"f": 2, "d": [412, -3, 5]}, ...]},
                {"n": 1, "at": {"d": [1]}, "ids": "derived", "paths": [...], "cols": [...]}]}

Negotiation (HTTP): a cloud that takes this encoding lists :data:`CONTENT_TYPE` in the ``Accept-Post`` header
of its sync answers (and the codings it decodes in ``Accept-Encoding``); an agent sends JSON until it has
seen that, and again after a 415. :func:`decode` rebuilds the SyncBatch JSON, which the receiver validates
as strictly as a JSON batch; a malformed document raises :class:`ColumnarError` naming the field.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from protocols.sync import MAX_BATCH_RECORDS, SyncBatchHeader, own_record_id, record_id

CONTENT_TYPE: Final = "application/vnd.edgehouse.sync-columnar+json"
SCHEMA: Final = "edgehouse.sync_columnar"
VERSION: Final = 1
#: Leaf fields per record at most (a telemetry record of 16 readings has about 45).
MAX_LEAVES: Final = 256
_MAX_DECIMALS: Final = 6
_HEX: Final = re.compile(r"[0-9a-f]+")
_MAX_EXACT: Final = 2**53
_DEVICE_KINDS: Final = frozenset({"telemetry", "scan", "device_status"})
_OWN_ID_FIELDS: Final = {"alert": "alert_id", "forecast": "forecast_id"}

Segment = str | int
Leaf = Any


class ColumnarError(ValueError):
    """A columnar document that cannot be decoded; ``field`` is the dotted path of the offending part."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# ----------------------------------------------------------------------------------------- encode


def _flatten(value: Any, prefix: tuple[Segment, ...], out: dict[tuple[Segment, ...], Leaf]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, (*prefix, key), out)
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            _flatten(item, (*prefix, index), out)
    else:
        out[prefix] = value


def _derived_id(record: dict[str, Any]) -> str | None:
    """The id a record of a known kind carries by construction, or None."""
    kind = record.get("kind")
    if not isinstance(kind, str):  # e.g. [] (a leaf may be an empty array): no id, and no TypeError
        return None
    if kind in _DEVICE_KINDS:
        msg = record.get("msg")
        if isinstance(msg, dict):
            device, boot, seq = msg.get("device_id"), msg.get("boot_id"), msg.get("seq")
            if isinstance(device, str) and isinstance(boot, str) and type(seq) is int:
                return record_id(str(kind), device, boot, seq)
        return None
    field = _OWN_ID_FIELDS.get(str(kind))
    if field is not None:
        payload = record.get(str(kind))
        own = payload.get(field) if isinstance(payload, dict) else None
        return own_record_id(str(kind), own) if isinstance(own, str) else None
    return None


def _deltas(values: Sequence[int]) -> list[int]:
    return [values[0], *(b - a for a, b in itertools.pairwise(values))]


def _decimals(values: Sequence[float]) -> int | None:
    for k in range(_MAX_DECIMALS + 1):
        scale = 10**k
        if all(abs(v) * scale < _MAX_EXACT and round(v * scale) / scale == v for v in values):
            return k
    return None


def _json_len(col: dict[str, Any]) -> int:
    return len(json.dumps(col, separators=(",", ":")))


def _strings(values: list[Leaf]) -> dict[str, Any] | None:
    """A dictionary (few distinct values) or fixed-width (one string of them all) column, or None."""
    if not all(type(v) is str for v in values):
        return None
    distinct = list(dict.fromkeys(values))
    if len(distinct) <= max(1, len(values) // 4):
        index = {v: i for i, v in enumerate(distinct)}
        return {"k": distinct, "i": [index[v] for v in values]}
    width = len(values[0])
    if width >= 2 and all(len(v) == width for v in values):
        joined = "".join(values)
        if width % 2 == 0 and _HEX.fullmatch(joined):  # random ids: their bytes, base64 (entropy coders do better)
            return {"w": width, "b64": base64.b64encode(bytes.fromhex(joined)).decode()}
        return {"w": width, "s": joined}
    return None


def _column(values: list[Leaf]) -> dict[str, Any]:
    first = values[0]
    if all(type(v) is type(first) and v == first for v in values):
        return {"c": first}
    if all(type(v) is int for v in values):
        return {"d": _deltas(values)}
    if all(type(v) is float for v in values):
        k = _decimals(values)
        if k is not None:
            return {"f": k, "d": _deltas([round(v * 10**k) for v in values])}
    strings = _strings(values)
    plain = {"l": values}
    return strings if strings is not None and _json_len(strings) < _json_len(plain) else plain


def _device_order(leaves: dict[tuple[Segment, ...], Leaf]) -> tuple[str, str, int]:
    seq = leaves.get(("msg", "seq"))
    return str(leaves.get(("msg", "device_id"))), str(leaves.get(("msg", "boot_id"))), seq if type(seq) is int else -1


def encode(header: SyncBatchHeader, records_json: Iterable[str]) -> bytes:
    """The columnar document (uncompressed JSON bytes) of the batch ``header`` + these SyncRecord JSONs."""
    groups: dict[tuple[Any, ...], tuple[list[int], list[dict[tuple[Segment, ...], Leaf]]]] = {}
    for position, text in enumerate(records_json):
        record = json.loads(text)
        derived = _derived_id(record) == record.get("id")
        if derived:
            record = {k: v for k, v in record.items() if k != "id"}
        leaves: dict[tuple[Segment, ...], Leaf] = {}
        _flatten(record, (), leaves)
        device = isinstance(record.get("msg"), dict) and record.get("kind") in _DEVICE_KINDS
        positions, rows = groups.setdefault((derived, device, tuple(leaves)), ([], []))
        positions.append(position)
        rows.append(leaves)
    for (_, device, _), (_, rows) in groups.items():
        if device:  # one group per shape, its rows device by device in sequence: short deltas, few groups
            rows.sort(key=_device_order)
    doc = {
        "schema": SCHEMA,
        "v": VERSION,
        "batch": header.model_dump(mode="json", by_alias=True),
        "groups": [
            {
                "n": len(rows),
                **({} if device else {"at": {"d": _deltas(positions)}}),
                "ids": "derived" if derived else "column",
                "paths": [list(path) for path in paths],
                "cols": [_column([row[path] for row in rows]) for path in paths],
            }
            for (derived, device, paths), (positions, rows) in groups.items()
        ],
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


# ----------------------------------------------------------------------------------------- decode


def _int_list(value: Any, n: int, field: str) -> list[int]:
    if not isinstance(value, list) or len(value) != n:
        raise ColumnarError(f"needs a list of {n} integers", field)
    if not all(type(v) is int for v in value):
        raise ColumnarError("needs integers only", field)
    return list(itertools.accumulate(value))


def _json_size(value: Any) -> int:
    """``len(json.dumps(value))``, without the call for the plain strings and integers of most columns."""
    if type(value) is str and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return len(value) + 2
    if type(value) is int:
        return len(repr(value))
    return len(json.dumps(value))


def _decode_column(col: Any, n: int, field: str) -> tuple[list[Leaf], int]:
    """The column's values and an estimate of their JSON size (constants count once per record)."""
    if not isinstance(col, dict) or len(col) not in (1, 2):
        raise ColumnarError("a column is an object with one of c, d, f+d, k+i, w+s, w+b64, l", field)
    shape = col.keys()
    if shape == {"c"}:
        value = col["c"]
        if isinstance(value, dict | list) and value:
            _leaf(value, f"{field}.c")
        return [value] * n, n * _json_size(value)
    if shape == {"d"}:
        return _int_list(col["d"], n, f"{field}.d"), 0
    if shape == {"f", "d"}:
        k = col["f"]
        if type(k) is not int or not 0 <= k <= _MAX_DECIMALS:
            raise ColumnarError(f"needs an integer 0 to {_MAX_DECIMALS}", f"{field}.f")
        scale = 10**k
        return [i / scale for i in _int_list(col["d"], n, f"{field}.d")], 0
    if shape == {"k", "i"}:
        keys, indexes = col["k"], col["i"]
        if not isinstance(keys, list) or not keys or len(keys) > n:
            raise ColumnarError(f"needs a list of 1 to {n} values", f"{field}.k")
        for i, value in enumerate(keys):
            if isinstance(value, dict | list) and value:
                _leaf(value, f"{field}.k.{i}")
        n_keys = len(keys)
        if not isinstance(indexes, list) or len(indexes) != n or not all(
            type(i) is int and 0 <= i < n_keys for i in indexes
        ):
            raise ColumnarError(f"needs {n} indexes into k", f"{field}.i")
        sizes = [_json_size(v) for v in keys]
        return [keys[i] for i in indexes], sum(map(sizes.__getitem__, indexes))
    if shape == {"w", "s"}:
        width, joined = col["w"], col["s"]
        if type(width) is not int or not 2 <= width <= 4096:
            raise ColumnarError("needs a width of 2 to 4096", f"{field}.w")
        if not isinstance(joined, str) or len(joined) != width * n:
            raise ColumnarError(f"needs a string of {width} x {n} characters", f"{field}.s")
        return [joined[i : i + width] for i in range(0, len(joined), width)], 0
    if shape == {"w", "b64"}:
        width, packed = col["w"], col["b64"]
        if type(width) is not int or not 2 <= width <= 4096 or width % 2:
            raise ColumnarError("needs an even width of 2 to 4096", f"{field}.w")
        try:
            joined = base64.b64decode(packed, validate=True).hex() if isinstance(packed, str) else ""
        except ValueError:
            joined = ""
        if len(joined) != width * n:
            raise ColumnarError(f"needs the base64 of {width // 2} x {n} bytes", f"{field}.b64")
        return [joined[i : i + width] for i in range(0, len(joined), width)], 0
    if shape == {"l"}:
        values = col["l"]
        if not isinstance(values, list) or len(values) != n:
            raise ColumnarError(f"needs a list of {n} values", f"{field}.l")
        for i, value in enumerate(values):
            if isinstance(value, dict | list) and value:
                _leaf(value, f"{field}.l.{i}")
        return values, 0
    raise ColumnarError(f"unknown column encoding {sorted(col)}", field)


def _leaf(value: Any, field: str) -> None:
    if isinstance(value, dict | list) and value:
        raise ColumnarError("a leaf value may not be a non-empty object or array", field)


def _path(value: Any, field: str) -> tuple[Segment, ...]:
    if not isinstance(value, list) or not value or len(value) > 16:
        raise ColumnarError("a path is a list of 1 to 16 segments", field)
    for seg in value:
        if not (isinstance(seg, str) and 0 < len(seg) <= 64) and not (type(seg) is int and 0 <= seg < 256):
            raise ColumnarError("a segment is a field name or an array index", field)
    if not isinstance(value[0], str):
        raise ColumnarError("a record is an object: the first segment is a field name", field)
    return tuple(value)


def _nest(pairs: Iterable[tuple[tuple[Segment, ...], Leaf]], field: str) -> dict[str, Any]:
    root: dict[Segment, Any] = {}
    for path, value in pairs:
        node = root
        for seg in path[:-1]:
            child = node.setdefault(seg, {})
            if not isinstance(child, dict):
                raise ColumnarError(f"path {list(path)} runs through a leaf", field)
            node = child
        if path[-1] in node:
            raise ColumnarError(f"path {list(path)} given twice or inside another", field)
        node[path[-1]] = value
    out = _listify(root, field)
    assert isinstance(out, dict)
    return out


def _listify(node: Any, field: str) -> Any:
    if not isinstance(node, dict) or not node:
        return node
    keys = list(node)
    if all(type(k) is int for k in keys):
        if sorted(keys) != list(range(len(keys))):
            raise ColumnarError("array indexes must run 0, 1, 2 ... without a gap", field)
        return [_listify(node[i], field) for i in range(len(keys))]
    if not all(isinstance(k, str) for k in keys):
        raise ColumnarError("an object's fields mix names and array indexes", field)
    return {k: _listify(v, field) for k, v in node.items()}


def group_columns(group: Any, field: str, budget: int
                  ) -> tuple[list[int] | None, list[tuple[Segment, ...]], list[list[Leaf]], int]:
    """A group's places (None for device records), paths and decoded columns, and the size budget left;
    raise :class:`ColumnarError` as :func:`decode` does (the cloud's column-wise path reads groups with it)."""
    if not isinstance(group, dict) or set(group) - {"at"} != {"n", "ids", "paths", "cols"}:
        raise ColumnarError("a group has exactly n, ids, paths, cols and maybe at", field)
    n = group["n"]
    if type(n) is not int or not 1 <= n <= MAX_BATCH_RECORDS:
        raise ColumnarError(f"needs an integer 1 to {MAX_BATCH_RECORDS}", f"{field}.n")
    positions: list[int] | None = None
    if "at" in group:
        at = group["at"]
        if not isinstance(at, dict) or set(at) != {"d"}:
            raise ColumnarError("needs {'d': [...]}", f"{field}.at")
        positions = _int_list(at["d"], n, f"{field}.at.d")
    if group["ids"] not in ("derived", "column"):
        raise ColumnarError("needs 'derived' or 'column'", f"{field}.ids")
    paths_doc, cols = group["paths"], group["cols"]
    if not isinstance(paths_doc, list) or not 1 <= len(paths_doc) <= MAX_LEAVES:
        raise ColumnarError(f"needs 1 to {MAX_LEAVES} paths", f"{field}.paths")
    if not isinstance(cols, list) or len(cols) != len(paths_doc):
        raise ColumnarError(f"needs one column per path ({len(paths_doc)})", f"{field}.cols")
    paths = [_path(p, f"{field}.paths.{i}") for i, p in enumerate(paths_doc)]
    columns = []
    for i, col in enumerate(cols):
        values, size = _decode_column(col, n, f"{field}.cols.{i}")
        budget -= size
        if budget < 0:
            raise ColumnarError("the batch expands beyond the size limit", f"{field}.cols.{i}")
        columns.append(values)
    return positions, paths, columns, budget


def group_records(group: dict[str, Any], paths: list[tuple[Segment, ...]], columns: list[list[Leaf]],
                  field: str) -> list[dict[str, Any]]:
    """The records of a group read by :func:`group_columns`, as their SyncRecord dicts."""
    records = []
    for r in range(group["n"]):
        record = _nest(((path, col[r]) for path, col in zip(paths, columns, strict=True)), field)
        if group["ids"] == "derived":
            rid = _derived_id(record)
            if rid is None:
                raise ColumnarError("ids 'derived' but a record's id cannot be derived", f"{field}.ids")
            record = {"kind": record.get("kind"), "id": rid, **{k: v for k, v in record.items() if k != "kind"}}
        records.append(record)
    return records


def _decode_group(group: Any, field: str, budget: int) -> tuple[list[int] | None, list[dict[str, Any]], int]:
    positions, paths, columns, budget = group_columns(group, field, budget)
    return positions, group_records(group, paths, columns, field), budget


def decode(document: bytes, max_expanded_bytes: int) -> bytes:
    """The SyncBatch JSON of a columnar document (to validate as any JSON batch); raise :class:`ColumnarError`."""
    try:
        doc = json.loads(document)
    except (ValueError, RecursionError) as exc:
        raise ColumnarError(f"not JSON: {exc}", "body") from None
    if not isinstance(doc, dict) or set(doc) != {"schema", "v", "batch", "groups"}:
        raise ColumnarError("the document has exactly schema, v, batch, groups", "body")
    if doc["schema"] != SCHEMA:
        raise ColumnarError(f"needs {SCHEMA!r}", "schema")
    if doc["v"] != VERSION or type(doc["v"]) is not int:
        raise ColumnarError(f"version {doc['v']!r} is not supported (this cloud takes v {VERSION})", "v")
    header, groups = doc["batch"], doc["groups"]
    if not isinstance(header, dict) or "records" in header:
        raise ColumnarError("needs the batch header fields (no records)", "batch")
    if not isinstance(groups, list) or not groups:
        raise ColumnarError("needs at least one group", "groups")
    total = sum(g["n"] for g in groups if isinstance(g, dict) and type(g.get("n")) is int)
    if total > MAX_BATCH_RECORDS:
        raise ColumnarError(f"{total} records exceed {MAX_BATCH_RECORDS}", "groups")
    placed: dict[int, dict[str, Any]] = {}
    unplaced: list[dict[str, Any]] = []
    budget = max_expanded_bytes - len(document)
    for g, group in enumerate(groups):
        positions, records, budget = _decode_group(group, f"groups.{g}", budget)
        if positions is None:  # device records: they fill the places left, in group order
            unplaced.extend(records)
            continue
        for position, record in zip(positions, records, strict=True):
            if position in placed or not 0 <= position < total:
                raise ColumnarError(f"position {position} repeated or outside 0..{total - 1}", f"groups.{g}.at")
            placed[position] = record
    rest = iter(unplaced)
    batch = {**header, "records": [placed[i] if i in placed else next(rest) for i in range(total)]}
    return json.dumps(batch, separators=(",", ":"), allow_nan=False).encode()
