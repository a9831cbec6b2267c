"""Route planning for the API: bounded synchronous solves and cancellable background jobs.

Each job solves in its own ``python -m cloud.routing.worker`` process (the worker the TensorFlow
isolation already uses), driven by one thread of a bounded pool; cancelling terminates that
process, so the solve really stops. Jobs live in memory, owned by one :class:`RouteJobs` that the
app's lifespan starts and stops; nothing lives at module level.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from cloud.routing.plan import Plan
from cloud.routing.plot import has_coordinates, plot_png, to_geojson
from cloud.routing.problem import Problem
from cloud.routing.service import Engine, solve
from cloud.services.errors import Conflict, NotFound, ServiceError

log = logging.getLogger(__name__)

SYNC_MAX_TIME_LIMIT_S: Final = 30.0
JOB_MAX_TIME_LIMIT_S: Final = 600.0
DEFAULT_WORKERS: Final = 2
#: Jobs queued or running at once; more are refused with 429.
MAX_ACTIVE_JOBS: Final = 64
#: Finished jobs kept for their results; the oldest finished ones are forgotten first.
MAX_KEPT_JOBS: Final = 256
#: How long a synchronous solve waits for a free slot before it is refused with 429.
SYNC_SLOT_WAIT_S: Final = 5.0
#: How long a cancelled worker gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE_S: Final = 5.0

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
_FINISHED: Final = frozenset({"done", "failed", "cancelled"})


class TooBusy(ServiceError):
    status_code = 429


class Unavailable(ServiceError):
    status_code = 501


class RouteJobInfo(BaseModel):
    """What a caller sees of a job."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: JobStatus
    progress: float
    best_cost: float | None
    error: str | None
    engine: Engine
    time_limit_s: float
    seed: int
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass
class _Job:
    id: str
    problem: Problem
    time_limit_s: float
    engine: Engine
    seed: int
    created_at: float = field(default_factory=time.time)
    status: JobStatus = "queued"
    progress: float = 0.0
    best_cost: float | None = None
    error: str | None = None
    plan: Plan | None = None
    started_at: float | None = None
    finished_at: float | None = None
    process: subprocess.Popen[str] | None = None

    def info(self) -> RouteJobInfo:
        return RouteJobInfo(
            id=self.id, status=self.status, progress=self.progress, best_cost=self.best_cost, error=self.error,
            engine=self.engine, time_limit_s=self.time_limit_s, seed=self.seed, created_at=self.created_at,
            started_at=self.started_at, finished_at=self.finished_at,
        )


