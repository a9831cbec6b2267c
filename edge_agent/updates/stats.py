"""Model statistics of a task's worker: running counts per model version, and their carry-over.

A worker counts what each model did since it became active (readings scored, alerts, forecasts);
the updater reports the snapshots and keeps them in ``state.json``, so a restarted agent running
the same models goes on counting (a rollout gate does not start over).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from protocols import ModelStats

DAY_MS: Final = 86_400_000
#: A device silent for longer than this is not "observed" over the gap (offline, switched off).
MAX_GAP_MS: Final = 3_600_000


@dataclass(slots=True)
class StatsCounter:
    """Running counts of one model version since ``since_ts`` (mutated by one worker thread only)."""

    model_version: int
    since_ts: int
    readings: int = 0
    alerts_raised: int = 0
    alert_readings: int = 0
    forecasts: int = 0
    forecast_abs_error: float = 0.0
    forecast_actual_units: float = 0.0
    #: Devices scored (device model) and the device-time observed, in days of message time.
    devices: int = 0
    device_days: float = 0.0
    errors: int = 0
    #: Last message time per device seen by this counter (not persisted; bounded by the scorer's devices).
    _last_ts: dict[str, int] = field(default_factory=dict, repr=False)

    def observe_device(self, device_id: str, ts: int) -> None:
        """One scored message of ``device_id`` at ``ts`` (ms): counts the device and the time since
        its previous message (gaps over ``MAX_GAP_MS`` count nothing)."""
        last = self._last_ts.get(device_id)
        if last is None and len(self._last_ts) >= 100_000:
            self._last_ts.clear()  # bounded: the count is kept, the gaps restart
        if last is not None and 0 < ts - last <= MAX_GAP_MS:
            self.device_days += (ts - last) / DAY_MS
        self._last_ts[device_id] = ts if last is None else max(last, ts)
        # Resumed after a restart, the saved count stands until more devices than that are seen.
        self.devices = max(self.devices, len(self._last_ts))

    @classmethod
    def resume(cls, version: int, now_ms: int, saved: ModelStats | None) -> StatsCounter:
        """Counts of ``version`` carried over from before a restart when ``saved`` is of that
        version (its ``since_ts`` kept); fresh counts from ``now_ms`` otherwise."""
        if saved is None or saved.model_version != version:
            return cls(version, now_ms)
        return cls(
            version,
            saved.since_ts,
            readings=saved.readings,
            alerts_raised=saved.alerts_raised,
            alert_readings=saved.alert_readings,
            forecasts=saved.forecasts,
            forecast_abs_error=saved.forecast_abs_error,
            forecast_actual_units=saved.forecast_actual_units,
            devices=saved.devices,
            device_days=saved.device_days,
            errors=saved.errors,
        )

    def snapshot(self) -> ModelStats:
        return ModelStats(
            model_version=self.model_version,
            since_ts=self.since_ts,
            readings=self.readings,
            alerts_raised=self.alerts_raised,
            alert_readings=self.alert_readings,
            forecasts=self.forecasts,
            forecast_abs_error=round(self.forecast_abs_error, 6),
            forecast_actual_units=round(self.forecast_actual_units, 6),
            devices=self.devices,
            device_days=round(self.device_days, 6),
            errors=self.errors,
        )


@dataclass(frozen=True, slots=True)
class SlotStats:
    """``active``: the running model since it became active; ``shadow`` and ``baseline``: the
    shadow candidate and the running model over exactly the same readings/days; ``previous``: the
    model the running one replaced, over its last active period. The updater keeps them in its
    state file, so an agent restart carries them over (:meth:`StatsCounter.resume`)."""

    active: ModelStats | None = None
    shadow: ModelStats | None = None
    baseline: ModelStats | None = None
    previous: ModelStats | None = None


def resumed_pair(
    saved: SlotStats | None, shadow_version: int, active_version: int, now_ms: int
) -> tuple[StatsCounter, StatsCounter]:
    """Counters of a shadow run and its baseline, carried over only as a pair (both versions
    match what was saved): they must keep counting exactly the same readings."""
    if (
        saved is not None
        and saved.shadow is not None
        and saved.baseline is not None
        and saved.shadow.model_version == shadow_version
        and saved.baseline.model_version == active_version
    ):
        return (
            StatsCounter.resume(shadow_version, now_ms, saved.shadow),
            StatsCounter.resume(active_version, now_ms, saved.baseline),
        )
    return StatsCounter(shadow_version, now_ms), StatsCounter(active_version, now_ms)
