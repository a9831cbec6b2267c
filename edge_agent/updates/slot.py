"""What the model updater needs from a task's worker (anomaly scoring, demand forecasts).

The workers implement :class:`ModelSlot`; the updater never touches a scorer itself. Types, and
the one loader both workers use (:func:`load_slot_model`); no ``cryptography``, no numpy at
import, so the workers can import this module at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from models.manifest import ModelLoadError
from protocols import ModelStats

if TYPE_CHECKING:
    from models.runtime import LoadedModel

InstallMode = Literal["active", "shadow"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model file a worker can run: which version, which bytes, from which release."""

    task: str
    version: int
    sha256: str
    path: Path
    #: The signed release it came from; None for the shipped (or configured) model.
    metadata_version: int | None = None
    rollout_id: int | None = None


def load_slot_model(task: str, source: ModelInfo | Path) -> tuple[LoadedModel, ModelInfo]:
    """Load an installed model (its manifest must be the installed version and bytes), or a
    configured/shipped file, which gets a :class:`ModelInfo` of its own. Any thread.

    numpy and LiteRT load here, with the first model, not with the agent (models may be off).
    """
    from models.runtime import load_model

    path = source.path if isinstance(source, ModelInfo) else source
    model = load_model(path)
    man = model.manifest
    if not isinstance(source, ModelInfo):
        return model, ModelInfo(task, man.version, man.sha256, path)
    if man.sha256 != source.sha256 or man.version != source.version:
        raise ModelLoadError(f"{path}: manifest v{man.version} is not the installed v{source.version}")
    return model, source


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


class ModelSlot(Protocol):
    """A task's worker as the updater sees it."""

    @property
    def task(self) -> str: ...

    @property
    def accepts_models(self) -> bool:
        """False when the task is disabled in the config (updates for it are not installed)."""
        ...

    def running_model(self) -> ModelInfo | None: ...

    def shadow_model(self) -> ModelInfo | None: ...

    def prepare(self, info: ModelInfo) -> object:
        """Load (and, for streaming models, pre-warm) a model on the caller's thread.

        Raises ``models.runtime.ModelLoadError`` / ``ValueError`` / ``OSError`` when it cannot run.
        """
        ...

    def install(self, prepared: object, mode: InstallMode, timeout_s: float = 30.0) -> bool:
        """Hand a prepared model over; the worker swaps it in between two units of work.

        True once the swap happened (False: still pending after ``timeout_s``).
        """
        ...

    def promote_shadow(self, info: ModelInfo, timeout_s: float = 30.0) -> bool:
        """Make the (already warm) shadow model the active one; ``info`` carries its release."""
        ...

    def drop_shadow(self) -> None: ...

    def relabel(self, info: ModelInfo) -> None:
        """The running model's bytes came with a newer release: record its metadata only."""
        ...

    def model_stats(self) -> SlotStats: ...
