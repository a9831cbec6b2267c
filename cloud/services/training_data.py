"""Training data from the cloud store (queries in ``cloud.db.train_repo``) and its hold-out split.

* anomaly: one reading series per (device_id, metric), ordered by ``ts``; the hold-out is the last
  ``holdout_fraction`` of each series' time span.
* device_anomaly: one :class:`DeviceRun` per multichannel device: the readings of one message share
  its ``ts``, so the device's channels are its (device_id, metric) series joined on ``ts`` (the
  timestamps every channel has); channels with fewer than 3 distinct values (states, constants)
  are left out, as the gateway's scorer leaves them out, and a device keeps at most
  ``MAX_CHANNELS`` channels (the first by name); the hold-out is the last ``holdout_fraction`` of
  the run's time span.
* demand: daily units of one scan direction per (site, sku) as a :class:`DemandPanel` (columns
  ``"<site>/<sku>"``, one row per UTC day, promo flags zero: scans carry no promotions); the
  hold-out is the last ``holdout_days`` rows.

A scope is ``"fleet"`` (every gateway) or ``"site:<site>"`` (the gateways of one site).
Timestamps are milliseconds since the epoch; ranges are ``[from_ts, to_ts)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, Protocol, Self, TypeVar

import numpy as np
from sqlalchemy import Engine

from cloud.db import train_repo
from cloud.db.engine import reader
from models.demand_eval import DemandPanel

DAY_MS: Final = train_repo.DAY_MS
EPOCH: Final = date(1970, 1, 1)
SCOPE_PATTERN: Final = re.compile(r"^(fleet|site:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$")


def parse_scope(scope: str) -> str | None:
    """The site of a ``site:<site>`` scope, None for ``fleet``; ValueError for anything else."""
    if not SCOPE_PATTERN.match(scope):
        raise ValueError("must be 'fleet' or 'site:<site>'")
    return None if scope == "fleet" else scope.removeprefix("site:")


@dataclass(frozen=True, slots=True)
class ReadingSeries:
    device_id: str
    metric: str
    ts_ms: np.ndarray  # int64, ascending
    values: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def span(self) -> tuple[int, int]:
        return int(self.ts_ms[0]), int(self.ts_ms[-1])

    def where(self, mask: np.ndarray) -> ReadingSeries:
        return ReadingSeries(self.device_id, self.metric, self.ts_ms[mask], self.values[mask])


@dataclass(frozen=True, slots=True)
class SeriesSplit:
    """One series cut at ``cut_ts``: readings before it train, readings at or after it are held back."""

    train: ReadingSeries
    holdout: ReadingSeries
    cut_ts: int


def reading_series(engine: Engine, site: str | None = None, from_ts: int | None = None,
                   to_ts: int | None = None) -> list[ReadingSeries]:
    """Every (device_id, metric) series of the scope in ``[from_ts, to_ts)``, readings ordered by ts."""
    out: list[ReadingSeries] = []
    key: tuple[str, str] | None = None
    ts: list[int] = []
    values: list[float] = []

    def flush() -> None:
        if key is not None and ts:
            out.append(ReadingSeries(key[0], key[1], np.asarray(ts, np.int64), np.asarray(values, np.float64)))

    with reader(engine) as conn:
        for device_id, metric, t, v in train_repo.reading_rows(conn, site, from_ts, to_ts):
            if (device_id, metric) != key:
                flush()
                key, ts, values = (device_id, metric), [], []
            ts.append(int(t))
            values.append(float(v))
    flush()
    return out


def cut_ts(first: int, last: int, holdout_fraction: float) -> int:
    """Where a span ``[first, last]`` is cut: ``first + (1 - holdout_fraction) x (last - first)``, rounded up
    (a single timestamp: after it, nothing held back)."""
    cut = first + int(np.ceil((1.0 - holdout_fraction) * (last - first)))
    return last + 1 if cut <= first else cut


def split_series(series: list[ReadingSeries], holdout_fraction: float) -> list[SeriesSplit]:
    """Cut each series at ``first + (1 - holdout_fraction) * (last - first)`` of its time span."""
    return [SeriesSplit(train, holdout, cut) for train, holdout, cut in _cut_all(series, holdout_fraction)]


class _Timed(Protocol):
    ts_ms: np.ndarray

    def span(self) -> tuple[int, int]: ...

    def where(self, mask: np.ndarray) -> Self: ...


_T = TypeVar("_T", bound=_Timed)


def _cut_all(items: list[_T], holdout_fraction: float) -> list[tuple[_T, _T, int]]:
    """(training part, held-back part, cut) of each item, cut by :func:`cut_ts`."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError("holdout_fraction must be in (0, 1)")
    out = []
    for item in items:
        cut = cut_ts(*item.span(), holdout_fraction)
        before = item.ts_ms < cut
        out.append((item.where(before), item.where(~before), cut))
    return out


