"""The persisted install state (``{updates dir}/state.json``): what runs, what ran, what was refused.

Per task: the current, previous and shadow model (file, version, release), the highest
``metadata_version`` accepted (so a replayed document stays refused after a restart) and the
last refusal; plus the key rotations accepted. Written atomically (tmp file, fsync, rename,
fsync of the folder), so ``kill -9`` leaves the old or the new state, never half of one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.updates.slot import ModelInfo, SlotStart
from edge_agent.updates.stats import SlotStats
from protocols import ModelStats, RejectCode

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstalledModel(_Model):
    version: int
    sha256: str
    path: str
    metadata_version: int | None = None
    rollout_id: int | None = None
    installed_ts: int = 0

    def info(self, task: str) -> ModelInfo:
        return ModelInfo(
            task, self.version, self.sha256, Path(self.path), self.metadata_version, self.rollout_id
        )

    @classmethod
    def of(cls, info: ModelInfo, ts: int) -> InstalledModel:
        return cls(
            version=info.version,
            sha256=info.sha256,
            path=str(info.path),
            metadata_version=info.metadata_version,
            rollout_id=info.rollout_id,
            installed_ts=ts,
        )


class Rejection(_Model):
    code: RejectCode
    reason: str
    ts: int
    version: int | None = None
    metadata_version: int | None = None
    #: sha256 of the refused document: the same document is not re-checked (nor re-counted).
    digest: str | None = None


class SavedStats(_Model):
    """A task's model statistics as last saved (see :class:`~edge_agent.updates.slot.SlotStats`)."""

    active: ModelStats | None = None
    shadow: ModelStats | None = None
    baseline: ModelStats | None = None
    previous: ModelStats | None = None

    @classmethod
    def of(cls, stats: SlotStats) -> SavedStats:
        return cls(active=stats.active, shadow=stats.shadow, baseline=stats.baseline, previous=stats.previous)

    def slot_stats(self) -> SlotStats:
        return SlotStats(
            active=self.active, shadow=self.shadow, baseline=self.baseline, previous=self.previous
        )


class TaskState(_Model):
    current: InstalledModel | None = None
    previous: InstalledModel | None = None
    shadow: InstalledModel | None = None
    last_metadata_version: int = 0
    #: Digest of the last accepted release document (the same one again is a no-op).
    last_digest: str | None = None
    rejected: Rejection | None = None
    #: The workers' statistics, saved with every report and at stop, resumed after a restart.
    stats: SavedStats | None = None

    def record_active(self, info: ModelInfo, running: ModelInfo | None, now_ms: int) -> None:
        """``info`` became the active model (installed or promoted from shadow): the model it
        replaced is kept as the previous one (for rollback), no shadow runs."""
        if self.current is not None:
            self.previous = self.current
        else:
            self.previous = InstalledModel.of(running, now_ms) if running is not None else None
        self.current = InstalledModel.of(info, now_ms)
        self.shadow = None

    def reconcile(self, task: str, running: ModelInfo | None, shadow_runs: bool, now_ms: int) -> bool:
        """Agree with what the worker loaded at start; True when something changed.

        An installed model that did not load is refused (``load_failed``); the previous one
        becomes current when that is what runs. A shadow that does not run is forgotten.
        """
        changed = False
        if self.current is not None and (running is None or running.sha256 != self.current.sha256):
            failed = self.current
            log.error(
                "installed %s model v%d (%s) did not load; running %s",
                task,
                failed.version,
                failed.path,
                f"v{running.version}" if running else "nothing",
            )
            self.rejected = Rejection(
                code="load_failed",
                reason=f"installed model v{failed.version} did not load at start",
                ts=now_ms,
                version=failed.version,
                metadata_version=failed.metadata_version,
            )
            if running is not None and self.previous is not None and running.sha256 == self.previous.sha256:
                self.current, self.previous = self.previous, None
            else:
                self.current = None
            changed = True
        if self.shadow is not None and not shadow_runs:
            self.shadow = None
            changed = True
        return changed

    def files(self) -> set[str]:
        """Names of the model files this task keeps: current, previous and shadow."""
        return {Path(m.path).name for m in (self.current, self.previous, self.shadow) if m is not None}


class KeysState(_Model):
    rotation_version: int = 0
    #: keyid -> base64 public key, added by accepted rotations.
    added: dict[str, str] = Field(default_factory=dict)
    revoked: list[str] = Field(default_factory=list)
    rejected: Rejection | None = None


class InstallState(_Model):
    v: Literal[1] = 1
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    keys: KeysState = Field(default_factory=KeysState)

    def task(self, task: str) -> TaskState:
        return self.tasks.setdefault(task, TaskState())


class StateFile:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def load(self) -> InstallState:
        """The saved state; a fresh one when there is none. A corrupt file is set aside (logged)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return InstallState()
        try:
            return InstallState.model_validate_json(text)
        except ValidationError as exc:
            aside = self.path.with_suffix(".corrupt")
            log.error("model install state %s unreadable (%s); set aside as %s", self.path, exc, aside)
            os.replace(self.path, aside)
            return InstallState()

    def save(self, state: InstallState) -> None:
        write_atomic(self.path, state.model_dump_json(indent=2).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def slot_start(state: InstallState, task: str) -> SlotStart:
    """What the task's worker loads at start: the installed models to try, best first (current,
    previous), the shadow, and the statistics saved before the last stop."""
    ts = state.tasks.get(task)
    if ts is None:
        return SlotStart()
    return SlotStart(
        installed=tuple(m.info(task) for m in (ts.current, ts.previous) if m is not None),
        shadow=ts.shadow.info(task) if ts.shadow is not None else None,
        stats=ts.stats.slot_stats() if ts.stats is not None else None,
    )
