"""Runs for bench/multichannel.py: labelled multichannel CSV files, or simulated pump runs.

A run is one device: a time column, numeric channels and a 0/1 ``anomaly`` label per row; its
first ``WARMUP`` rows are normal and serve only as that run's warm-up.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from firmware_sim import Fleet
from firmware_sim.generator import simulate

WARMUP = 400
TIME_COLUMNS = ("time", "timestamp", "ts", "datetime", "date")
#: Pump fault kinds with their (shortest, longest) duration in hours (firmware_sim/devices/pump.py).
PUMP_FAULTS = {"cavitation": (0.5, 4.0), "valve_closure": (0.3, 2.0), "rotor_imbalance": (2.0, 12.0)}
#: Seeds whose runs chose the design (threshold); the default runs use others (held out).
TUNING_SEEDS = (1, 2, 3, 4, 5, 6, 7, 8)
HELD_OUT_SEEDS = (1001, 1002, 1003, 1004)


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    kind: str
    channels: tuple[str, ...]
    ts_ms: np.ndarray  # (T,) int64
    values: np.ndarray  # (T, C) float64
    labels: np.ndarray  # (T,) bool

    def to_csv(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["time", *self.channels, "anomaly"])
            for t, row, lab in zip(self.ts_ms, self.values, self.labels, strict=True):
                w.writerow([int(t), *(repr(float(v)) for v in row), int(lab)])


def _parse_time(texts: list[str]) -> np.ndarray:
    try:
        nums = np.array([float(t) for t in texts])
        # seconds or milliseconds since the epoch, or a plain counter
        return (nums * (1000.0 if nums.max() < 1e11 else 1.0)).astype(np.int64)
    except ValueError:
        pass
    try:
        return np.array([int(datetime.fromisoformat(t).timestamp() * 1000) for t in texts], dtype=np.int64)
    except ValueError:
        return np.arange(len(texts), dtype=np.int64) * 1000


def load_csv(path: Path) -> Run:
    """One CSV run: the time column by name (else the first column), every other numeric column a
    channel, ``anomaly`` the label. Rows with a missing channel value keep the previous one."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise ValueError(f"{path}: no rows")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    if "anomaly" not in lower:
        raise ValueError(f"{path}: no 'anomaly' column")
    label_i = lower.index("anomaly")
    time_i = next((lower.index(n) for n in TIME_COLUMNS if n in lower), 0)
    body = [r for r in rows[1:] if len(r) == len(header)]
    chan_idx = []
    for i in range(len(header)):
        if i in (label_i, time_i):
            continue
        try:
            [float(r[i]) for r in body[:50] if r[i].strip()]
        except ValueError:
            continue
        chan_idx.append(i)
    values = np.full((len(body), len(chan_idx)), np.nan)
    for j, i in enumerate(chan_idx):
        col = [r[i].strip() for r in body]
        values[:, j] = [float(v) if v else np.nan for v in col]
        last = np.nan
        for k in range(len(body)):  # carry the last value forward over gaps
            if np.isnan(values[k, j]):
                values[k, j] = last
            last = values[k, j]
    values = np.where(np.isnan(values), np.nanmedian(values[:WARMUP], axis=0), values)
    labels = np.array([float(r[label_i] or 0) > 0.5 for r in body])
    ts = _parse_time([r[time_i] for r in body])
    return Run(path.stem, "csv", tuple(header[i] for i in chan_idx), ts, values, labels)


def load_dir(folder: Path) -> list[Run]:
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise ValueError(f"{folder}: no .csv files")
    return [load_csv(p) for p in files]


def pump_run(seed: int, kind: str) -> Run:
    """One simulated pump (60 s readings): the fault ``kind`` starts after the warm-up, at a seeded
    time of day, for a seeded duration in the kind's range; a few normal hours follow it."""
    rng = random.Random(f"{seed}:{kind}")
    lo, hi = PUMP_FAULTS[kind]
    at_h = rng.uniform(WARMUP / 60 + 2.0, WARMUP / 60 + 26.0)
    dur = rng.uniform(lo, hi)
    start_h = rng.randrange(24)
    fleet = Fleet.from_dict(
        {
            "seed": seed * 1000 + sorted(PUMP_FAULTS).index(kind),
            "start": f"2026-03-{2 + seed % 20:02d}T{start_h:02d}:00:00Z",
            "sites": [
                {
                    "id": "s1",
                    "gateways": [
                        {
                            "id": "gw1",
                            "devices": [
                                {
                                    "kind": "pump",
                                    "interval_s": 60,
                                    "anomalies": [{"kind": kind, "at_h": at_h, "duration_h": dur}],
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    )
    windows: list[tuple[int, int]] = []
    ts: list[int] = []
    rows: list[list[float]] = []
    channels: tuple[str, ...] = ()
    for e in simulate(fleet, (at_h + dur + rng.uniform(2.0, 8.0)) * 3600):
        for ev in e.events:
            if ev.get("type") == "anomaly":
                windows.append((int(str(ev["start_ts"])), int(str(ev["end_ts"]))))
        if e.kind != "telemetry" or not e.publishes:
            continue
        doc = json.loads(e.payload)
        readings = doc["body"]["readings"]
        channels = channels or tuple(r["metric"] for r in readings)
        ts.append(int(doc["ts"]))
        rows.append([float(r["value"]) for r in readings])
    t = np.array(ts, dtype=np.int64)
    labels = np.zeros(len(t), dtype=bool)
    for a, b in windows:
        labels |= (t >= a) & (t <= b)
    return Run(f"pump-s{seed}-{kind}", kind, channels, t, np.array(rows), labels)


def sim_runs(seeds: tuple[int, ...]) -> list[Run]:
    return [pump_run(seed, kind) for seed in seeds for kind in sorted(PUMP_FAULTS)]
