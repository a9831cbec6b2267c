"""Durable job queues in database tables: claim, lease, cancel, finish, and recovery of lost jobs.

A queue is a table with a ``state`` column (``queued`` → ``running`` → done / failed / cancelled)
and the columns of ``cloud.db.columns.queue_columns``. A worker **claims** the oldest queued job
(PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED``, so concurrent workers take different jobs without
waiting; SQLite: the ``BEGIN IMMEDIATE`` write lock serialises claims), which sets it running under
the worker's name with a **lease** until ``now + lease_s``. While it runs, the worker renews the lease
and writes progress; each renewal is conditional on the job still being running under its name, so
a worker learns at once that the job was cancelled (any API replica sets it ``cancelled``) or taken
from it. A job whose lease expired (its worker died or lost the database) is **released** by any
worker: queued again while attempts remain, otherwise failed with the reason. Finishing is
conditional in the same way, so a worker that lost its job can never overwrite what happened since.

All lease times are the database's clock, so workers on hosts with skewed clocks agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import Connection, Engine, Row, Table, case, select, text, update

from cloud.clock import now_ms
from cloud.db.engine import reader
from cloud.db.job_tables import route_jobs, train_jobs

QueueName = Literal["route", "train"]
QUEUE_NAMES: Final[tuple[QueueName, ...]] = ("route", "train")


@dataclass(frozen=True)
class Queue:
    name: QueueName
    table: Table
    #: State of a job that finished well.
    done_state: str

    @property
    def key(self) -> Any:
        return self.table.c.job_id


ROUTE: Final = Queue("route", route_jobs, "done")
TRAIN: Final = Queue("train", train_jobs, "succeeded")
QUEUES: Final[dict[QueueName, Queue]] = {"route": ROUTE, "train": TRAIN}

#: What a worker learns when it renews its lease.
LeaseState = Literal["held", "cancelled", "lost"]


def db_now_ms(conn: Connection) -> int:
    """The database server's clock in ms (SQLite: this host's, the file is local)."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")).scalar_one())
    return now_ms()


def delete_finished(engine: Engine, queue: Queue, states: tuple[str, ...], older_than_ms: int) -> int:
    """Delete the queue's jobs in ``states`` that finished more than ``older_than_ms`` ago (database clock); how many."""
    with engine.begin() as conn:
        cutoff = db_now_ms(conn) - older_than_ms
        result = conn.execute(queue.table.delete().where(queue.table.c.state.in_(list(states)),
                                                         queue.table.c.finished_ts < cutoff))
        return int(result.rowcount)


def has_queued(engine: Engine, queue: Queue) -> bool:
    """Whether a job waits (a read: idle workers poll with it before taking the write lock)."""
    t = queue.table
    with reader(engine) as conn:
        return conn.execute(select(t.c.job_id).where(t.c.state == "queued").limit(1)).first() is not None


