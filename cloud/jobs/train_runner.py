"""Run one claimed retraining job: a ``python -m cloud.train_worker`` child, then register its candidate.

The child trains in its own process and session (TensorFlow never enters the worker, which may also
drive routing children; cancelling kills everything the job started). The deployed model comes from
the registry; the Keras model to fine-tune from comes from the database (``train_job_artifacts`` of
the job that produced the deployed version) or is the shipped default's, so any worker on any host
can run any job. Progress, message and the last log lines go into the job row while it runs. A
succeeded job registers its candidate (gate passed or not: the verdict travels with it) and stores
its ``.keras`` and ``result.json``; a retried job that had registered its candidate before its worker
died reuses that version instead of registering a second one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine

from cloud.clock import now_ms
from cloud.db import model_repo, train_repo
from cloud.db.engine import reader
from cloud.jobs.child import Child
from cloud.jobs.queue import finish, give_back, still_held
from cloud.jobs.supervise import JobContext, supervise
from cloud.services import train_registry
from cloud.services.model_registry import CandidateIn
from cloud.services.train_spec import EXIT_REFUSED, RESULT_FILE, SPEC_FILE, TrainJobSpec, TrainResult
from cloud.settings import CloudSettings
from models.runtime import default_model_path

log = logging.getLogger(__name__)

#: Log lines kept per job (the last ones).
MAX_LOG_LINES: Final = 200
MAX_LINE_CHARS: Final = 500

#: Registers a candidate; returns its model version.
RegisterFn = Callable[[Engine, CandidateIn], int]
#: (version, tflite bytes, manifest) of the model a task/scope runs now, or None.
DeployedFn = Callable[[Engine, str, str], "tuple[int, bytes, dict[str, Any]] | None"]


@dataclass
class _Follow:
    log: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LOG_LINES))
    progress: float = 0.0
    message: str = "worker started"
    error: str | None = None

    def line(self, raw: str) -> None:
        line = raw.rstrip()[:MAX_LINE_CHARS]
        if not line:
            return
        event = _json_object(line)
        if event is not None and "progress" in event:
            self.progress = max(self.progress, min(1.0, float(event["progress"])))
            self.message = str(event.get("message", ""))[:MAX_LINE_CHARS]
            self.log.append(f"{self.progress:5.1%} {self.message}")
        elif event is not None and "error" in event:
            self.error = str(event["error"])
            self.log.append(f"error: {self.error}"[:MAX_LINE_CHARS])
        else:
            self.log.append(line)


@dataclass
class TrainRunner:
    """Runs retraining jobs for a worker; ``register``/``deployed`` are the model registry's (tests inject)."""

    settings: CloudSettings
    register: RegisterFn = train_registry.register_candidate
    deployed: DeployedFn = train_registry.deployed_model
    python: str = sys.executable

    def run(self, ctx: JobContext, row: Any) -> None:
        job_id = int(row.job_id)
        job_dir = (self.settings.train_workdir / f"job-{job_id}").resolve()
        spec, parent_version = self._spec(ctx.engine, row, job_dir)
        spec_path = job_dir / SPEC_FILE
        spec_path.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
        follow = _Follow()
        follow.log.extend(list(row.log or [])[-MAX_LOG_LINES:] if int(row.attempts) > 1 else [])
        if int(row.attempts) > 1:
            follow.log.append(f"attempt {row.attempts} on worker {ctx.worker}")
        finish_values = {"parent_version": parent_version}
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        child = Child([self.python, "-m", "cloud.train_worker", "--spec", str(spec_path), "--lifeline"], env=env,
                      merge_stderr=True)
        try:
            outcome, code = supervise(
                ctx, child, follow.line,
                lambda: {"progress": follow.progress, "message": follow.message, "log": list(follow.log),
                         **finish_values},
                timeout_s=self.settings.train_job_timeout_s)
        finally:
            child.close()
        if outcome == "stopped":
            follow.log.append("the worker stopped; queued again")
            give_back(ctx.engine, ctx.queue, job_id, ctx.worker)
            return
        if outcome == "cancelled":
            with ctx.engine.begin() as conn:  # keep what the job printed until it was stopped
                train_repo.transition(conn, job_id, ["cancelled"], log=list(follow.log))
            return
        if outcome == "lost":
            return
        if outcome == "timed_out":
            self._fail(ctx, follow, f"timed out after {self.settings.train_job_timeout_s:g} s")
            return
        assert code is not None
        if code != 0:
            error = follow.error
            if error is None:
                tail = " | ".join(list(follow.log)[-5:])
                error = (f"the worker exited with status {code}" if code > 0 else f"the worker was killed (signal {-code})"
                         ) + (f": {tail}" if tail and code != EXIT_REFUSED else "")
            self._fail(ctx, follow, error)
            return
        self._conclude(ctx, row, spec, follow, parent_version)

    # internals -------------------------------------------------------------------------------

    def _spec(self, engine: Engine, row: Any, job_dir: Path) -> tuple[TrainJobSpec, int | None]:
        """Write the deployed model (and the Keras model behind it) into the job directory; the worker's spec."""
        task, params = str(row.task), dict(row.params)
        deployed_dir = job_dir / "deployed"
        deployed_dir.mkdir(parents=True, exist_ok=True)
        current = self.deployed(engine, task, str(row.scope))
        version: int | None = None
        deployed_path = default_model_path(task)
        if current is not None:
            version, tflite, manifest = current
            deployed_path = deployed_dir / f"{task}.tflite"
            deployed_path.write_bytes(tflite)
            deployed_path.with_suffix(".json").write_text(json.dumps(manifest), encoding="utf-8")
        s = self.settings
        spec = TrainJobSpec(
            job_id=int(row.job_id), database_url=s.database_url, task=task, scope=str(row.scope),  # type: ignore[arg-type]
            seed=int(params["seed"]), epochs=int(params["epochs"]), out_dir=job_dir / "candidate",
            deployed_model=deployed_path, deployed_version=version,
            parent_keras=self._parent_keras(engine, task, deployed_path, version, deployed_dir),
            data_from_ts=params.get("data_from_ts"), data_to_ts=params.get("data_to_ts"),
            holdout_fraction=float(params["holdout_fraction"]), min_readings=s.train_min_readings,
            demand_direction=s.train_demand_direction, gate_tolerance=s.train_gate_tolerance,
        )
        return spec, version

    @staticmethod
    def _parent_keras(engine: Engine, task: str, deployed_path: Path, version: int | None,
                      deployed_dir: Path) -> Path | None:
        """The Keras model behind the deployed version: a candidate of ours (from the database) or the shipped one."""
        if version is not None:
            with reader(engine) as conn:
                data = train_repo.candidate_artifact(conn, task, version, f"{task}.keras")
            if data is not None:
                path = deployed_dir / f"{task}.keras"
                path.write_bytes(data)
                return path
        default = default_model_path(task)
        shipped = default.with_suffix(".keras")
        try:
            same = deployed_path.read_bytes() == default.read_bytes()
        except OSError:
            return None
        return shipped if same and shipped.is_file() else None

    def _conclude(self, ctx: JobContext, row: Any, spec: TrainJobSpec, follow: _Follow,
                  parent_version: int | None) -> None:
        job_id = int(row.job_id)
        result = TrainResult.model_validate_json((spec.out_dir / RESULT_FILE).read_text(encoding="utf-8"))
        if still_held(ctx.engine, ctx.queue, job_id, ctx.worker) != "held":
            return  # cancelled or taken over while the worker wrote its result
        with reader(ctx.engine) as conn:  # an earlier attempt may have registered it before its worker died
            earlier = model_repo.version_of_job(conn, result.task, job_id)
        if earlier is not None:
            version = earlier
        else:
            candidate = CandidateIn(
                task=result.task, scope=result.scope, tflite=result.tflite.read_bytes(),
                manifest=json.loads(result.tflite.with_suffix(".json").read_text(encoding="utf-8")),
                metrics=result.metrics, data_from_ts=result.data_from_ts, data_to_ts=result.data_to_ts,
                parent_version=parent_version, created_by=str(row.created_by), job_id=job_id,
                gate_passed=result.gate_passed, gate_reason=result.gate_reason,
            )
            try:
                version = self.register(ctx.engine, candidate)
            except Exception as exc:
                log.exception("registering the candidate of job %d failed", job_id)
                self._fail(ctx, follow, f"registering the candidate failed: {exc}")
                return
        self._store_artifacts(ctx.engine, job_id, spec, result)
        finish(
            ctx.engine, ctx.queue, job_id, ctx.worker, "succeeded", progress=1.0,
            message=f"candidate v{version} registered; gate {'passed' if result.gate_passed else 'failed'}",
            metrics=result.metrics, candidate_version=version, gate_passed=result.gate_passed,
            gate_reason=result.gate_reason, data_from_ts=result.data_from_ts, data_to_ts=result.data_to_ts,
            log=list(follow.log),
        )

    @staticmethod
    def _store_artifacts(engine: Engine, job_id: int, spec: TrainJobSpec, result: TrainResult) -> None:
        files = [spec.out_dir / RESULT_FILE] + ([result.keras] if result.keras is not None else [])
        stored = [(path.name, path.read_bytes()) for path in files if path.is_file()]
        with engine.begin() as conn:
            train_repo.replace_artifacts(conn, job_id, stored, now_ms())

    @staticmethod
    def _fail(ctx: JobContext, follow: _Follow, error: str) -> None:
        follow.log.append(f"failed: {error}"[:MAX_LINE_CHARS])
        finish(ctx.engine, ctx.queue, ctx.job_id, ctx.worker, "failed", error=error, message=error[:MAX_LINE_CHARS],
               log=list(follow.log))


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
