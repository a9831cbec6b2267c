"""The model updater: desired state from the cloud -> verified install -> report, on its own thread.

Every ``updates.poll_interval_s`` (with jitter), or at once after :meth:`ModelUpdater.check_now`
(the MQTT ``check_models`` command), it fetches ``GET {cloud.url}/api/v1/gateways/{id}/models/desired``
with ``If-None-Match``. It applies key rotations first (:mod:`~edge_agent.updates.trust`), then per
task: checks the signed release (:mod:`~edge_agent.updates.verify`), downloads the artifact
(:mod:`~edge_agent.updates.download`), verifies length and sha256, stores it as
``{dir}/{task}/v{version}-{sha256}.tflite`` next to the signed manifest, has the task's worker load and
pre-warm it on this thread, and hands it over (:class:`~edge_agent.updates.slot.ModelSlot`): the
worker swaps it in between two messages, or runs it in shadow. Every refusal leaves the running
model alone, is counted (``edgehouse_agent_model_update_rejected_total{task,code}``), logged and
kept in the state for ``/status`` and the report. The install state is persisted atomically
(:mod:`~edge_agent.updates.state`). The report (:class:`~protocols.ModelReport`) goes to
``POST …/models/report`` after every change and every ``updates.report_interval_s``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from edge_agent import __version__
from edge_agent.background import BackgroundWorker
from edge_agent.backoff import Backoff
from edge_agent.clock import now_ms
from edge_agent.cloud_client import cloud_client
from edge_agent.config import AgentConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.updates.download import Downloader, DownloadStopped
from edge_agent.updates.report import ModelTaskStatus, build_report, status_lines
from edge_agent.updates.slot import ModelInfo, ModelSlot
from edge_agent.updates.state import (
    InstalledModel,
    InstallState,
    Rejection,
    SavedStats,
    StateFile,
    TaskState,
    write_atomic,
)
from edge_agent.updates.trust import TrustStore
from edge_agent.updates.verify import PERMANENT_CODES, Rejected, check_artifact, check_release, doc_digest
from models.manifest import ModelLoadError
from protocols import (
    DESIRED_PATH,
    REPORT_PATH,
    DesiredModel,
    DesiredModels,
    ModelRelease,
    ModelReport,
    RejectCode,
    SignedKeyRotation,
)

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

_JITTER = 0.1
_STAGING = "staging"


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
    ) -> None:
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
        self._pending: dict[str, int] = {}
        self._etag: str | None = None
        self._desired: dict[str, Any] | None = None
        self._seen_malformed: set[str] = set()
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
        return status_lines(self._slots, self._state, dict(self._pending))

    def report(self) -> ModelReport:
        return build_report(
            self._gateway_id,
            self._agent_version,
            self._clock_ms(),
            self._slots,
            self._state,
            dict(self._pending),
            self._trust.keyids(),
        )

    def reconcile(self) -> None:
        """Make the state agree with what the workers actually loaded at start."""
        changed = False
        for task, slot in self._slots.items():
            ts = self._state.task(task)
            running = slot.running_model()
            if ts.current is not None and (running is None or running.sha256 != ts.current.sha256):
                failed = ts.current
                log.error(
                    "installed %s model v%d (%s) did not load; running %s",
                    task,
                    failed.version,
                    failed.path,
                    f"v{running.version}" if running else "nothing",
                )
                ts.rejected = Rejection(
                    code="load_failed",
                    reason=f"installed model v{failed.version} did not load at start",
                    ts=self._clock_ms(),
                    version=failed.version,
                    metadata_version=failed.metadata_version,
                )
                if running is not None and ts.previous is not None and running.sha256 == ts.previous.sha256:
                    ts.current, ts.previous = ts.previous, None
                else:
                    ts.current = None
                changed = True
            if ts.shadow is not None and slot.shadow_model() is None:
                ts.shadow = None
                changed = True
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
        path = DESIRED_PATH.format(gateway_id=self._gateway_id)
        headers = {"If-None-Match": self._etag} if self._etag and self._desired is not None else {}
        try:
            resp = client.get(path, headers=headers)
        except httpx.HTTPError as exc:
            self._metrics.model_update_failures.labels("desired").inc()
            log.warning("desired models: %s", exc)
            return False
        if resp.status_code == 304 and self._desired is not None:
            raw = self._desired
        elif resp.status_code == 200:
            try:
                raw = resp.json()
            except ValueError:
                raw = None
            if not isinstance(raw, dict):
                self._metrics.model_update_failures.labels("desired").inc()
                log.warning("desired models: not a JSON object")
                return False
            self._desired = raw
            self._etag = resp.headers.get("ETag")
        elif resp.status_code == 404:
            self._mark_checked()
            log.info("desired models: none for this gateway (404)")
            return True
        else:
            self._metrics.model_update_failures.labels("desired").inc()
            log.warning("desired models: HTTP %d", resp.status_code)
            return False
        self.apply(raw, client)
        self._mark_checked()
        return True

    def _mark_checked(self) -> None:
        self._metrics.model_update_last_check.set(time.time())
        self.checks += 1

    def report_once(self, client: httpx.Client) -> bool:
        report = self.report()
        self._safe(self.save_stats, "stats")  # what is reported survives a restart (gates keep counting)
        try:
            resp = client.post(
                REPORT_PATH.format(gateway_id=self._gateway_id),
                content=report.model_dump_json(by_alias=True),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            self._metrics.model_update_failures.labels("report").inc()
            log.warning("model report not sent: %s", exc)
            return False
        if resp.status_code >= 300:
            self._metrics.model_update_failures.labels("report").inc()
            log.warning("model report refused: HTTP %d", resp.status_code)
            return False
        return True

    # ----------------------------------------------------------------- applying the desired state

    def apply(self, raw: dict[str, Any], client: httpx.Client) -> bool:
        """Apply one desired-models document (key rotations first); True when something changed."""
        try:
            envelope = _parse(DesiredModels, {**raw, "models": [], "key_rotations": []})
        except ValidationError as exc:
            self._metrics.model_update_failures.labels("desired").inc()
            log.warning("desired models document invalid: %s", exc.errors(include_url=False)[:1])
            return False
        if envelope.gateway_id != self._gateway_id:
            log.error(
                "desired models are for gateway %r, not %r: ignored", envelope.gateway_id, self._gateway_id
            )
            return False
        changed = self._apply_rotations(raw.get("key_rotations") or [])
        seen: set[str] = set()
        staged: set[str] = set()  # artifacts this document still wants: their .part files stay
        for item in raw.get("models") or []:
            task = item.get("task") if isinstance(item, dict) else None
            try:
                desired = _parse(DesiredModel, item)
            except ValidationError as exc:
                if isinstance(task, str) and task in self._slots:
                    seen.add(task)
                    changed |= self._refuse_malformed(task, item, exc)
                continue
            seen.add(desired.task)
            staged.add(desired.release.signed.artifact.sha256)
            slot = self._slots.get(desired.task)
            if slot is None or not slot.accepts_models:
                continue
            changed |= self._process(slot, desired, client)
        self._drop_stale_parts(staged)
        for task, slot in self._slots.items():
            if task not in seen and slot.shadow_model() is not None:
                log.info("%s shadow model no longer desired: dropped", task)
                slot.drop_shadow()
                self._state.task(task).shadow = None
                changed = True
        if changed:
            self._save()
            self._report_due = True
        return changed

    def _drop_stale_parts(self, wanted: set[str]) -> None:
        """Delete partial downloads of artifacts no longer desired (a resumable ``.part`` of a
        release the cloud replaced or withdrew would otherwise hold its disk space for ever)."""
        staging = self.directory / _STAGING
        if not staging.is_dir():
            return
        for part in staging.glob("*.part"):
            if part.stem not in wanted:
                with contextlib.suppress(OSError):
                    size = part.stat().st_size
                    part.unlink()
                    log.info("dropped the partial download %s (%d bytes): no longer desired", part.name, size)

    def _apply_rotations(self, items: list[Any]) -> bool:
        docs = []
        for item in items:
            try:
                docs.append(_parse(SignedKeyRotation, item))
            except ValidationError as exc:
                key = _raw_digest(item)
                if key not in self._seen_malformed:
                    self._seen_malformed.add(key)
                    self._metrics.model_update_rejected.labels("keys", "bad_signature").inc()
                    log.warning("key rotation malformed, refused: %s", exc.errors(include_url=False)[:1])
        changed, refused = self._trust.apply(docs, self._clock_ms())
        for exc in refused:
            self._metrics.model_update_rejected.labels("keys", exc.code).inc()
            log.warning("key rotation refused (%s): %s", exc.code, exc.reason)
        if changed:
            log.info(
                "key rotation %d applied; trusted keys: %s",
                self._state.keys.rotation_version,
                self._trust.keyids(),
            )
        return changed or bool(refused)

    def _refuse_malformed(self, task: str, item: Any, exc: ValidationError) -> bool:
        key = _raw_digest(item)
        if key in self._seen_malformed:
            return False
        self._seen_malformed.add(key)
        first = exc.errors(include_url=False)[0]
        loc = tuple(str(p) for p in first.get("loc", ()))
        code: RejectCode = "bad_signature" if loc[:2] == ("release", "signatures") else "manifest_mismatch"
        where = ".".join(loc)
        self._refuse(
            task,
            self._state.task(task),
            None,
            None,
            Rejected(code, f"release invalid at {where}: {first.get('msg')}"),
        )
        return True

    def _process(self, slot: ModelSlot, desired: DesiredModel, client: httpx.Client) -> bool:
        task = slot.task
        ts = self._state.task(task)
        doc = desired.release
        rel = doc.signed
        digest = doc_digest(doc)
        running = slot.running_model()
        shadow = slot.shadow_model()
        sha = rel.artifact.sha256
        if digest == ts.last_digest:
            if desired.mode == "active" and shadow is not None and _same(shadow, rel):
                return self._promote(slot, ts, shadow, desired)
            return False
        if ts.rejected is not None and ts.rejected.digest == digest and ts.rejected.code in PERMANENT_CODES:
            return False
        try:
            check_release(
                doc,
                task=task,
                trusted=self._trust.trusted(),
                now_ms=self._clock_ms(),
                last_metadata_version=ts.last_metadata_version,
                running_version=running.version if running else None,
                agent_version=self._agent_version,
            )
            info = ModelInfo(task, rel.model_version, sha, Path(), rel.metadata_version, desired.rollout_id)
            if running is not None and _same(running, rel):
                # The same model under a newer release: record it, reinstall nothing. (Same bytes
                # under another model version is another model: its manifest may differ.)
                info = dataclasses.replace(info, path=running.path)
                slot.relabel(info)
                if desired.mode == "active" and shadow is not None:
                    slot.drop_shadow()
                    ts.shadow = None
                ts.current = InstalledModel.of(info, self._clock_ms())
                log.info(
                    "%s release %d: same artifact as the running model, recorded", task, rel.metadata_version
                )
            elif shadow is not None and _same(shadow, rel):
                if desired.mode == "active":
                    self._promote(slot, ts, dataclasses.replace(info, path=shadow.path), desired)
                else:
                    ts.shadow = InstalledModel.of(
                        dataclasses.replace(info, path=shadow.path), self._clock_ms()
                    )
            else:
                self._pending[task] = rel.model_version
                info = dataclasses.replace(info, path=self._obtain(task, desired, ts, client))
                self._install(slot, ts, info, desired, running)
            ts.last_metadata_version = rel.metadata_version
            ts.last_digest = digest
            ts.rejected = None
            self._prune(task, ts)
        except Rejected as exc:
            self._refuse(task, ts, rel.model_version, rel.metadata_version, exc, digest)
        except DownloadStopped:
            log.info("%s download interrupted by stop; it resumes at the next start", task)
            return False
        finally:
            self._pending.pop(task, None)
        return True

    def _install(
        self,
        slot: ModelSlot,
        ts: TaskState,
        info: ModelInfo,
        desired: DesiredModel,
        running: ModelInfo | None,
    ) -> None:
        try:
            prepared = slot.prepare(info)
            if desired.mode == "shadow" and running is None:
                raise ModelLoadError("no running model to run a shadow next to")
        except (ModelLoadError, OSError, ValueError) as exc:
            raise Rejected("load_failed", str(exc)) from None
        swapped = slot.install(prepared, desired.mode)
        now = self._clock_ms()
        if desired.mode == "shadow":
            ts.shadow = InstalledModel.of(info, now)
            log.info("%s model v%d running in shadow", slot.task, info.version)
            return
        ts.previous = (
            ts.current if ts.current is not None else (InstalledModel.of(running, now) if running else None)
        )
        ts.current = InstalledModel.of(info, now)
        ts.shadow = None
        self._metrics.model_version.labels(slot.task).set(info.version)
        log.info(
            "%s model v%d (release %s) active%s",
            slot.task,
            info.version,
            info.metadata_version,
            "" if swapped else " once the worker reaches its next message",
        )

    def _promote(self, slot: ModelSlot, ts: TaskState, shadow: ModelInfo, desired: DesiredModel) -> bool:
        rel = desired.release.signed
        info = dataclasses.replace(
            shadow, metadata_version=rel.metadata_version, rollout_id=desired.rollout_id
        )
        running = slot.running_model()
        slot.promote_shadow(info)
        now = self._clock_ms()
        ts.previous = (
            ts.current if ts.current is not None else (InstalledModel.of(running, now) if running else None)
        )
        ts.current = InstalledModel.of(info, now)
        ts.shadow = None
        self._metrics.model_version.labels(slot.task).set(info.version)
        log.info("%s shadow model v%d promoted to active", slot.task, info.version)
        return True

    def _obtain(self, task: str, desired: DesiredModel, ts: TaskState, client: httpx.Client) -> Path:
        """``{dir}/{task}/v{version}-{sha256}.tflite`` with exactly the signed bytes and the signed manifest next
        to it (one file pair per model version: two versions may share bytes but not their manifest)."""
        rel = desired.release.signed
        ref = rel.artifact
        target = self.directory / task / f"v{rel.model_version}-{ref.sha256}.tflite"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self._verified(target, ref):
            running = self._slots[task].running_model()  # e.g. the shipped model, not in the state file
            local = [
                m
                for m in (ts.current, ts.previous, ts.shadow, running)
                if m is not None and m.sha256 == ref.sha256
            ]
            if local and self._copy_local(Path(local[0].path), target, ref):
                log.info("%s v%d: reusing the local copy %s", task, rel.model_version, local[0].path)
            else:
                downloader = Downloader(
                    client,
                    self.directory / _STAGING,
                    chunk_bytes=self._config.chunk_bytes,
                    retries=self._config.download_retries,
                    min_free_bytes=self._config.min_free_bytes,
                    backoff=Backoff(self._cloud.backoff_min_s, self._cloud.backoff_max_s, self._rng),
                    stop=self._stopping,
                )
                try:
                    part = downloader.fetch(desired.artifact_path, ref)
                except OSError as exc:
                    raise Rejected("download_failed", f"staging failed: {exc}") from None
                try:
                    check_artifact(part, ref)
                except Rejected:
                    part.unlink(missing_ok=True)
                    raise
                os.replace(part, target)
        write_atomic(target.with_suffix(".json"), json.dumps(rel.manifest, indent=2).encode())
        return target

    @staticmethod
    def _verified(path: Path, ref: Any) -> bool:
        if not path.is_file():
            return False
        try:
            check_artifact(path, ref)
            return True
        except Rejected:
            path.unlink(missing_ok=True)
            return False

    @staticmethod
    def _copy_local(source: Path, target: Path, ref: Any) -> bool:
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            shutil.copyfile(source, tmp)
            check_artifact(tmp, ref)
        except (OSError, Rejected):
            tmp.unlink(missing_ok=True)
            return False
        os.replace(tmp, target)
        return True

    def _prune(self, task: str, ts: TaskState) -> None:
        """Keep the current, previous and shadow files of ``task``; drop the other model files."""
        keep = {Path(m.path).name for m in (ts.current, ts.previous, ts.shadow) if m is not None}
        folder = self.directory / task
        if folder.is_dir():
            for path in folder.iterdir():
                if path.suffix in (".tflite", ".json") and path.with_suffix(".tflite").name not in keep:
                    with contextlib.suppress(OSError):
                        path.unlink()

    def _refuse(
        self,
        task: str,
        ts: TaskState,
        version: int | None,
        metadata_version: int | None,
        exc: Rejected,
        digest: str | None = None,
    ) -> None:
        self._metrics.model_update_rejected.labels(task, exc.code).inc()
        ts.rejected = Rejection(
            code=exc.code,
            reason=exc.reason,
            ts=self._clock_ms(),
            version=version,
            metadata_version=metadata_version,
            digest=digest if exc.code in PERMANENT_CODES else None,
        )
        log.warning(
            "model update refused: task %s, release %s (v%s): %s: %s; the running model stays",
            task,
            metadata_version,
            version,
            exc.code,
            exc.reason,
        )

    def _save(self) -> None:
        self._state_file.save(self._state)


def _parse(model: type[_M], item: Any) -> _M:
    """Validate a decoded JSON value as the wire model (strict models take JSON, not Python objects)."""
    return model.model_validate_json(json.dumps(item))


def _raw_digest(item: Any) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()


def _same(model: ModelInfo, release: ModelRelease) -> bool:
    """Whether ``model`` is exactly the model ``release`` names (bytes and version)."""
    return model.sha256 == release.artifact.sha256 and model.version == release.model_version