class RouteJobs:
    """The job registry and its worker pool; ``start()`` before use, ``stop()`` cancels everything."""

    def __init__(self, workers: int = DEFAULT_WORKERS, max_active: int = MAX_ACTIVE_JOBS,
                 max_kept: int = MAX_KEPT_JOBS) -> None:
        if workers < 1:
            raise ValueError("workers: must be at least 1")
        self._workers = workers
        self._max_active = max_active
        self._max_kept = max_kept
        self._lock = threading.Lock()
        self._plot_lock = threading.Lock()  # pyplot keeps global state: one figure at a time
        self._sync_slots = threading.BoundedSemaphore(workers)
        self._jobs: dict[str, _Job] = {}
        self._pool: ThreadPoolExecutor | None = None

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="route-job")

    def stop(self) -> None:
        """Cancel queued and running jobs, terminate their workers, and wait for the pool threads."""
        with self._lock:
            pool, self._pool = self._pool, None
            victims = [job for job in self._jobs.values() if job.status not in _FINISHED]
            processes = [self._mark_cancelled(job, "the service stopped") for job in victims]
        for proc in processes:
            if proc is not None:
                _terminate(proc)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # synchronous solves --------------------------------------------------------------------

    def solve_now(self, problem: Problem, time_limit_s: float, engine: Engine, seed: int) -> Plan:
        """Solve in this thread; at most ``workers`` synchronous solves run at once."""
        if not 0 < time_limit_s <= SYNC_MAX_TIME_LIMIT_S:
            raise ServiceError(f"must be in (0, {SYNC_MAX_TIME_LIMIT_S:g}] seconds", field="time_limit_s")
        if not self._sync_slots.acquire(timeout=SYNC_SLOT_WAIT_S):
            raise TooBusy("too many synchronous solves running; retry later or submit a route job")
        try:
            return solve(problem, time_limit_s, engine, seed)
        finally:
            self._sync_slots.release()

    # jobs ----------------------------------------------------------------------------------

    def submit(self, problem: Problem, time_limit_s: float, engine: Engine, seed: int) -> RouteJobInfo:
        if not 0 < time_limit_s <= JOB_MAX_TIME_LIMIT_S:
            raise ServiceError(f"must be in (0, {JOB_MAX_TIME_LIMIT_S:g}] seconds", field="time_limit_s")
        job = _Job(id=secrets.token_hex(12), problem=problem, time_limit_s=time_limit_s, engine=engine, seed=seed)
        with self._lock:
            if self._pool is None:
                raise RuntimeError("route jobs are not started: run the app inside its lifespan")
            active = sum(1 for j in self._jobs.values() if j.status not in _FINISHED)
            if active >= self._max_active:
                raise TooBusy(f"{active} route jobs are queued or running; retry later")
            self._jobs[job.id] = job
            self._pool.submit(self._run, job)
            return job.info()

    def get(self, job_id: str) -> RouteJobInfo:
        with self._lock:
            return self._find(job_id).info()

    def cancel(self, job_id: str) -> RouteJobInfo:
        """Cancel a queued or running job (its worker process is terminated); 409 once it has finished."""
        with self._lock:
            job = self._find(job_id)
            if job.status in ("done", "failed"):
                raise Conflict(f"job is already {job.status}", field="id")
            proc = self._mark_cancelled(job, None) if job.status != "cancelled" else None
            info = job.info()
        if proc is not None:
            _terminate(proc)
        return info

    def result(self, job_id: str) -> tuple[Problem, Plan]:
        with self._lock:
            job = self._find(job_id)
            if job.status != "done" or job.plan is None:
                raise Conflict(f"job is {job.status}: no result", field="id")
            return job.problem, job.plan

    def geojson(self, job_id: str) -> dict[str, Any]:
        problem, plan = self.result(job_id)
        if not has_coordinates(problem):
            raise Conflict("the problem uses matrix travel: its locations have no coordinates", field="travel")
        return to_geojson(problem, plan)

    def plot(self, job_id: str) -> bytes:
        problem, plan = self.result(job_id)
        if not has_coordinates(problem):
            raise Conflict("the problem uses matrix travel: its locations have no coordinates", field="travel")
        with tempfile.TemporaryDirectory(prefix="route-plot-") as tmp, self._plot_lock:
            path = Path(tmp) / "plan.png"
            if not plot_png(problem, plan, path):
                raise Unavailable("plots need matplotlib, which is not installed on this server")
            return path.read_bytes()

    # internals (``_lock`` held where noted) -----------------------------------------------

    def _find(self, job_id: str) -> _Job:  # lock held
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no route job {job_id!r}", field="id")
        return job

    def _mark_cancelled(self, job: _Job, error: str | None) -> subprocess.Popen[str] | None:  # lock held
        job.status, job.error, job.finished_at = "cancelled", error, time.time()
        self._forget_old()
        return job.process

    def _finish(self, job: _Job, status: JobStatus, plan: Plan | None = None, error: str | None = None) -> None:
        with self._lock:
            if job.status == "cancelled":
                return
            job.status, job.plan, job.error, job.finished_at = status, plan, error, time.time()
            if status == "done":
                job.progress = 1.0
                if plan is not None and plan.status != "no_solution":
                    job.best_cost = plan.total_cost
            self._forget_old()

    def _forget_old(self) -> None:  # lock held
        finished = [j.id for j in self._jobs.values() if j.status in _FINISHED]
        for job_id in finished[: max(0, len(finished) - self._max_kept)]:
            del self._jobs[job_id]

    def _run(self, job: _Job) -> None:
        with self._lock:
            if job.status != "queued":
                return
            job.status, job.started_at = "running", time.time()
        try:
            plan = self._solve_in_worker(job)
        except Exception as exc:  # a failed solve fails its job, never the pool
            log.exception("route job %s failed", job.id)
            self._finish(job, "failed", error=str(exc))
            return
        if plan is not None:
            self._finish(job, "done", plan=plan)

    def _solve_in_worker(self, job: _Job) -> Plan | None:
        """The plan, or None when the job was cancelled while its worker ran."""
        request = {
            "problem": job.problem.model_dump(mode="json"),
            "time_limit_s": job.time_limit_s,
            "engine": job.engine,
            "seed": job.seed,
            "max_iterations": None,
        }
        with tempfile.TemporaryFile(mode="w+") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cloud.routing.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            with self._lock:
                job.process = proc
                cancelled = job.status == "cancelled"
            if cancelled:
                _terminate(proc)
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request))
                proc.stdin.close()
            except BrokenPipeError:
                pass  # terminated before it read the request
            plan = self._read_worker(job, proc)
            code = proc.wait()
            with self._lock:
                job.process = None
                if job.status == "cancelled":
                    return None
            if code != 0 or plan is None:
                stderr.seek(0)
                raise RuntimeError(f"routing worker failed (exit {code}): {stderr.read()[-2000:]}")
            return plan

    def _read_worker(self, job: _Job, proc: subprocess.Popen[str]) -> Plan | None:
        assert proc.stdout is not None
        plan: Plan | None = None
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a library printed to stdout, or the line was cut by a termination
            if "progress" in message:
                best, fraction = message["progress"]
                with self._lock:
                    job.best_cost = best if best is not None else job.best_cost
                    job.progress = max(job.progress, min(1.0, float(fraction)))
            elif "plan" in message:
                plan = Plan.model_validate(message["plan"])
        return plan


def _terminate(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if the worker has not exited within the grace period."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
