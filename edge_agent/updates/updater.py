"""The model updater: desired state from the cloud -> verified install -> report, on its own thread.

Every ``updates.poll_interval_s`` (with jitter), or at once after :meth:`ModelUpdater.check_now`
(the MQTT ``check_models`` command), it fetches ``GET {cloud.url}/api/v1/gateways/{id}/models/desired``
with ``If-None-Match`` (:mod:`~edge_agent.updates.client`) and applies what changed
(:mod:`~edge_agent.updates.installer`: key rotations, then per task verify, obtain the artifact,
have the task's worker load and pre-warm it on this thread and swap it in between two messages,
or run it in shadow). The install state is persisted atomically (:mod:`~edge_agent.updates.state`).
The report (:class:`~protocols.ModelReport`) goes to ``POST …/models/report`` after every change
and every ``updates.report_interval_s``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping

import httpx

from edge_agent import __version__
from edge_agent.background import BackgroundWorker
from edge_agent.backoff import Backoff
from edge_agent.clock import now_ms
from edge_agent.cloud_client import cloud_client
from edge_agent.config import AgentConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.updates.artifacts import Artifacts
from edge_agent.updates.client import UpdateClient
from edge_agent.updates.installer import Installer
from edge_agent.updates.report import ModelTaskStatus, build_report, status_lines
from edge_agent.updates.slot import ModelSlot
from edge_agent.updates.state import InstallState, SavedStats, StateFile
from edge_agent.updates.trust import TrustStore
from protocols import GatewayHealth, ModelReport

log = logging.getLogger(__name__)

_JITTER = 0.1


class ModelUpdater(BackgroundWorker[httpx.Client]):
    """:meth:`start` / :meth:`stop`; :meth:`check_now` from any thread (sets an event, nothing more)."""

    name = "model-updates"

    def __init__(
        self,
        config: AgentConfig,
        slots: Mapping[str, ModelSlot],
        metrics: AgentMetrics,
        state_file: StateFile,
        state: InstallState,
        *,
        clock_ms: Callable[[], int] = now_ms,
        agent_version: str = __version__,
        rng: random.Random | None = None,
        health: Callable[[], GatewayHealth | None] = lambda: None,
    ) -> None:
        self._health = health
        super().__init__(metrics)
        self.enabled = config.updates_enabled
        self._config = config.updates
        self._cloud = config.cloud
        self._gateway_id = config.gateway_id
        self.directory = config.updates_dir
        self._slots = dict(slots)
        self._metrics = metrics
        self._state_file = state_file
        self._state = state
        for task in self._slots:
            state.task(task)  # every task present: readers on other threads iterate a fixed dict
        self._trust = TrustStore(config.updates.all_trusted_keys(), state.keys)
        self._clock_ms = clock_ms
        self._agent_version = agent_version
        self._rng = rng if rng is not None else random.Random()
        self._client = UpdateClient(config.gateway_id, metrics)
        artifacts = Artifacts(self.directory, config.updates, config.cloud, self._rng, self._stopping)
        self._installer = Installer(
            config.gateway_id, self._slots, metrics, state, self._trust, artifacts, clock_ms, agent_version
        )
        self._report_due = True
        self._check_requested = threading.Event()
        poll = config.updates.poll_interval_s
        self._backoff = Backoff(min(config.cloud.backoff_min_s, poll), min(config.cloud.backoff_max_s, poll))
        self._next_check = self._next_report = 0.0
        self.checks = 0  # completed desired-state checks (200 or 304), for tests and status

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        if not self.enabled:
            log.info("model updates disabled")
            return
        if not self._trust.trusted():
            log.warning("updates.trusted_keys is empty: every model release will be refused (unknown_key)")
        self.reconcile()
        self._launch()

    def stop(self, timeout_s: float | None = None) -> bool:
        """End the thread (an interrupted download resumes at the next start), then save the stats."""
        started = self._thread is not None
        stopped = super().stop(timeout_s)
        if started and stopped:
            self._safe(self.save_stats, "stats")
        return stopped

    def save_stats(self) -> None:
        """Keep the workers' statistics in the state file (resumed after a restart)."""
        for task, slot in self._slots.items():
            self._state.task(task).stats = SavedStats.of(slot.model_stats())
        self._save()

    @property
    def should_run(self) -> bool:
        return self.enabled

    def check_now(self) -> bool:
        """Fetch the desired models now (from any thread); False when updates are off."""
        if not self.enabled:
            log.info("check_models: model updates are disabled")
            return False
        self._check_requested.set()
        self.notify()
        return True

    # ----------------------------------------------------------------- views

    def status(self) -> dict[str, ModelTaskStatus]:
        return status_lines(self._slots, self._state, dict(self._installer.pending))

    def report(self) -> ModelReport:
        return build_report(
            self._gateway_id,
            self._agent_version,
            self._clock_ms(),
            self._slots,
            self._state,
            dict(self._installer.pending),
            self._trust.keyids(),
            self._gateway_health(),
        )

    def _gateway_health(self) -> GatewayHealth | None:
        """The agent's health for the report; None (reported without it) when it cannot be read now."""
        try:
            return self._health()
        except (OSError, ValueError, sqlite3.Error) as exc:
            log.warning("gateway health not reported: %s", exc)
            return None

    def reconcile(self) -> None:
        """Make the state agree with what the workers actually loaded at start."""
        changed = False
        for task, slot in self._slots.items():
            running = slot.running_model()
            shadow_runs = slot.shadow_model() is not None
            changed |= self._state.task(task).reconcile(task, running, shadow_runs, self._clock_ms())
            if running is not None:
                self._metrics.model_version.labels(task).set(running.version)
        if changed:
            self._save()

    # ----------------------------------------------------------------- the thread

    def session(self) -> contextlib.AbstractContextManager[httpx.Client]:
        self._next_check = self._next_report = time.monotonic()
        return cloud_client(self._cloud)

    def step(self, client: httpx.Client) -> None:
        """The desired-state check when due (or asked for), then the report when due."""
        if self._check_requested.is_set() or time.monotonic() >= self._next_check:
            self._check_requested.clear()
            if self._safe(lambda: self.check_once(client), "check"):
                self._backoff.reset()
                delay = self._config.poll_interval_s * self._rng.uniform(1 - _JITTER, 1 + _JITTER)
            else:
                delay = self._backoff.next_delay()
            self._next_check = time.monotonic() + delay
        if self.stopping:
            return
        if self._report_due or time.monotonic() >= self._next_report:
            self._report_due = False
            self._safe(lambda: self.report_once(client), "report")
            self._next_report = time.monotonic() + self._config.report_interval_s
        self.wait_for_wake(max(0.0, min(self._next_check, self._next_report) - time.monotonic()))

    def _safe(self, step: Callable[[], bool | None], op: str) -> bool:
        try:
            return step() is not False
        except (OSError, ValueError) as exc:  # local trouble (disk, state file): logged, retried later
            self._metrics.model_update_failures.labels(op).inc()
            log.error("model update %s failed: %s", op, exc)
            return False

    def check_once(self, client: httpx.Client) -> bool:
        """One desired-state fetch and whatever it asks for; False when the fetch failed."""
        fetched = self._client.fetch(client)
        if not fetched.ok:
            return False
        if fetched.desired is not None and self._installer.apply(fetched.desired, client):
            self._save()
            self._report_due = True
        self._mark_checked()
        return True

    def _mark_checked(self) -> None:
        self._metrics.model_update_last_check.set(time.time())
        self.checks += 1

    def report_once(self, client: httpx.Client) -> bool:
        report = self.report()
        self._safe(self.save_stats, "stats")  # what is reported survives a restart (gates keep counting)
        return self._client.post_report(client, report)

    def _save(self) -> None:
        self._state_file.save(self._state)
