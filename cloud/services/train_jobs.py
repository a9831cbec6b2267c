"""Retraining jobs: a bounded queue, worker processes, progress, cancel, and registration of candidates.

Each job trains in its own ``python -m cloud.train_worker`` process (its own process group), so
TensorFlow never enters the API process (where OR-Tools routing would crash after it, STACK_NOTES)
and cancelling kills everything the job started. At most ``max_concurrent_train_jobs`` workers run
at once; up to ``max_queued_train_jobs`` wait. State, progress, the last log lines and the metrics
live in the ``train_jobs`` table. Jobs found ``running`` at start were orphaned by a crash or stop
and are marked failed; ``queued`` ones are queued again. The queue is per process: run one replica
that trains (others may read jobs).

A succeeded job registers its candidate (gate passed or not: the gate verdict travels with it)
through the injected ``register`` callable; ``deployed`` says what runs now. Both are normally
cloud.services.model_registry's functions (see cloud.services.train_registry).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel
from sqlalchemy import Engine, select

from cloud.db.engine import reader
from cloud.db.tables import gateways
from cloud.services import train_job_store as store
from cloud.services.errors import Conflict, NotFound, ServiceError
from cloud.services.model_registry import CandidateIn
from cloud.services.train_job_store import FINISHED, TrainJobDetail, TrainJobOut, now_ms
from cloud.services.train_spec import (
    EXIT_REFUSED,
    RESULT_FILE,
    SPEC_FILE,
    TrainJobSpec,
    TrainResult,
    TrainTask,
)
from cloud.services.training_data import parse_scope
from cloud.settings import CloudSettings
from models.runtime import default_model_path

log = logging.getLogger(__name__)

#: Log lines kept per job (the last ones).
MAX_LOG_LINES: Final = 200
MAX_LINE_CHARS: Final = 500
#: Progress is written to the database at most this often (the final state always).
PROGRESS_WRITE_S: Final = 0.5
#: How long a cancelled worker gets to exit after SIGTERM before its process group is killed.
TERMINATE_GRACE_S: Final = 3.0
_POLL_S: Final = 0.2


class TooBusy(ServiceError):
    status_code = 429


class Unprocessable(ServiceError):
    status_code = 422


#: Registers a candidate; returns its model version.
RegisterFn = Callable[[Engine, CandidateIn], int]
#: (version, tflite bytes, manifest) of the model a task/scope runs now, or None.
DeployedFn = Callable[[Engine, str, str], "tuple[int, bytes, dict[str, Any]] | None"]


class TrainParams(BaseModel):
    """What a caller asks for; unset values come from the settings."""

    task: TrainTask
    scope: str = "fleet"
    epochs: int | None = None
    seed: int = 7
    holdout_fraction: float | None = None
    data_from_ts: int | None = None
    data_to_ts: int | None = None


@dataclass
class _Running:
    process: subprocess.Popen[str]
    log: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LOG_LINES))
    error: str | None = None
    timed_out: bool = False


class TrainJobs:
    """Owns the queue and runner threads; ``start(engine)`` before use, ``stop()`` kills running workers."""

    def __init__(
        self,
        settings: CloudSettings,
        register: RegisterFn,
        deployed: DeployedFn,
        python: str = sys.executable,
    ) -> None:
        self._settings = settings
        self._register = register
        self._deployed = deployed
        self._python = python
        self._lock = threading.Lock()
        self._queue: queue.Queue[int] = queue.Queue(maxsize=settings.max_queued_train_jobs)
        self._running: dict[int, _Running] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._engine: Engine | None = None

    # lifecycle -----------------------------------------------------------------------------

    def start(self, engine: Engine) -> None:
        with self._lock:
            if self._engine is not None:
                raise RuntimeError("train jobs already started")
            self._engine = engine
            self._stop.clear()
        orphaned = store.fail_all(engine, "running", "the cloud stopped while this job ran (crash or restart)")
        if orphaned:
            log.warning("%d retraining jobs were running when the cloud stopped: marked failed", orphaned)
        for job_id in store.job_ids_in(engine, "queued"):
            try:
                self._queue.put_nowait(job_id)
            except queue.Full:
                store.transition(engine, job_id, ["queued"], state="failed", finished_ts=now_ms(),
                                 error="the queue was full when the cloud restarted")
        for k in range(self._settings.max_concurrent_train_jobs):
            thread = threading.Thread(target=self._runner, name=f"train-job-{k}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the runners; running workers are killed and their jobs fail; queued jobs wait for the next start."""
        self._stop.set()
        with self._lock:
            running = list(self._running.items())
        for job_id, run in running:
            run.error = "the cloud service stopped while this job ran"
            _kill_group(run.process)
            log.info("retraining job %d stopped with the service", job_id)
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        with self._lock:
            self._engine = None
        while True:  # forget the in-memory queue; the rows stay queued
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    # API -----------------------------------------------------------------------------------

    def submit(self, params: TrainParams, created_by: str) -> TrainJobOut:
        engine = self._engine_or_fail()
        site = self._check_scope(engine, params.scope)
        epochs = params.epochs or (
            self._settings.train_anomaly_epochs if params.task == "anomaly" else self._settings.train_demand_epochs
        )
        stored = {
            "epochs": epochs, "seed": params.seed, "site": site,
            "holdout_fraction": params.holdout_fraction or self._settings.train_holdout_fraction,
            "data_from_ts": params.data_from_ts, "data_to_ts": params.data_to_ts,
        }
        if params.data_from_ts is not None and params.data_to_ts is not None and params.data_to_ts <= params.data_from_ts:
            raise Unprocessable("must be after data_from_ts", field="data_to_ts")
        with self._lock:
            if self._queue.full():
                raise TooBusy(f"{self._queue.qsize()} retraining jobs are waiting; retry later")
            job_id = store.insert(engine, params.task, params.scope, stored, created_by)
            out = store.summary(engine, job_id)  # as queued, before a runner can take it
            self._queue.put_nowait(job_id)
        assert out is not None
        return out

    def get(self, job_id: int) -> TrainJobDetail:
        out = store.detail(self._engine_or_fail(), job_id)
        if out is None:
            raise NotFound(f"no retraining job {job_id}", field="job_id")
        return out

    def list(self, task: str | None = None, state: str | None = None, limit: int = 100) -> list[TrainJobOut]:
        return store.list_jobs(self._engine_or_fail(), task, state, limit)

    def cancel(self, job_id: int) -> TrainJobDetail:
        """Cancel a queued or running job; a running worker's process group is terminated (then killed)."""
        engine = self._engine_or_fail()
        job = self.get(job_id)
        if job.state in FINISHED:
            if job.state == "cancelled":
                return job
            raise Conflict(f"job is already {job.state}", field="job_id")
        store.transition(engine, job_id, ["queued", "running"], state="cancelled", finished_ts=now_ms(),
                         message="cancelled")
        with self._lock:
            run = self._running.get(job_id)
        if run is not None:
            _kill_group(run.process)
        return self.get(job_id)

    def worker_pid(self, job_id: int) -> int | None:
        """The process id of a running job's worker (for operators and tests)."""
        with self._lock:
            run = self._running.get(job_id)
        return run.process.pid if run is not None else None

    # internals -----------------------------------------------------------------------------

    def _engine_or_fail(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise RuntimeError("train jobs are not started: run the app inside its lifespan")
        return engine

    @staticmethod
    def _check_scope(engine: Engine, scope: str) -> str | None:
        try:
            site = parse_scope(scope)
        except ValueError as exc:
            raise Unprocessable(str(exc), field="scope") from None
        if site is not None:
            with reader(engine) as conn:
                known = conn.execute(select(gateways.c.gateway_id).where(gateways.c.site == site).limit(1)).first()
            if known is None:
                raise Unprocessable(f"no gateway is registered at site {site!r}", field="scope")
        return site

    def _runner(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            try:
                self._run(job_id)
            except Exception as exc:  # one broken job never stops the runner
                log.exception("retraining job %d failed", job_id)
                engine = self._engine
                if engine is not None:
                    store.transition(engine, job_id, ["queued", "running"], state="failed", finished_ts=now_ms(),
                                     error=f"{type(exc).__name__}: {exc}")

    def _run(self, job_id: int) -> None:
        engine = self._engine_or_fail()
        if not store.transition(engine, job_id, ["queued"], state="running", started_ts=now_ms(),
                                message="starting the worker"):
            return  # cancelled while queued
        row = store.get(engine, job_id)
        assert row is not None
        job_dir = (self._settings.train_workdir / f"job-{job_id}").resolve()
        spec, parent_version = self._spec(engine, row, job_dir)
        store.transition(engine, job_id, ["running"], parent_version=parent_version)
        spec_path = job_dir / SPEC_FILE
        spec_path.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
        run = self._launch(job_id, spec_path)
        if run is None:
            return
        code = self._follow(engine, job_id, run)
        self._conclude(engine, row, spec, run, code, parent_version)

    def _spec(self, engine: Engine, row: Any, job_dir: Path) -> tuple[TrainJobSpec, int | None]:
        """Write the deployed model into the job directory and build the worker's spec."""
        task, params = str(row.task), dict(row.params)
        deployed_dir = job_dir / "deployed"
        deployed_dir.mkdir(parents=True, exist_ok=True)
        current = self._deployed(engine, task, str(row.scope))
        version: int | None = None
        deployed_path = default_model_path(task)
        if current is not None:
            version, tflite, manifest = current
            deployed_path = deployed_dir / f"{task}.tflite"
            deployed_path.write_bytes(tflite)
            deployed_path.with_suffix(".json").write_text(json.dumps(manifest), encoding="utf-8")
        s = self._settings
        spec = TrainJobSpec(
            job_id=int(row.job_id), database_url=s.database_url, task=task, scope=str(row.scope),  # type: ignore[arg-type]
            seed=int(params["seed"]), epochs=int(params["epochs"]), out_dir=job_dir / "candidate",
            deployed_model=deployed_path, deployed_version=version,
            parent_keras=self._parent_keras(engine, task, deployed_path, version),
            data_from_ts=params.get("data_from_ts"), data_to_ts=params.get("data_to_ts"),
            holdout_fraction=float(params["holdout_fraction"]), min_readings=s.train_min_readings,
            demand_direction=s.train_demand_direction, gate_tolerance=s.train_gate_tolerance,
        )
        return spec, version

    def _parent_keras(self, engine: Engine, task: str, deployed_path: Path, version: int | None) -> Path | None:
        """The Keras model behind the deployed version: a candidate of ours, or the shipped default's."""
        if version is not None:
            job_id = store.candidate_keras_job(engine, task, version)
            if job_id is not None:
                path = (self._settings.train_workdir / f"job-{job_id}" / "candidate" / f"{task}.keras").resolve()
                if path.is_file():
                    return path
        default = default_model_path(task)
        shipped = default.with_suffix(".keras")
        try:
            same = deployed_path.read_bytes() == default.read_bytes()
        except OSError:
            return None
        return shipped if same and shipped.is_file() else None

    def _launch(self, job_id: int, spec_path: Path) -> _Running | None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        process = subprocess.Popen(
            [self._python, "-m", "cloud.train_worker", "--spec", str(spec_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True, env=env,
        )
        run = _Running(process)
        with self._lock:
            self._running[job_id] = run
        job = store.summary(self._engine_or_fail(), job_id)
        if job is None or job.state != "running" or self._stop.is_set():  # cancelled meanwhile
            _kill_group(process)
            process.wait()
            with self._lock:
                self._running.pop(job_id, None)
            return None
        return run

    def _follow(self, engine: Engine, job_id: int, run: _Running) -> int:
        """Stream the worker's output into the job row until it exits; its exit status."""
        timeout = self._settings.train_job_timeout_s

        def on_timeout() -> None:
            run.timed_out = True
            _kill_group(run.process)

        timer = threading.Timer(timeout, on_timeout)
        timer.daemon = True
        timer.start()
        last_write = 0.0
        progress, message = 0.0, "worker started"
        try:
            assert run.process.stdout is not None
            for raw in run.process.stdout:
                line = raw.rstrip()[:MAX_LINE_CHARS]
                if not line:
                    continue
                event = _json_object(line)
                if event is not None and "progress" in event:
                    progress = max(progress, min(1.0, float(event["progress"])))
                    message = str(event.get("message", ""))[:MAX_LINE_CHARS]
                    run.log.append(f"{progress:5.1%} {message}")
                elif event is not None and "error" in event:
                    run.error = str(event["error"])
                    run.log.append(f"error: {run.error}")
                else:
                    run.log.append(line)
                if time.monotonic() - last_write >= PROGRESS_WRITE_S:
                    store.transition(engine, job_id, ["running"], progress=progress, message=message, log=list(run.log))
                    last_write = time.monotonic()
            code = run.process.wait()
        finally:
            timer.cancel()
            with self._lock:
                self._running.pop(job_id, None)
        store.transition(engine, job_id, ["running", "cancelled"], log=list(run.log))
        store.transition(engine, job_id, ["running"], progress=progress, message=message)
        return code

    def _conclude(self, engine: Engine, row: Any, spec: TrainJobSpec, run: _Running, code: int,
                  parent_version: int | None) -> None:
        job_id = int(row.job_id)
        if run.timed_out:
            self._fail(engine, job_id, f"timed out after {self._settings.train_job_timeout_s:g} s", run)
            return
        if code != 0:
            if run.error is None:
                tail = " | ".join(list(run.log)[-5:])
                run.error = (f"the worker exited with status {code}" if code > 0 else f"the worker was killed (signal {-code})") + (
                    f": {tail}" if tail and code != EXIT_REFUSED else ""
                )
            self._fail(engine, job_id, run.error, run)
            return
        result = TrainResult.model_validate_json((spec.out_dir / RESULT_FILE).read_text(encoding="utf-8"))
        manifest_path = result.tflite.with_suffix(".json")
        candidate = CandidateIn(
            task=result.task, scope=result.scope, tflite=result.tflite.read_bytes(),
            manifest=json.loads(manifest_path.read_text(encoding="utf-8")), metrics=result.metrics,
            data_from_ts=result.data_from_ts, data_to_ts=result.data_to_ts, parent_version=parent_version,
            created_by=str(row.created_by), job_id=job_id, gate_passed=result.gate_passed,
            gate_reason=result.gate_reason,
        )
        try:
            version = self._register(engine, candidate)
        except Exception as exc:
            log.exception("registering the candidate of job %d failed", job_id)
            self._fail(engine, job_id, f"registering the candidate failed: {exc}", run)
            return
        store.transition(
            engine, job_id, ["running"], state="succeeded", progress=1.0, finished_ts=now_ms(),
            message=f"candidate v{version} registered; gate {'passed' if result.gate_passed else 'failed'}",
            metrics=result.metrics, candidate_version=version, gate_passed=result.gate_passed,
            gate_reason=result.gate_reason, data_from_ts=result.data_from_ts, data_to_ts=result.data_to_ts,
            log=list(run.log),
        )

    @staticmethod
    def _fail(engine: Engine, job_id: int, error: str, run: _Running) -> None:
        run.log.append(f"failed: {error}"[:MAX_LINE_CHARS])
        store.transition(engine, job_id, ["running"], state="failed", finished_ts=now_ms(), error=error,
                         message=error[:MAX_LINE_CHARS], log=list(run.log))


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM the worker's process group, SIGKILL it if the worker has not exited within the grace period."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
