"""A job worker: slots that claim and run jobs of the queues it serves, and an upkeep loop.

``Worker(settings, engine).start()`` runs ``concurrency[queue]`` slots per queue, each a
:class:`cloud.background.Loop` that claims the oldest queued job (cloud.jobs.queue) and runs it to
the end (route jobs: cloud.jobs.route_runner; train jobs: cloud.jobs.train_runner), and an upkeep loop
that releases jobs whose worker died (lease expired: queued again or failed after
``job_max_attempts``) and deletes finished route jobs past their retention. :meth:`Worker.stop`
stops the slots; a job still running is stopped and queued again at once for another worker. The
worker process itself imports neither TensorFlow nor OR-Tools: both run in the jobs' children.
It runs as ``edgehouse-cloud worker`` or embedded in an API process (``EMBEDDED_WORKER``).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Final

from sqlalchemy import Engine

from cloud.background import Loop
from cloud.jobs.queue import (
    QUEUES,
    ROUTE,
    Queue,
    QueueName,
    claim,
    delete_finished,
    finish,
    has_queued,
    release_expired,
)
from cloud.jobs.route_runner import run_route_job
from cloud.jobs.supervise import JobContext
from cloud.jobs.train_runner import TrainRunner
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

#: Finished route jobs are deleted this often (their retention is a setting).
RETENTION_PASS_S: Final = 3600.0
DAY_MS: Final = 86_400_000


def worker_name() -> str:
    """``host:pid:nonce``: unique per process start, readable in the job rows."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(self, settings: CloudSettings, engine: Engine, queues: Sequence[QueueName] = ("route", "train"),
                 concurrency: Mapping[QueueName, int] | None = None, train_runner: TrainRunner | None = None,
                 python: str = sys.executable) -> None:
        if not queues:
            raise ValueError("queues: serve at least one queue")
        counts: dict[QueueName, int] = {"route": settings.worker_route_concurrency,
                                        "train": settings.max_concurrent_train_jobs, **(concurrency or {})}
        if any(counts[q] < 1 for q in queues):
            raise ValueError("concurrency: at least 1 per queue served")
        self.name = worker_name()
        self._settings = settings
        self._engine = engine
        self._python = python
        self._queues = [QUEUES[q] for q in dict.fromkeys(queues)]
        self._train = train_runner or TrainRunner(settings, python=python)
        self._stopping = threading.Event()
        self._children: dict[tuple[str, Any], int] = {}
        self._lock = threading.Lock()
        self._last_retention = 0.0
        self._loops = [Loop(f"worker-{q.name}-{k}", settings.worker_poll_s, partial(self._slot, q),
                            stop_event=self._stopping, jitter=0.25)
                       for q in self._queues for k in range(counts[q.name])]
        self._loops.append(Loop("worker-upkeep", max(0.5, settings.job_lease_s / 4), self._upkeep,
                                stop_event=self._stopping))

    @property
    def queues(self) -> list[QueueName]:
        return [q.name for q in self._queues]

    def start(self) -> None:
        self._upkeep()
        for loop in self._loops:
            loop.start()
        log.info("worker %s serves %s", self.name,
                 ", ".join(f"{q.name} ({sum(1 for lp in self._loops if lp.name.startswith(f'worker-{q.name}-'))})"
                           for q in self._queues))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop claiming; running jobs are stopped and queued again for another worker."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        for loop in self._loops:
            loop.join(max(0.1, deadline - time.monotonic()))

    def running_pid(self, queue: QueueName, job_id: Any) -> int | None:
        """The pid of the child running ``job_id`` here, if it runs here."""
        with self._lock:
            return self._children.get((queue, job_id))

    # internals -------------------------------------------------------------------------------

    def _track(self, queue: QueueName, job_id: Any, pid: int | None) -> None:
        with self._lock:
            if pid is None:
                self._children.pop((queue, job_id), None)
            else:
                self._children[(queue, job_id)] = pid

    def _slot(self, queue: Queue) -> bool:
        """Claim and run one job; whether there was one."""
        if self._stopping.is_set() or not has_queued(self._engine, queue):
            return False
        row = claim(self._engine, queue, self.name, self._settings.job_lease_s)
        if row is None:
            return False
        log.info("%s job %s claimed (attempt %d)", queue.name, row.job_id, row.attempts)
        ctx = JobContext(self._engine, queue, row.job_id, self.name, self._settings.job_lease_s, self._stopping,
                         partial(self._track, queue.name, row.job_id))
        try:
            if queue is ROUTE:
                run_route_job(ctx, row, self._python)
            else:
                self._train.run(ctx, row)
        except Exception as exc:  # a broken job fails alone, never the slot
            log.exception("%s job %s failed", queue.name, row.job_id)
            finish(self._engine, queue, row.job_id, self.name, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        return True

    def _upkeep(self) -> None:
        for queue in self._queues:
            for r in release_expired(self._engine, queue, self._settings.job_max_attempts):
                log.warning("%s job %s: worker %s stopped renewing its lease; %s", queue.name, r.job_id, r.worker,
                            "queued again" if r.requeued else f"failed after {r.attempts} attempts")
        if ROUTE in self._queues and time.monotonic() - self._last_retention >= RETENTION_PASS_S:
            self._last_retention = time.monotonic()
            gone = delete_finished(self._engine, ROUTE, ("done", "failed", "cancelled"),
                                   int(self._settings.route_job_retention_days * DAY_MS))
            if gone:
                log.info("deleted %d finished route jobs older than %g days", gone,
                         self._settings.route_job_retention_days)
