"""Feature extraction shared by training and the gateway, so the two cannot drift.

Sensors: per-stream causal state (online normalisation + rolling window + one-day-ago window).
Demand: per-SKU daily counts turned into a scale-free vector with calendar and promotion features.

Everything here is numpy only; nothing imports TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import NamedTuple

import numpy as np

from models.feature_config import DemandFeatureConfig, SensorFeatureConfig

__all__ = ["DemandFeatureConfig", "SensorFeatureConfig"]  # re-exported: defined numpy-free

# ---------------------------------------------------------------------------------------------
# Sensors
# ---------------------------------------------------------------------------------------------


class SensorStep(NamedTuple):
    """What one reading turned into: model input for the next reading and the normalisation used
    (a named tuple: made once per reading, at a third of a frozen dataclass's cost)."""

    features: np.ndarray  # float32 [n_inputs]; predicts (x[t+1] - x[t]) / std
    last_value: float  # x[t]
    mean: float
    std: float
    ready: bool  # window full


class _Ring:
    """Fixed-capacity float64 history (index 0 = oldest kept reading), one slot per reading: the
    oldest is overwritten once it is full. Runs of readings are copied out with :meth:`copy_to`
    (one slice, two where the run wraps round the buffer's end)."""

    __slots__ = ("_buf", "_cap", "_count", "_head")

    def __init__(self, capacity: int) -> None:
        self._cap = capacity
        self._buf = np.zeros(capacity)
        self._head = 0  # next write position
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def capacity(self) -> int:
        return self._cap

    def append(self, value: float) -> None:
        head = self._head
        self._buf[head] = value
        self._head = head + 1 if head + 1 < self._cap else 0
        if self._count < self._cap:
            self._count += 1

    def _slot(self, i: int) -> int:
        """Buffer position of the reading at index ``i`` (0 <= i < len)."""
        p = self._head - self._count + i
        return p + self._cap if p < 0 else p

    def copy_to(self, out: np.ndarray, start: int) -> None:
        """Copy the readings at indices ``start <= i < start + len(out)`` into ``out``."""
        n, cap, buf = out.shape[0], self._cap, self._buf
        p = self._head - self._count + start  # _slot inline: this runs twice a reading
        p = p + cap if p < 0 else p
        if n <= cap - p:
            out[:] = buf[p : p + n]
        else:
            out[: cap - p] = buf[p:]
            out[cap - p :] = buf[: n - cap + p]

    def at(self, i: int) -> float:
        return float(self._buf[self._slot(i)])


class SensorFeatureState:
    """Causal per-stream state. `push(ts_ms, value)` folds in one reading and returns the features
    that predict the *next* reading; it never looks ahead."""

    def __init__(self, config: SensorFeatureConfig) -> None:
        self._cfg = config
        self._n = 0  # readings pushed
        self._k = 0  # readings the running mean/var average over (restarted by relearn)
        self._mean = 0.0
        self._var = 0.0
        #: (reading number, level change): readings numbered below it are corrected by the change
        #: when used as a reference a day or a week back (see relearn).
        self._shifts: list[tuple[int, float]] = []
        self._first_ts: int | None = None
        self._probe: list[int] = []
        self._lag: int | None = None  # readings per day, once known (0 = unusable)
        keep = config.max_seasonal_lag + config.seasonal_half_width + 2
        self._hist = _Ring(max(keep, config.window, config.history_keep))
        # the config's values, read once (one call per reading on the gateway)
        self._n_inputs = config.n_inputs
        self._w = config.window - 1
        self._h = config.seasonal_half_width
        self._ready_at = config.window
        self._norm_horizon = config.norm_horizon
        self._scratch = np.zeros(self._n_inputs)
        # 0-d operands of the ufunc calls in _features: half the cost of passing Python floats
        self._last0, self._std0 = np.zeros(()), np.zeros(())
        self._lo0, self._hi0 = np.array(-config.clip), np.array(config.clip)

    @property
    def count(self) -> int:
        return self._n

    @property
    def seasonal_lag(self) -> int | None:
        return self._lag

    @property
    def mean(self) -> float:
        return self._mean

    @property
    def std(self) -> float:
        return math.sqrt(self._var) if self._var > 1e-12 else 1.0

    @property
    def var(self) -> float:
        return self._var

    def _update_interval(self, ts_ms: int) -> None:
        if self._lag is not None:
            return
        self._probe.append(ts_ms)
        if len(self._probe) <= self._cfg.interval_probe:
            return
        diffs = sorted(b - a for a, b in zip(self._probe, self._probe[1:], strict=False) if b > a)
        if not diffs:
            self._lag = 0
            return
        interval = diffs[len(diffs) // 2]
        lag = round(86_400_000 / interval)
        self._lag = lag if 2 <= lag <= self._cfg.max_seasonal_lag else 0

    def days_ago(self, days: int = 1) -> float | None:
        """The reading `days` daily lags before the reading about to be pushed (None if unknown
        or not kept), corrected by any level change re-learnt since (see :meth:`relearn`)."""
        lag = self._lag or 0
        hist = self._hist
        idx = hist._count - days * lag
        if not lag or idx < 0:
            return None
        p = hist._head - hist._count + idx  # hist.at(idx) inline: the period tests call this a reading
        value = float(hist._buf[p + hist._cap if p < 0 else p])
        if self._shifts:
            number = self._n - days * lag
            value += sum(delta for since, delta in self._shifts if number < since)
        return value

    def days_ago_mean(self, days: int, span: int) -> float | None:
        """Mean of the `span` readings that ended `days` daily lags before the reading about to be
        pushed (raw readings, None if unknown or not all kept)."""
        lag = self._lag or 0
        end = len(self._hist) - days * lag
        if not lag or span < 1 or end - span + 1 < 0:
            return None
        return sum(self._hist.at(i) for i in range(end - span + 1, end + 1)) / span

    def relearn(self, mean: float, var: float, since: int, weight: int) -> None:
        """A new normal from reading number `since` on (the count when it began): the running
        mean and variance become `mean` and `var` and average from here as if over `weight`
        readings (so they keep adapting fast, then slow down to `norm_horizon` again). Readings
        from before `since` are corrected by the level change wherever they serve as references
        a day or a week back (network inputs, period tests). Training never calls this."""
        delta = mean - self._mean
        keep_from = self._n - self._hist.capacity
        self._shifts = [(s, d) for s, d in self._shifts if s > keep_from]
        if delta:
            self._shifts.append((since, delta))
        self._mean, self._var = mean, max(var, 0.0)
        self._k = min(self._k, max(1, weight))

    def keeps_days(self, days: int) -> bool:
        """Whether `days` days of readings fit into the kept history once the lag is known."""
        lag = self._lag or 0
        return bool(lag) and days * lag <= self._hist.capacity

    def push(self, ts_ms: int, value: float) -> SensorStep:
        if self._lag is None:
            self._update_interval(ts_ms)
        # the running mean and variance (exponential over norm_horizon once past it), inline
        self._n += 1
        k = self._k = self._k + 1
        horizon = self._norm_horizon
        alpha = 1.0 / (k if k < horizon else horizon)
        delta = value - self._mean
        self._mean += alpha * delta
        self._var = (1.0 - alpha) * (self._var + alpha * delta * delta)
        self._hist.append(value)
        return self._features(value)

    def _features(self, last: float) -> SensorStep:
        std = math.sqrt(self._var) if self._var > 1e-12 else 1.0
        hist = self._hist
        n_hist = hist._count
        # float64 work area: the two runs of history are copied in, then normalised and clipped in
        # place (one ufunc call each for the whole vector), and cast once to the float32 input
        scratch = self._scratch
        w = self._w
        take = w if w < n_hist - 1 else n_hist - 1
        # recent window, oldest first, relative to the last value; missing history stays 0
        if take < w:
            scratch[:] = last  # becomes 0 once the last value is subtracted
        buf, cap = hist._buf, hist._cap
        zero = hist._head - n_hist  # buffer position of index 0 (+ cap if negative)
        if take:  # one slice unless the run wraps round the buffer's end (copy_to does both)
            p = zero + n_hist - 1 - take
            p = p + cap if p < 0 else p
            if p + take <= cap:
                scratch[w - take : w] = buf[p : p + take]
            else:
                hist.copy_to(scratch[w - take : w], n_hist - 1 - take)
        lag = self._lag or 0
        h = self._h
        # readings around t+1-lag; index of x[t] is n_hist-1, so x[t+1-lag+j] is at n_hist-lag+j
        # (j = -h..h, those not after x[t])
        end = w
        if lag and n_hist - lag - h >= 0:
            first = n_hist - lag - h
            valid = 2 * h + 1 if 2 * h + 1 < lag + h else lag + h
            end = w + valid
            ref = scratch[w:end]
            p = zero + first
            p = p + cap if p < 0 else p
            if p + valid <= cap:
                ref[:] = buf[p : p + valid]
            else:
                hist.copy_to(ref, first)
            if self._shifts:
                number = np.arange(first, first + valid) + (self._n - n_hist)
                for since, delta in self._shifts:
                    ref += np.where(number < since, delta, 0.0)
        if end < self._n_inputs - 1:
            scratch[end:] = last  # missing day-ago readings stay 0
        head = scratch[:-1]
        last0, std0 = self._last0, self._std0
        last0.fill(last)
        std0.fill(std)
        np.subtract(head, last0, head)
        np.divide(head, std0, head)
        # np.clip without its wrapper; out= by keyword (a positional out warns for maximum/minimum)
        np.minimum(np.maximum(head, self._lo0, out=head), self._hi0, out=head)
        scratch[-1] = 1.0 if end > w else 0.0
        out = scratch.astype(np.float32)
        return SensorStep(features=out, last_value=last, mean=self._mean, std=std, ready=n_hist >= self._ready_at)


def sensor_training_pairs(
    ts_ms: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray, config: SensorFeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Run the edge state machine over one series; return (X[t], y[t]) with y the next reading's
    change in std units of time t. Same code path the gateway runs, one reading at a time."""
    state = SensorFeatureState(config)
    xs: list[np.ndarray] = []
    ys: list[float] = []
    prev: SensorStep | None = None
    for t, v in zip(ts_ms, values, strict=True):
        if prev is not None and prev.ready:
            xs.append(prev.features)
            ys.append((float(v) - prev.last_value) / prev.std)
        prev = state.push(int(t), float(v))
    if not xs:
        return np.zeros((0, config.n_inputs), np.float32), np.zeros((0,), np.float32)
    y = np.clip(np.asarray(ys, np.float32), -config.clip, config.clip)
    return np.stack(xs).astype(np.float32), y


# ---------------------------------------------------------------------------------------------
# Demand
# ---------------------------------------------------------------------------------------------


def series_scale(history: np.ndarray, config: DemandFeatureConfig) -> float:
    """Mean of the recent history (falls back to the whole history), floored: the unit of the model."""
    recent = history[-config.scale_window :]
    s = float(np.mean(recent)) if recent.size else 0.0
    if s <= 0.0 and history.size:
        s = float(np.mean(history))
    return max(s, config.min_scale)


def _promo_response(
    hist: np.ndarray, promo: np.ndarray, scale: float, config: DemandFeatureConfig
) -> list[float]:
    """How this SKU reacted to promotions over the last year: mean units on promo days and on
    other days (in scale units) and the share of promo days; 1, 1, 0 without promo history."""
    h, p = hist[-config.year_lag :], promo[-config.year_lag :] > 0.5
    on = float(np.mean(h[p])) / scale if np.any(p) else 1.0
    off = float(np.mean(h[~p])) / scale if np.any(~p) else 1.0
    return [on, off, float(np.mean(p)) if p.size else 0.0]


def _summaries(hist: np.ndarray, promo: np.ndarray, scale: float, config: DemandFeatureConfig) -> list[float]:
    out = _promo_response(hist, promo, scale, config)
    for w in config.summary_windows:
        out.append(float(np.mean(hist[-w:])) / scale if hist.size else 1.0)
    recent = hist[-config.smoothing_span :]
    for alpha in config.smoothing_alphas:
        if recent.size:
            weights = alpha * (1.0 - alpha) ** np.arange(recent.size - 1, -1, -1)
            weights[0] = (1.0 - alpha) ** (recent.size - 1)  # the oldest reading seeds the level
            out.append(float(np.dot(weights, recent)) / scale)
        else:
            out.append(1.0)
    lag, h = config.year_lag, config.horizon
    if config.seasonal and hist.size >= lag:
        out.extend([float(np.mean(hist[hist.size - lag : hist.size - lag + h])) / scale, 1.0])
    else:
        out.extend([1.0, 0.0])
    return [min(v, config.clip) for v in out]


def demand_features(
    history: np.ndarray,
    history_promo: np.ndarray,
    future_dates: Sequence[date],
    future_promo: np.ndarray,
    config: DemandFeatureConfig,
) -> tuple[np.ndarray, float]:
    """Build the model input for one SKU at one origin. `history` ends the day before
    `future_dates[0]`; shorter histories are left-padded with their own mean."""
    if len(future_dates) != config.horizon or future_promo.shape[0] != config.horizon:
        raise ValueError(f"need exactly {config.horizon} future dates and promo flags")
    if history_promo.shape[0] != history.shape[0]:
        raise ValueError("history and history_promo differ in length")
    hist = np.asarray(history, dtype=np.float64)
    scale = series_scale(hist, config)
    h = config.history
    window = np.full(h, min(np.mean(hist) if hist.size else 0.0, config.clip * scale) / scale)
    promo_hist = np.zeros(h)
    take = min(h, hist.size)
    if take:
        window[h - take :] = hist[-take:] / scale
        promo_hist[h - take :] = history_promo[-take:]
    window = np.clip(window, 0.0, config.clip)
    dow = np.zeros((config.horizon, 7))
    doy = np.zeros((config.horizon, 2))
    for i, d in enumerate(future_dates):
        dow[i, d.weekday()] = 1.0
        angle = 2.0 * math.pi * (d.timetuple().tm_yday - 1) / 365.25
        if config.seasonal:
            doy[i] = (math.sin(angle), math.cos(angle))
    feats = np.concatenate(
        [
            window,
            promo_hist,
            np.asarray(future_promo, dtype=np.float64),
            dow.reshape(-1),
            doy.T.reshape(-1),
            _summaries(hist, np.asarray(history_promo, dtype=np.float64), scale, config),
            [math.log1p(scale) / 3.0],
        ]
    ).astype(np.float32)
    return feats, scale
