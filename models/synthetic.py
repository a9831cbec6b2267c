"""Seeded synthetic sensor-like series for training the anomaly forecaster (never NAB).

Each series mixes a daily profile (sine harmonics, square waves, ramps), slow drift, AR(1) or
random-walk noise, heteroscedastic bursts, integer quantisation and benign level shifts, sampled
at a random interval. Optionally one anomaly is injected and labelled (used only to pick the
shipped alert threshold, never to train the network).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_INTERVALS_S = (60, 300, 300, 600, 900, 1800, 3600)
_ANOMALY_KINDS = ("spike", "level_shift", "flatline", "pattern_change", "noise_burst", "dropout", "drift")


@dataclass(frozen=True, slots=True)
class SyntheticSeries:
    ts_ms: np.ndarray  # int64
    values: np.ndarray  # float64
    anomaly_start: int | None  # row index of the injected anomaly, if any
    kind: str


def _daily_profile(rng: np.random.Generator, phase: np.ndarray) -> np.ndarray:
    """phase in [0, 1) per reading: fraction of the day."""
    shape = rng.integers(0, 4)
    if shape == 0:  # smooth harmonics
        out = np.zeros_like(phase)
        for k in range(1, int(rng.integers(1, 4)) + 1):
            out += rng.normal(0, 1.0 / k) * np.sin(2 * np.pi * k * phase + rng.uniform(0, 2 * np.pi))
        return out
    if shape == 1:  # shift pattern: on/off square wave
        start, length = rng.uniform(0, 1), rng.uniform(0.2, 0.6)
        return (((phase - start) % 1.0) < length).astype(float) * rng.choice([-1.0, 1.0])
    if shape == 2:  # ramp up, drop
        return ((phase + rng.uniform(0, 1)) % 1.0) * rng.choice([-1.0, 1.0])
    return np.zeros_like(phase)  # no daily cycle


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(0, 3)
    eps = rng.normal(0, 1, n)
    if kind == 0:
        return eps
    if kind == 1:  # AR(1)
        phi = rng.uniform(0.5, 0.98)
        out = np.empty(n)
        acc = 0.0
        for i in range(n):
            acc = phi * acc + eps[i]
            out[i] = acc
        return out * np.sqrt(1 - phi * phi)
    return np.cumsum(eps) * rng.uniform(0.02, 0.2)  # slow random walk


def _inject(rng: np.random.Generator, y: np.ndarray, lag: int, scale: float) -> tuple[int, str]:
    n = y.size
    start = int(rng.integers(int(n * 0.4), int(n * 0.9)))
    kind = str(rng.choice(_ANOMALY_KINDS))
    size = scale * rng.uniform(3, 8) * rng.choice([-1.0, 1.0])
    if kind == "spike":
        y[start : start + int(rng.integers(1, 4))] += size
    elif kind == "level_shift":
        y[start:] += size
    elif kind == "flatline":
        y[start : start + max(lag, 50)] = y[start]
    elif kind == "pattern_change":
        end = min(n, start + max(lag, 50))
        y[start:end] = y[start - lag : end - lag][::-1] if start >= lag else y[start:end] * 0.2
    elif kind == "noise_burst":
        end = min(n, start + int(rng.integers(20, 200)))
        y[start:end] += rng.normal(0, abs(size), end - start)
    elif kind == "dropout":
        y[start : start + int(rng.integers(3, 30))] = 0.0
    else:  # drift
        y[start:] += np.linspace(0, size * 2, n - start)
    return start, kind


def sensor_series(rng: np.random.Generator, n: int, with_anomaly: bool = False) -> SyntheticSeries:
    interval = int(rng.choice(_INTERVALS_S))
    t0 = 1_600_000_000 + int(rng.integers(0, 86_400))
    ts = (t0 + np.arange(n, dtype=np.int64) * interval) * 1000
    phase = ((ts // 1000) % 86_400) / 86_400.0
    lag = max(1, 86_400 // interval)
    level = rng.normal(0, 50)
    amp = abs(rng.normal(0, 10)) + 0.1
    noise_scale = amp * rng.uniform(0.02, 0.6)
    y = level + amp * _daily_profile(rng, phase)
    y += noise_scale * _noise(rng, n)
    if rng.random() < 0.3:  # weekly or slow drift
        y += amp * rng.normal(0, 0.5) * np.sin(2 * np.pi * np.arange(n) / (lag * 7.0))
    if rng.random() < 0.2:  # heteroscedastic: noisier when the profile is high
        y += noise_scale * rng.normal(0, 1, n) * (np.abs(y - level) / amp)
    if rng.random() < 0.2:  # frequent benign spikes (load balancers, door counters)
        hits = rng.random(n) < rng.uniform(0.002, 0.02)
        y += hits * amp * rng.uniform(1, 3, n)
    start: int | None = None
    kind = "normal"
    if with_anomaly:
        start, kind = _inject(rng, y, lag, amp + noise_scale)
    if rng.random() < 0.25:  # integer-valued sensors (counts, coarse ADCs)
        y = np.round(y / max(noise_scale, 1e-3) * rng.uniform(0.5, 3)) * max(noise_scale, 1e-3)
    return SyntheticSeries(ts_ms=ts, values=y.astype(np.float64), anomaly_start=start, kind=kind)


def sensor_corpus(seed: int, n_series: int, length: int, with_anomaly: bool = False) -> list[SyntheticSeries]:
    rng = np.random.default_rng(seed)
    return [sensor_series(rng, length, with_anomaly) for _ in range(n_series)]
