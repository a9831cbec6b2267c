"""Read a NAB-layout directory (data/<category>/<file>.csv + labels/combined_windows.json)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class NabSeries:
    name: str  # "<category>/<file>.csv"
    ts_ms: np.ndarray  # int64
    values: np.ndarray  # float64
    windows: tuple[tuple[int, int], ...]  # row indices, inclusive


def _parse_ts(text: str) -> int:
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return int(datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC).timestamp() * 1000)


def read_series(path: Path, name: str, windows: list[list[str]]) -> NabSeries:
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected header timestamp,value")
        for row in reader:
            if row:
                stamps.append(row[0].strip())
                values.append(float(row[1]))
    first_row: dict[int, int] = {}
    ts = np.empty(len(stamps), dtype=np.int64)
    for i, s in enumerate(stamps):
        ts[i] = _parse_ts(s)
        first_row.setdefault(int(ts[i]), i)
    rows = []
    for start, end in windows:
        s_ms, e_ms = _parse_ts(start), _parse_ts(end)
        if s_ms not in first_row or e_ms not in first_row:
            raise ValueError(f"{name}: window {start}..{end} does not match a timestamp in the file")
        rows.append((first_row[s_ms], first_row[e_ms]))
    return NabSeries(name=name, ts_ms=ts, values=np.asarray(values, dtype=np.float64), windows=tuple(rows))


def read_corpus(root: Path) -> list[NabSeries]:
    """Every CSV under root/data, with its windows (files absent from the windows file get none)."""
    windows_path = root / "labels" / "combined_windows.json"
    windows: dict[str, list[list[str]]] = json.loads(windows_path.read_text(encoding="utf-8"))
    data = root / "data"
    out = []
    for path in sorted(data.rglob("*.csv")):
        name = path.relative_to(data).as_posix()
        out.append(read_series(path, name, windows.get(name, [])))
    if not out:
        raise FileNotFoundError(f"no CSV files under {data}")
    return out
