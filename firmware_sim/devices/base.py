"""What every simulated device model shares: the step contract, local time and anomaly schedules."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from firmware_sim.config import ScheduledAnomaly
from protocols import Reading, ScanBody

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading set or scan a device produced at ``t_ms`` (true simulated time)."""

    t_ms: int
    readings: tuple[Reading, ...] | None = None
    scan: ScanBody | None = None
    burst_repeat: bool = False


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A labelled anomaly: what the ground truth records (true simulated time, ms).

    ``metric`` None: a fault of the machine as a whole (a pump's cavitation moves every channel)."""

    kind: str
    metric: str | None
    start_ms: int
    end_ms: int
    extra: dict[str, str] = field(default_factory=dict)

    def progress(self, t_ms: int) -> float:
        return min(1.0, max(0.0, (t_ms - self.start_ms) / max(1, self.end_ms - self.start_ms)))

    def active(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class StepResult:
    samples: list[Sample]
    anomalies: list[Anomaly]


class DeviceModel(Protocol):
    """A device's physics: advance from ``t_ms`` by ``dt_ms`` and report what it produced."""

    def step(self, t_ms: int, dt_ms: int) -> StepResult: ...


@dataclass(frozen=True, slots=True)
class LocalTime:
    hour: float  # 0..24, local
    weekday: int  # Monday = 0
    day: float  # days since the epoch, local


def local_time(t_ms: int, tz_offset_h: float) -> LocalTime:
    days = t_ms / DAY_MS + tz_offset_h / 24.0
    whole = math.floor(days)
    return LocalTime(hour=(days - whole) * 24.0, weekday=(whole + _EPOCH_WEEKDAY) % 7, day=days)


def is_open(lt: LocalTime, open_hour: float, close_hour: float) -> bool:
    return open_hour <= lt.hour < close_hour


def round2(x: float) -> float:
    return round(x, 2)


def clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else min(x, hi)


@dataclass(frozen=True, slots=True)
class AnomalyKind:
    """A kind of anomaly a device model knows: its metric (None: the whole device) and duration
    range (hours)."""

    name: str
    metric: str | None
    min_h: float
    max_h: float


class AnomalySchedule:
    """Anomalies placed by hand plus random ones (Poisson, ``rate_per_day``), never overlapping.

    Random anomalies are drawn lazily as time advances, so a run of any length is covered. A random
    anomaly that cannot start at its drawn time (``can_start(kind, t_ms)`` false: a jam of a
    conveyor that is stopped) is not placed and never labelled; the draws go on as they would.
    """

    def __init__(
        self,
        rng: random.Random,
        kinds: tuple[AnomalyKind, ...],
        rate_per_day: float,
        scheduled: tuple[ScheduledAnomaly, ...],
        start_ms: int,
        device_kind: str,
        can_start: Callable[[str, int], bool] | None = None,
    ) -> None:
        self._rng = rng
        self._can_start = can_start
        self._kinds = {k.name: k for k in kinds}
        self._rate = rate_per_day
        self._pending: list[Anomaly] = []
        for s in scheduled:
            if s.kind not in self._kinds:
                raise ValueError(f"{device_kind} has no anomaly kind {s.kind!r}; known: {sorted(self._kinds)}")
            k = self._kinds[s.kind]
            begin = start_ms + int(s.at_h * HOUR_MS)
            self._pending.append(Anomaly(k.name, k.metric, begin, begin + int(s.duration_h * HOUR_MS)))
        self._next_random = self._draw_after(start_ms)
        self._pending.sort(key=lambda a: a.start_ms)
        self.active: list[Anomaly] = []

    def _draw_after(self, t_ms: int) -> int | None:
        if self._rate <= 0 or not self._kinds:
            return None
        return t_ms + int(self._rng.expovariate(self._rate) * DAY_MS)

    def advance(self, t_ms: int) -> list[Anomaly]:
        """Move to ``t_ms``: return anomalies that started, drop those that ended."""
        while self._next_random is not None and self._next_random <= t_ms:
            k = self._rng.choice(list(self._kinds.values()))
            begin = self._next_random
            dur = int(self._rng.uniform(k.min_h, k.max_h) * HOUR_MS)
            if self._can_start is None or self._can_start(k.name, begin):
                self._pending.append(Anomaly(k.name, k.metric, begin, begin + dur))
                self._pending.sort(key=lambda a: a.start_ms)
            self._next_random = self._draw_after(begin + dur)
        started: list[Anomaly] = []
        while self._pending and self._pending[0].start_ms <= t_ms:
            a = self._pending.pop(0)
            if any(b.kind == a.kind for b in self.active):
                continue  # same kind already running: the later one is dropped, never labelled
            started.append(a)
            self.active.append(a)
        self.active = [a for a in self.active if a.end_ms > t_ms]
        return started

    def get(self, kind: str, t_ms: int) -> Anomaly | None:
        for a in self.active:
            if a.kind == kind and a.active(t_ms):
                return a
        return None
