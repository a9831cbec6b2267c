"""Applying one desired-models document: key rotations, then per task verify -> obtain -> install.

Per task: a release already applied is a no-op (or the promotion of its shadow); a refusal with
a permanent code is not re-checked; otherwise the signed release is checked
(:mod:`~edge_agent.updates.verify`), the artifact obtained (:mod:`~edge_agent.updates.artifacts`),
prepared by the task's worker on this thread and handed over
(:class:`~edge_agent.updates.slot.ModelSlot`), and the install state updated
(:class:`~edge_agent.updates.state.TaskState`). Every refusal leaves the running model alone, is
counted (``edgehouse_agent_model_update_rejected_total{task,code}``), logged and kept in the state.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from edge_agent.metrics import AgentMetrics
from edge_agent.updates.artifacts import Artifacts
from edge_agent.updates.client import Desired, Malformed
from edge_agent.updates.download import DownloadStopped
from edge_agent.updates.slot import ModelInfo, ModelSlot
from edge_agent.updates.state import InstalledModel, InstallState, Rejection, TaskState
from edge_agent.updates.trust import TrustStore
from edge_agent.updates.verify import PERMANENT_CODES, Rejected, check_release, doc_digest
from models.manifest import ModelLoadError
from protocols import DesiredModel, ModelRelease, SignedKeyRotation

log = logging.getLogger(__name__)


class Installer:
    """Runs on the updater's thread; :attr:`pending` (task -> version downloading) is read by others."""

    def __init__(
        self,
        gateway_id: str,
        slots: Mapping[str, ModelSlot],
        metrics: AgentMetrics,
        state: InstallState,
        trust: TrustStore,
        artifacts: Artifacts,
        clock_ms: Callable[[], int],
        agent_version: str,
    ) -> None:
        self._gateway_id = gateway_id
        self._slots = slots
        self._metrics = metrics
        self._state = state
        self._trust = trust
        self._artifacts = artifacts
        self._clock_ms = clock_ms
        self._agent_version = agent_version
        self.pending: dict[str, int] = {}
        #: Digests of malformed items already refused (each is refused and counted once).
        self._seen_malformed: set[str] = set()

    def apply(self, desired: Desired, client: httpx.Client) -> bool:
        """Apply one desired-models document (key rotations first); True when something changed."""
        if desired.gateway_id != self._gateway_id:
            log.error(
                "desired models are for gateway %r, not %r: ignored", desired.gateway_id, self._gateway_id
            )
            return False
        changed = self._apply_rotations(desired.key_rotations)
        seen: set[str] = set()
        for item in desired.models:
            if isinstance(item, Malformed):
                if item.task is not None and item.task in self._slots:
                    seen.add(item.task)
                    changed |= self._refuse_malformed(item.task, item)
                continue
            seen.add(item.task)
            slot = self._slots.get(item.task)
            if slot is None or not slot.accepts_models:
                continue
            changed |= self._process(slot, item, client)
        self._artifacts.drop_stale_parts(desired.wanted_artifacts())
        for task, slot in self._slots.items():
            if task not in seen and slot.shadow_model() is not None:
                log.info("%s shadow model no longer desired: dropped", task)
                slot.drop_shadow()
                self._state.task(task).shadow = None
                changed = True
        return changed

    def _apply_rotations(self, items: tuple[SignedKeyRotation | Malformed, ...]) -> bool:
        docs = []
        for item in items:
            if not isinstance(item, Malformed):
                docs.append(item)
            elif item.digest not in self._seen_malformed:
                self._seen_malformed.add(item.digest)
                self._metrics.model_update_rejected.labels("keys", item.code).inc()
                log.warning("key rotation malformed, refused: %s", item.reason)
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

    def _refuse_malformed(self, task: str, item: Malformed) -> bool:
        if item.digest in self._seen_malformed:
            return False
        self._seen_malformed.add(item.digest)
        self._refuse(task, self._state.task(task), None, None, Rejected(item.code, item.reason))
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
                self.pending[task] = rel.model_version
                info = dataclasses.replace(info, path=self._obtain(task, desired, ts, client))
                self._install(slot, ts, info, desired, running)
            ts.last_metadata_version = rel.metadata_version
            ts.last_digest = digest
            ts.rejected = None
            self._artifacts.prune(task, ts.files())
        except Rejected as exc:
            self._refuse(task, ts, rel.model_version, rel.metadata_version, exc, digest)
        except DownloadStopped:
            log.info("%s download interrupted by stop; it resumes at the next start", task)
            return False
        finally:
            self.pending.pop(task, None)
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
        if desired.mode == "shadow":
            ts.shadow = InstalledModel.of(info, self._clock_ms())
            log.info("%s model v%d running in shadow", slot.task, info.version)
            return
        self._record_active(slot.task, ts, info, running)
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
        self._record_active(slot.task, ts, info, running)
        log.info("%s shadow model v%d promoted to active", slot.task, info.version)
        return True

    def _record_active(self, task: str, ts: TaskState, info: ModelInfo, running: ModelInfo | None) -> None:
        """``info`` runs now (installed or promoted): the state and the version gauge say so."""
        ts.record_active(info, running, self._clock_ms())
        self._metrics.model_version.labels(task).set(info.version)

    def _obtain(self, task: str, desired: DesiredModel, ts: TaskState, client: httpx.Client) -> Path:
        """The artifact as a model file; a copy this gateway already has (an installed model, the
        shipped one) is used before downloading."""
        sha = desired.release.signed.artifact.sha256
        running = self._slots[task].running_model()  # e.g. the shipped model, not in the state file
        local = [
            Path(m.path)
            for m in (ts.current, ts.previous, ts.shadow, running)
            if m is not None and m.sha256 == sha
        ]
        return self._artifacts.obtain(task, desired, client, local)

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


def _same(model: ModelInfo, release: ModelRelease) -> bool:
    """Whether ``model`` is exactly the model ``release`` names (bytes and version)."""
    return model.sha256 == release.artifact.sha256 and model.version == release.model_version
