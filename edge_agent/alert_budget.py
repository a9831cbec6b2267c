"""The site's alert budget, after ISA-18.2: alerts counted per window, one ``alert_flood`` alert
instead of a storm, the alerts beyond the budget withheld and counted, never silently.

ISA-18.2 (alarm management) calls about 150 alarms per operator per day "very likely acceptable"
and more than 10 in 10 minutes a flood. :class:`AlertBudget` counts the anomaly alerts raised at
the gateway's site within ``alerts.flood_window_s`` (the agent clock: when the operator would
see them). The alert that takes the count past ``alerts.flood_alerts`` is withheld and one
``alert_flood`` system alert (:class:`~protocols.AlertFlood` figures, the streams with the most
alerts as its drivers) goes out instead; while the flood lasts every further anomaly alert is
withheld: a raise, and the clear of a stream whose raise was withheld (the operator never saw
it). Withheld alerts still count in the window, so a storm that goes on keeps the flood up. Once
the window holds ``alerts.flood_clear_alerts`` or fewer, the flood clears: the clear event
carries how many alerts were withheld and which streams raised them. System alerts (disk quota,
sync refusals) are never withheld.

Everything is visible while it happens: ``/metrics``
(``edgehouse_agent_alert_budget_window_alerts``, ``…_alert_flood_active``,
``…_alert_floods_total``, ``…_alerts_withheld_total{state}``, ``…_alerts_last_24h``), ``/status``
(``alerts``: :class:`AlertBudgetStatus`) and the flood alert itself, synced like every alert.
:meth:`AlertBudget.restore` picks an open flood up again after a restart.

:class:`AlertBudget` is thread-safe and does no I/O; :class:`~edge_agent.output.GatewayOutput`
consults it for every alert and stores what it returns, :class:`AlertBudgetWorker` asks it on
its own thread whether a flood is over while no alert arrives.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from pydantic import BaseModel, ConfigDict

from edge_agent.background import BackgroundWorker
from edge_agent.config import AlertsConfig
from edge_agent.metrics import AgentMetrics
from protocols import ALERT_FLOOD, AlertDriver, AlertFlood, AlertPayload

#: The ``metric`` naming a device alert (all its channels) among a flood's drivers.
DEVICE_STREAM: Final = "*"
#: Drivers named on a flood alert: the streams with the most alerts.
FLOOD_DRIVERS: Final = 10
#: Bounds of the counting state (a storm can never grow it without limit).
MAX_WINDOW_ENTRIES: Final = 100_000
MAX_TRACKED_STREAMS: Final = 10_000
_DAY_MS: Final = 86_400_000

Stream = tuple[str, str]


class AlertBudgetStatus(BaseModel):
    """``/status`` ``alerts``: the budget's state; counters count since the agent started."""

    model_config = ConfigDict(extra="forbid")
    budget_enabled: bool
    window_s: int
    flood_alerts: int
    flood_clear_alerts: int
    #: Anomaly alerts raised in the current window (withheld ones included).
    in_window: int
    flood_active: bool
    flood_since_ts: int | None
    #: Alerts withheld since the open flood began.
    withheld_in_flood: int
    #: Alerts withheld since start (raises and clears).
    withheld: int
    floods: int
    #: Raised alerts that went out in the last 24 hours (system and flood alerts included).
    last_24h: int
    daily_alerts: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one alert: send it or not, and a flood alert to send before it."""

    send: bool
    flood: AlertPayload | None = None


@dataclass(slots=True)
class _Flood:
    since_ts: int
    #: A restored flood does not clear before this (the counts before the restart are gone).
    hold_until: int = 0
    withheld: int = 0
    streams: Counter[Stream] = field(default_factory=Counter)
    counted: int = 0


def stream_of(alert: AlertPayload) -> Stream:
    """The stream an alert belongs to: ``(device_id, metric)``, ``metric`` ``*`` for a device alert."""
    return (alert.device_id or alert.gateway_id, alert.metric or DEVICE_STREAM)


class AlertBudget:
    def __init__(
        self, config: AlertsConfig, site: str, gateway_id: str, metrics: AgentMetrics | None = None
    ) -> None:
        self.config = config
        self._site = site
        self._gateway_id = gateway_id
        self._metrics = metrics
        self._window_ms = config.flood_window_s * 1000
        self._lock = threading.Lock()
        self._window: deque[tuple[int, Stream]] = deque(maxlen=MAX_WINDOW_ENTRIES)
        self._day: deque[int] = deque()
        self._flood: _Flood | None = None
        #: Streams whose last raise was withheld: their clear is withheld too.
        self._withheld_streams: set[Stream] = set()
        self.withheld = 0
        self.floods = 0

    # ----------------------------------------------------------------- decisions

    def admit(self, alert: AlertPayload, now_ms: int) -> Verdict:
        """Count ``alert`` and decide whether it goes out (and whether a flood starts with it)."""
        with self._lock:
            self._prune(now_ms)
            if alert.kind != "anomaly":
                self._went_out(alert, now_ms)
                return Verdict(True)
            stream = stream_of(alert)
            if alert.state == "cleared":
                if stream in self._withheld_streams:
                    self._withheld_streams.discard(stream)
                    self._withhold("cleared", stream, count=False)
                    return Verdict(False)
                return Verdict(True)
            self._window.append((now_ms, stream))
            flood = self._flood
            if flood is not None:
                flood.counted += 1
                self._withhold("raised", stream)
                return Verdict(False)
            if self.config.budget_enabled and len(self._window) > self.config.flood_alerts:
                flood_alert = self._start_flood(now_ms)
                self._withhold("raised", stream, count=False)  # the window already counted it
                return Verdict(False, flood_alert)
            self._withheld_streams.discard(stream)
            self._went_out(alert, now_ms)
            return Verdict(True)

    def check(self, now_ms: int) -> AlertPayload | None:
        """The flood's clear alert, once the window has calmed down to ``flood_clear_alerts``."""
        with self._lock:
            self._prune(now_ms)
            flood = self._flood
            if flood is None or now_ms < flood.hold_until:
                return None
            if len(self._window) > self.config.flood_clear_alerts:
                return None
            self._flood = None
            if self._metrics is not None:
                self._metrics.alert_flood_active.set(0)
            return self._flood_alert("cleared", now_ms, flood)

    def restore(self, last_flood: AlertPayload | None, now_ms: int) -> None:
        """Pick up a flood left open by the previous run (its last ``alert_flood`` event)."""
        if last_flood is None or last_flood.state != "raised" or last_flood.flood is None:
            return
        with self._lock:
            if self._flood is not None:
                return
            figures = last_flood.flood
            self._flood = _Flood(
                since_ts=figures.since_ts,
                hold_until=now_ms + self._window_ms,
                withheld=figures.suppressed,
                counted=figures.alerts_in_window,
            )
            for d in last_flood.drivers:
                self._flood.streams[(d.device_id, d.metric)] += d.alerts or 0
            if self._metrics is not None:
                self._metrics.alert_flood_active.set(1)

    # ----------------------------------------------------------------- figures

    def in_window(self, now_ms: int) -> int:
        with self._lock:
            self._prune(now_ms)
            return len(self._window)

    def last_24h(self, now_ms: int) -> int:
        with self._lock:
            self._prune(now_ms)
            return len(self._day)

    def status(self, now_ms: int) -> AlertBudgetStatus:
        with self._lock:
            self._prune(now_ms)
            flood = self._flood
            cfg = self.config
            return AlertBudgetStatus(
                budget_enabled=cfg.budget_enabled,
                window_s=cfg.flood_window_s,
                flood_alerts=cfg.flood_alerts,
                flood_clear_alerts=cfg.flood_clear_alerts,
                in_window=len(self._window),
                flood_active=flood is not None,
                flood_since_ts=flood.since_ts if flood is not None else None,
                withheld_in_flood=flood.withheld if flood is not None else 0,
                withheld=self.withheld,
                floods=self.floods,
                last_24h=len(self._day),
                daily_alerts=cfg.daily_alerts,
            )

    # ----------------------------------------------------------------- inside the lock

    def _prune(self, now_ms: int) -> None:
        start = now_ms - self._window_ms
        while self._window and self._window[0][0] <= start:
            self._window.popleft()
        day_start = now_ms - _DAY_MS
        while self._day and self._day[0] <= day_start:
            self._day.popleft()

    def _went_out(self, alert: AlertPayload, now_ms: int) -> None:
        if alert.state == "raised":
            self._day.append(now_ms)

    def _withhold(self, state: str, stream: Stream, count: bool = True) -> None:
        self.withheld += 1
        if state == "raised":
            self._withheld_streams.add(stream)
            if len(self._withheld_streams) > MAX_TRACKED_STREAMS:
                self._withheld_streams.pop()
        flood = self._flood
        if flood is not None:
            flood.withheld += 1
            if count and (stream in flood.streams or len(flood.streams) < MAX_TRACKED_STREAMS):
                flood.streams[stream] += 1
        if self._metrics is not None:
            self._metrics.alerts_withheld.labels(state).inc()

    def _start_flood(self, now_ms: int) -> AlertPayload:
        flood = _Flood(since_ts=now_ms, counted=len(self._window))
        flood.streams.update(stream for _, stream in self._window)
        self._flood = flood
        self.floods += 1
        self._day.append(now_ms)
        if self._metrics is not None:
            self._metrics.alert_floods.inc()
            self._metrics.alert_flood_active.set(1)
        return self._flood_alert("raised", now_ms, flood, withheld=1)

    def _flood_alert(self, state: str, now_ms: int, flood: _Flood, withheld: int | None = None) -> AlertPayload:
        cfg = self.config
        in_window = len(self._window)
        if state == "raised":
            counts = Counter(stream for _, stream in self._window)
            total = in_window
        else:
            counts = flood.streams
            total = max(flood.counted, sum(counts.values()))
        top = counts.most_common(FLOOD_DRIVERS)
        drivers = tuple(
            AlertDriver(device_id=d, metric=m, contribution=min(1.0, n / total) if total else 0.0, alerts=n)
            for (d, m), n in top
        )
        named = ", ".join(f"{d}/{m} ({n})" for (d, m), n in top[:3])
        window = f"{cfg.flood_window_s} s"
        if state == "raised":
            message = (
                f"alert flood at {self._site}: {in_window} alerts in {window} (more than {cfg.flood_alerts}); "
                f"further anomaly alerts are withheld and counted until {cfg.flood_clear_alerts} or fewer "
                f"per {window}; most from {named}"
            )
        else:
            message = (
                f"alert flood at {self._site} over: {flood.withheld} alerts withheld since it began, "
                f"{in_window} in the last {window}; most from {named}"
            )
        return AlertPayload(
            alert_id=f"{ALERT_FLOOD}.{self._gateway_id}.{flood.since_ts}.{state}",
            gateway_id=self._gateway_id,
            kind="system",
            state=state,  # type: ignore[arg-type]
            severity="critical" if state == "raised" else "info",
            ts=now_ms,
            message=message[:500],
            code=ALERT_FLOOD,
            window_start_ts=self._window[0][0] if state == "raised" and self._window else flood.since_ts,
            window_end_ts=now_ms,
            drivers=drivers,
            flood=AlertFlood(
                site=self._site,
                window_s=cfg.flood_window_s,
                flood_limit=cfg.flood_alerts,
                clear_limit=cfg.flood_clear_alerts,
                alerts_in_window=in_window,
                suppressed=flood.withheld if withheld is None else withheld,
                since_ts=flood.since_ts,
            ),
        )


class AlertBudgetWorker(BackgroundWorker[None]):
    """Asks the budget every ``alerts.check_interval_s`` whether a flood is over (``check``:
    :meth:`edge_agent.output.GatewayOutput.check_budget`); at start, ``restore`` first."""

    name = "alert-budget"

    def __init__(
        self,
        interval_s: float,
        check: Callable[[], object],
        restore: Callable[[], object],
        metrics: AgentMetrics | None = None,
    ) -> None:
        super().__init__(metrics)
        self._interval_s = interval_s
        self._check = check
        self._restore = restore

    def start(self) -> None:
        self._restore()
        super().start()

    def step(self, resource: None) -> None:
        if not self.sleep(self._interval_s):
            self._check()
