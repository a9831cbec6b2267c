"""What the model updater needs from a task's worker (anomaly scoring, demand forecasts).

The workers implement :class:`ModelSlot`; the updater never touches a scorer itself. Both
workers are :class:`ModelWorker` subclasses: the one place that loads the models at start
(installed current, installed previous, then the configured or shipped file), makes a model
active (its statistics carried over a restart), builds a shadow run and makes the swaps the
updater asks for. Types, and the one loader both workers use (:func:`load_slot_model`); no
``cryptography``, no numpy at import, so the workers can import this module at no cost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from edge_agent.background import BackgroundWorker
from edge_agent.config import ModelsConfig
from edge_agent.updates.stats import SlotStats, StatsCounter, resumed_pair
from models.manifest import ModelLoadError, default_model_path
from protocols import ModelStats

if TYPE_CHECKING:
    from edge_agent.metrics import AgentMetrics
    from edge_agent.store import Store
    from models.runtime import LoadedModel

log = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class SlotStart:
    """What a worker starts from besides its configured model: the models installed by updates,
    best first (current, previous), the shadow, and the statistics saved before the last stop."""

    installed: tuple[ModelInfo, ...] = ()
    shadow: ModelInfo | None = None
    stats: SlotStats | None = None


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


# --------------------------------------------------------------------------- the workers' base


class SlotModel(Protocol):
    """A loaded model as its worker runs it (a scorer, a forecaster) with what it was loaded from."""

    info: ModelInfo


M = TypeVar("M", bound=SlotModel)
R = TypeVar("R")


@dataclass(slots=True)
class Shadow(Generic[M]):
    """A candidate run next to the active model; never emits anything.

    ``stats`` counts the candidate, ``baseline`` the active model over exactly the same work.
    """

    model: M
    stats: StatsCounter
    baseline: StatsCounter


S = TypeVar("S", bound=Shadow[Any])

SwapKind = Literal["active", "shadow", "promote", "drop_shadow"]


@dataclass(slots=True)
class Swap(Generic[M]):
    """A change of the running models, made by :meth:`ModelWorker._apply`."""

    kind: SwapKind
    model: M | None = None
    #: For ``promote``: the release the shadow model is promoted under.
    info: ModelInfo | None = None


class ModelWorker(BackgroundWorker[R], Generic[R, M, S]):
    """A task's worker thread and its :class:`ModelSlot`.

    Subclasses build their models (:meth:`_load`, :meth:`_shadow_of`) and say where a swap is
    made (:meth:`_submit`: by default at once, under the lock; the scoring worker hands it to its
    thread, between two rows).
    """

    task: ClassVar[str]
    #: The task in messages: "no anomaly model loaded, anomaly scoring is off".
    work: ClassVar[str]

    def __init__(
        self,
        config: ModelsConfig,
        gateway_id: str,
        store: Store,
        metrics: AgentMetrics,
        emit: Callable[[Any], bool],
        configured_model: Path | None,
        installed: SlotStart | None,
        clock_ms: Callable[[], int],
    ) -> None:
        super().__init__(metrics, nice=config.nice)
        self._config = config
        self._gateway_id = gateway_id
        self._store = store
        self._metrics = metrics
        #: Where the output goes (:meth:`edge_agent.output.GatewayOutput.emit`).
        self._emit = emit
        #: The configured model, else the shipped one: tried after the installed ones.
        self._model_path = Path(configured_model) if configured_model else default_model_path(self.task)
        installed = installed if installed is not None else SlotStart()
        self._installed = installed.installed
        self._installed_shadow = installed.shadow
        #: Statistics saved before the last stop: resumed by the models loaded at start.
        self._saved = installed.stats
        self._clock_ms = clock_ms
        self._lock = threading.RLock()
        self._active: M | None = None
        self._shadow: S | None = None
        self._stats: StatsCounter | None = None
        self._previous_stats: ModelStats | None = None
        #: Why no model runs (every load failure at start), None while one does.
        self.error: str | None = None

    # ----------------------------------------------------------------- what a worker writes

    @property
    def enabled(self) -> bool:
        raise NotImplementedError

    def _load(self, source: ModelInfo | Path) -> M:
        """Load a model and build what runs it (any thread); raises ModelLoadError/OSError/ValueError."""
        raise NotImplementedError

    def _shadow_of(self, model: M, stats: StatsCounter, baseline: StatsCounter) -> S:
        raise NotImplementedError

    def _activated(self, model: M) -> None:
        """``model`` just became the active one (under the lock)."""

    def _loaded_note(self, model: M) -> str:
        """Said after "anomaly model … v3 loaded" at start."""
        return ""

    def _submit(self, swap: Swap[M], timeout_s: float) -> bool:
        """Make ``swap`` (True once made); by default at once, on the caller's thread."""
        with self._lock:
            self._apply(swap)
        return True

    # ----------------------------------------------------------------- start

    def start(self) -> None:
        """Load the model and start the thread; a model that fails to load is logged, not raised.

        Tried in order: the installed current model, the installed previous one, then the
        configured (or shipped) one; each failure is logged and counted
        (``edgehouse_agent_model_load_failures_total{task}``).
        """
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        if not self.enabled:
            log.info("%s disabled in the config: no %s", self.task, self.work)
            return
        if self._load_at_start():
            self._launch()

    def _load_at_start(self) -> bool:
        errors = []
        for candidate in [*self._installed, self._model_path]:
            try:
                model = self._load(candidate)
            except (ModelLoadError, OSError, ValueError) as exc:
                path = candidate.path if isinstance(candidate, ModelInfo) else candidate
                errors.append(str(exc))
                self._metrics.model_load_failures.labels(self.task).inc()
                log.error("%s model %s not loaded: %s", self.task, path, exc)
                continue
            self._activate(model)
            info = model.info
            log.info("%s model %s v%d loaded%s", self.task, info.path, info.version, self._loaded_note(model))
            break
        else:
            self.error = "; ".join(errors)
            log.error("no %s model loaded, %s is off", self.task, self.work)
            return False
        if self._installed_shadow is not None:
            try:
                self._shadow = self._new_shadow(self._load(self._installed_shadow))
            except (ModelLoadError, OSError, ValueError) as exc:
                self._metrics.model_load_failures.labels(self.task).inc()
                log.error("%s shadow model %s not loaded: %s", self.task, self._installed_shadow.path, exc)
        self._saved = None  # models installed from now on count from zero
        self.error = None
        return True

    @property
    def should_run(self) -> bool:
        """Enabled and loaded: a stopped thread then is a fault (for ``/healthz``)."""
        return self.enabled and self._active is not None

    # ----------------------------------------------------------------- making models active

    def _activate(self, model: M) -> None:
        """Make ``model`` the active one; its counts resume what was saved for its version."""
        with self._lock:
            if self._stats is not None:
                self._previous_stats = self._stats.snapshot()
            self._active = model
            saved = self._saved
            self._stats = StatsCounter.resume(
                model.info.version, self._clock_ms(), saved.active if saved is not None else None
            )
            if saved is not None and self._previous_stats is None:
                self._previous_stats = saved.previous
            self._activated(model)
        self._metrics.model_loaded.labels(self.task).set(1)
        self._metrics.model_version.labels(self.task).set(model.info.version)

    def _new_shadow(self, model: M) -> S:
        active = self._active
        assert active is not None
        stats, baseline = resumed_pair(self._saved, model.info.version, active.info.version, self._clock_ms())
        return self._shadow_of(model, stats, baseline)

    def _apply(self, swap: Swap[M]) -> None:
        """Make one swap (under the lock, or on the worker's thread between two units of work)."""
        if swap.kind == "active" and swap.model is not None:
            self._activate(swap.model)
            self._shadow = None
            self._metrics.model_swaps.labels(self.task).inc()
        elif swap.kind == "shadow" and swap.model is not None:
            self._shadow = self._new_shadow(swap.model)
        elif swap.kind == "promote" and self._shadow is not None:
            model = self._shadow.model
            if swap.info is not None:
                model.info = swap.info
            self._shadow = None
            self._activate(model)
            self._metrics.model_swaps.labels(self.task).inc()
        elif swap.kind == "drop_shadow":
            self._shadow = None

    # ----------------------------------------------------------------- the model slot (updater thread)

    @property
    def accepts_models(self) -> bool:
        return self.enabled

    def running_model(self) -> ModelInfo | None:
        active = self._active
        return active.info if active is not None else None

    def shadow_model(self) -> ModelInfo | None:
        shadow = self._shadow
        return shadow.model.info if shadow is not None else None

    def prepare(self, info: ModelInfo) -> object:
        return self._load(info)

    def install(self, prepared: object, mode: InstallMode, timeout_s: float = 30.0) -> bool:
        model: M = prepared  # type: ignore[assignment]  # what prepare() returned
        if not self.running:
            if mode == "shadow":
                raise ModelLoadError(f"{self.work} is not running: nothing to compare a shadow with")
            # Nothing runs yet (no model loaded at start): this model starts the thread.
            with self._lock:
                self._apply(Swap("active", model))
            self.error = None
            self._launch()
            return True
        return self._submit(Swap(mode, model), timeout_s)

    def promote_shadow(self, info: ModelInfo, timeout_s: float = 30.0) -> bool:
        return self._submit(Swap("promote", info=info), timeout_s)

    def drop_shadow(self) -> None:
        if self.running:
            self._submit(Swap("drop_shadow"), 10.0)
        else:
            self._shadow = None

    def relabel(self, info: ModelInfo) -> None:
        active = self._active
        if active is not None and active.info.sha256 == info.sha256:
            active.info = info

    def model_stats(self) -> SlotStats:
        with self._lock:
            stats, shadow, previous = self._stats, self._shadow, self._previous_stats
        return SlotStats(
            active=stats.snapshot() if stats is not None else None,
            shadow=shadow.stats.snapshot() if shadow is not None else None,
            baseline=shadow.baseline.snapshot() if shadow is not None else None,
            previous=previous,
        )
