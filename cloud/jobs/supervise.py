"""Drive one running job: feed its child's output to the runner, keep the lease, obey cancel and stop.

Every ``CONTROL_S`` the supervisor reads what the child printed, writes changed progress (at most
every ``PROGRESS_WRITE_S``) together with a lease renewal, renews the lease anyway every third of
``lease_s``, and otherwise checks with a read whether the job is still its own. It terminates the
child when the job was cancelled (by any API replica) or taken away, when the worker stops, when the
job overran its timeout, and when it could not renew its lease for 0.8 × ``lease_s`` (the database is
unreachable): by then another worker may soon take the job over, and it must never run twice at once.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cloud.jobs.child import Child
from cloud.jobs.queue import LeaseState, Queue, renew, still_held

log = logging.getLogger(__name__)

CONTROL_S: Final = 0.5
PROGRESS_WRITE_S: Final = 0.5
#: Share of the lease after which a worker that could not renew it stops the job itself.
FENCE_SHARE: Final = 0.8

Outcome = Literal["exited", "cancelled", "lost", "timed_out", "stopped"]


@dataclass(frozen=True)
class JobContext:
    """What a runner needs to run one claimed job."""

    engine: Engine
    queue: Queue
    job_id: Any
    worker: str
    lease_s: float
    stopping: threading.Event
    #: Told the pid of the job's child when it starts, and None when it ended (operators, tests).
    track: Callable[[int | None], None] = lambda _pid: None


def supervise(ctx: JobContext, child: Child, on_line: Callable[[str], None],
              progress: Callable[[], dict[str, Any]], timeout_s: float | None = None) -> tuple[Outcome, int | None]:
    """Run until the child exits (its exit status) or has to be stopped (and was)."""
    ctx.track(child.pid)
    try:
        return _supervise(ctx, child, on_line, progress, timeout_s)
    finally:
        ctx.track(None)


def _supervise(ctx: JobContext, child: Child, on_line: Callable[[str], None],
               progress: Callable[[], dict[str, Any]], timeout_s: float | None) -> tuple[Outcome, int | None]:
    started = time.monotonic()
    renewed_ok = renew_sent = started
    written: dict[str, Any] = {}
    last_write = 0.0
    while True:
        for line in child.lines(CONTROL_S):
            on_line(line)
        if child.output_ended:
            try:
                return "exited", child.wait(CONTROL_S)
            except subprocess.TimeoutExpired:
                pass  # it closed its output but still runs: keep supervising it
        now = time.monotonic()
        stop: Outcome | None = None
        if ctx.stopping.is_set():
            stop = "stopped"
        elif timeout_s is not None and now - started > timeout_s:
            stop = "timed_out"
        else:
            values = progress() if now - last_write >= PROGRESS_WRITE_S else written
            changed = {k: v for k, v in values.items() if written.get(k) != v}
            try:
                if changed or now - renew_sent >= ctx.lease_s / 3:
                    renew_sent = now
                    state: LeaseState = renew(ctx.engine, ctx.queue, ctx.job_id, ctx.worker, ctx.lease_s, **changed)
                    if state == "held":
                        renewed_ok, last_write = renew_sent, now
                        written = {**written, **changed}
                else:
                    state = still_held(ctx.engine, ctx.queue, ctx.job_id, ctx.worker)
            except SQLAlchemyError as exc:
                log.warning("%s job %s: the database did not answer (%s); retrying", ctx.queue.name, ctx.job_id,
                            type(exc).__name__)
                state = "held"
            if state != "held":
                stop = state
            elif time.monotonic() - renewed_ok > FENCE_SHARE * ctx.lease_s:
                log.error("%s job %s: lease not renewed for %.0f s; stopping it before another worker takes it",
                          ctx.queue.name, ctx.job_id, time.monotonic() - renewed_ok)
                stop = "lost"
        if stop is not None:
            child.terminate()
            return stop, None