# ---------------------------------------------------------------------------------------------
# Device (multichannel) runs
# ---------------------------------------------------------------------------------------------

#: Channels per device run (the device network's fixed block: models.device_features.MAX_CHANNELS).
MAX_CHANNELS: Final = 8
#: A channel needs this many distinct values to be modelled (models.device_anomaly: min_distinct).
MIN_DISTINCT: Final = 3


@dataclass(frozen=True, slots=True)
class DeviceRun:
    device_id: str
    channels: tuple[str, ...]
    ts_ms: np.ndarray  # int64, ascending
    values: np.ndarray  # float64, (rows, channels)

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def span(self) -> tuple[int, int]:
        return int(self.ts_ms[0]), int(self.ts_ms[-1])

    def where(self, mask: np.ndarray) -> DeviceRun:
        return DeviceRun(self.device_id, self.channels, self.ts_ms[mask], self.values[mask])


def device_runs(series: list[ReadingSeries], min_channels: int = 3) -> list[DeviceRun]:
    """Join each device's reading series on their timestamps (one row per message holding every channel)."""
    by_device: dict[str, list[ReadingSeries]] = {}
    for s in series:
        if len(np.unique(s.values)) >= MIN_DISTINCT:
            by_device.setdefault(s.device_id, []).append(s)
    out = []
    for device_id in sorted(by_device):
        channels = sorted(by_device[device_id], key=lambda s: s.metric)[:MAX_CHANNELS]
        if len(channels) < min_channels:
            continue
        common = channels[0].ts_ms
        for s in channels[1:]:
            common = np.intersect1d(common, s.ts_ms, assume_unique=True)
        if len(common) == 0:
            continue
        cols = [s.values[np.searchsorted(s.ts_ms, common)] for s in channels]
        out.append(DeviceRun(device_id, tuple(s.metric for s in channels), common, np.stack(cols, axis=1)))
    return out


@dataclass(frozen=True, slots=True)
class RunSplit:
    train: DeviceRun
    holdout: DeviceRun
    cut_ts: int


def split_runs(runs: list[DeviceRun], holdout_fraction: float) -> list[RunSplit]:
    """Cut each run at ``first + (1 - holdout_fraction) * (last - first)`` of its time span."""
    return [RunSplit(train, holdout, cut) for train, holdout, cut in _cut_all(runs, holdout_fraction)]


# ---------------------------------------------------------------------------------------------
# Demand
# ---------------------------------------------------------------------------------------------


def daily_units(engine: Engine, direction: str, site: str | None = None, from_ts: int | None = None,
                to_ts: int | None = None) -> dict[tuple[str, str], dict[int, float]]:
    """Units of ``direction`` scans per (site, sku) per UTC day number (days since 1970-01-01)."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    with reader(engine) as conn:
        for row_site, sku, d, units in train_repo.daily_unit_rows(conn, direction, site, from_ts, to_ts):
            out.setdefault((row_site, sku), {})[int(d)] = float(units)
    return out


def demand_panel(engine: Engine, direction: str, site: str | None = None, from_ts: int | None = None,
                 to_ts: int | None = None) -> DemandPanel | None:
    """A daily panel of every (site, sku) from the first scanned day to the last complete day.

    The last row is the day before the one holding ``to_ts`` (the end of whole days), and never past
    the last day with a scan. Days without scans count 0 units. None when there is no scan at all."""
    per_series = daily_units(engine, direction, site, from_ts, to_ts)
    if not per_series:
        return None
    first = min(min(days) for days in per_series.values())
    end = max(max(days) for days in per_series.values()) + 1
    if to_ts is not None:
        end = min(end, to_ts // DAY_MS)
    if end <= first:
        return None
    keys = sorted(per_series)
    qty = np.zeros((end - first, len(keys)))
    for j, key in enumerate(keys):
        for d, units in per_series[key].items():
            if first <= d < end:
                qty[d - first, j] = units
    return DemandPanel(
        dates=tuple(EPOCH + timedelta(days=d) for d in range(first, end)),
        skus=tuple(f"{s}/{sku}" for s, sku in keys),
        qty=qty,
        promo=np.zeros_like(qty),
    )


def head_rows(panel: DemandPanel, rows: int) -> DemandPanel:
    """The first ``rows`` rows of ``panel`` (the training part when the rest is held back)."""
    return DemandPanel(dates=panel.dates[:rows], skus=panel.skus, qty=panel.qty[:rows].copy(),
                       promo=panel.promo[:rows].copy())


def day_start_ms(day: date) -> int:
    return (day - EPOCH).days * DAY_MS