def claim(engine: Engine, queue: Queue, worker: str, lease_s: float) -> Row[Any] | None:
    """Take the oldest queued job: it runs under ``worker`` now, leased for ``lease_s``; None when none waits."""
    t = queue.table
    with engine.begin() as conn:
        picked = conn.execute(
            select(t.c.job_id).where(t.c.state == "queued").order_by(t.c.created_ts, t.c.job_id).limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if picked is None:
            return None
        now = db_now_ms(conn)
        return conn.execute(
            update(t).where(t.c.job_id == picked.job_id, t.c.state == "queued")
            .values(state="running", worker=worker, attempts=t.c.attempts + 1, started_ts=now, heartbeat_ts=now,
                    lease_expires_ts=now + int(lease_s * 1000))
            .returning(*t.c)
        ).first()


def renew(engine: Engine, queue: Queue, job_id: Any, worker: str, lease_s: float, **values: Any) -> LeaseState:
    """Extend the lease (and write ``values``) if the job still runs under ``worker``; what the worker holds."""
    t = queue.table
    with engine.begin() as conn:
        now = db_now_ms(conn)
        held = conn.execute(
            update(t).where(t.c.job_id == job_id, t.c.worker == worker, t.c.state == "running")
            .values(heartbeat_ts=now, lease_expires_ts=now + int(lease_s * 1000), **values)
            .returning(t.c.job_id)
        ).first()
        if held is not None:
            return "held"
        row = conn.execute(select(t.c.state, t.c.cancel_requested).where(t.c.job_id == job_id)).first()
    return "cancelled" if row is not None and row.state == "cancelled" else "lost"


def still_held(engine: Engine, queue: Queue, job_id: Any, worker: str) -> LeaseState:
    """Like :func:`renew` without writing: a read, for polling cancellation between renewals."""
    t = queue.table
    with reader(engine) as conn:
        row = conn.execute(select(t.c.state, t.c.worker).where(t.c.job_id == job_id)).first()
    if row is not None and row.state == "running" and row.worker == worker:
        return "held"
    return "cancelled" if row is not None and row.state == "cancelled" else "lost"


def finish(engine: Engine, queue: Queue, job_id: Any, worker: str, state: str, **values: Any) -> bool:
    """Record the end of a job the worker still holds; False (nothing written) when it no longer does."""
    t = queue.table
    with engine.begin() as conn:
        result = conn.execute(
            update(t).where(t.c.job_id == job_id, t.c.worker == worker, t.c.state == "running")
            .values(state=state, finished_ts=db_now_ms(conn), lease_expires_ts=None, **values)
        )
        return bool(result.rowcount)


def give_back(engine: Engine, queue: Queue, job_id: Any, worker: str) -> bool:
    """Queue a job again that this worker stops running on purpose (shutdown); not counted as an attempt."""
    t = queue.table
    with engine.begin() as conn:
        result = conn.execute(
            update(t).where(t.c.job_id == job_id, t.c.worker == worker, t.c.state == "running")
            .values(state="queued", worker=None, lease_expires_ts=None,
                    attempts=case((t.c.attempts > 0, t.c.attempts - 1), else_=0), **_reset(queue))
        )
        return bool(result.rowcount)


def _reset(queue: Queue) -> dict[str, Any]:
    return {"progress": 0.0, "best_cost": None} if queue is ROUTE else {"progress": 0.0}


@dataclass(frozen=True)
class Released:
    job_id: Any
    worker: str | None
    attempts: int
    requeued: bool


def release_expired(engine: Engine, queue: Queue, max_attempts: int) -> list[Released]:
    """Jobs whose worker stopped renewing its lease: queued again, or failed after ``max_attempts``."""
    t = queue.table
    out: list[Released] = []
    with engine.begin() as conn:
        now = db_now_ms(conn)
        expired = conn.execute(
            select(t.c.job_id, t.c.worker, t.c.attempts, t.c.lease_expires_ts)
            .where(t.c.state == "running", t.c.lease_expires_ts < now).with_for_update(skip_locked=True)
        ).all()
        for row in expired:
            attempts = int(row.attempts)
            lost = f"worker {row.worker} stopped renewing its lease (attempt {attempts} of {max_attempts})"
            cond = (t.c.job_id == row.job_id, t.c.state == "running", t.c.worker == row.worker)
            if attempts < max_attempts:
                values: dict[str, Any] = {"state": "queued", "worker": None, "lease_expires_ts": None,
                                          **_reset(queue)}
                if queue is TRAIN:
                    values["message"] = f"queued again: {lost}"
                conn.execute(update(t).where(*cond).values(**values))
            else:
                error = f"given up: {lost}; no attempt left"
                extra = {"message": error[:500]} if queue is TRAIN else {}
                conn.execute(update(t).where(*cond).values(state="failed", error=error, finished_ts=now,
                                                           lease_expires_ts=None, **extra))
            out.append(Released(row.job_id, row.worker, attempts, attempts < max_attempts))
    return out


def cancel(engine: Engine, queue: Queue, job_id: Any, **values: Any) -> str | None:
    """Cancel a queued or running job at once (its worker stops it within a renewal); the state it had.

    None when there is no such job. A finished job is left as it is (its state is returned).
    """
    t = queue.table
    with engine.begin() as conn:
        row = conn.execute(select(t.c.state).where(t.c.job_id == job_id).with_for_update()).first()
        if row is None:
            return None
        if row.state in ("queued", "running"):
            conn.execute(update(t).where(t.c.job_id == job_id, t.c.state == row.state).values(
                state="cancelled", cancel_requested=True, finished_ts=db_now_ms(conn), lease_expires_ts=None,
                **values))
        return str(row.state)
