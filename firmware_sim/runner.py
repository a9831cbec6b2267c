"""Publish a simulated fleet to an MQTT broker: accelerated time, or a fixed rate for load tests.

Devices are split round-robin over a few publisher threads; each thread runs its own
:class:`~firmware_sim.generator.SimStream` over its devices and drives one paho client per
device. In rate mode each thread encodes its messages ahead of the timed phase (pre-encoded
payloads) and then publishes at ``rate / publishers`` messages per second.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_sim.config import DeviceSpec, Fleet
from firmware_sim.emission import Emission
from firmware_sim.faults import FaultConfig
from firmware_sim.generator import SimStream
from firmware_sim.mqtt_link import DeviceLink, LinkPump
from firmware_sim.truth import Summary, TruthLedger, TruthWriter, summarize

log = logging.getLogger(__name__)

#: Above this many publishes per thread, rate mode encodes in chunks instead of all up front.
_MAX_PREENCODE = 400_000
_CHUNK = 20_000
#: Without a quota, rate mode encodes this many seconds of its rate at a time (what a stop still sends).
_OPEN_CHUNK_S = 5.0


class RunOptions(BaseModel):
    """Everything a run needs besides the fleet; validated once at the boundary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker_host: str = "127.0.0.1"
    broker_port: Annotated[int, Field(ge=1, le=65535)] = 1883
    ground_truth_path: Path | None = None
    duration_s: Annotated[float, Field(gt=0)] | None = None
    count: Annotated[int, Field(ge=1)] | None = None
    rate: Annotated[float, Field(gt=0)] | None = None
    speed: Annotated[float, Field(gt=0)] | None = None
    #: The stream ends after this much simulated time from the fleet's start (then the final flush).
    sim_seconds: Annotated[float, Field(gt=0)] | None = None
    qos: Literal[0, 1] = 1
    publishers: Annotated[int, Field(ge=1, le=64)] | None = None
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = 20
    max_queued: Annotated[int, Field(ge=0)] = 2000
    ack_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    client_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "sim"
    #: MQTT protocol version; "v311" for brokers that only speak 3.1.1 (the demo's embedded broker).
    mqtt_protocol: Literal["v5", "v311"] = "v5"

    @model_validator(mode="after")
    def _qos0_only_for_rate(self) -> RunOptions:
        if self.qos == 0 and self.rate is None:
            raise ValueError("qos 0 is for rate-mode load tests only")
        return self


@dataclass(frozen=True, slots=True)
class RunStats:
    """A live snapshot for progress displays."""

    state: Literal["idle", "preparing", "running", "draining", "done", "failed"]
    elapsed_s: float
    sim_time: datetime
    published: int
    by_kind: dict[str, int]
    duplicates: int
    malformed: int
    wills: int
    anomalies: int
    faults: dict[str, int]
    in_flight: int
    msgs_per_s: float
    error: str | None = None


@dataclass
class _Shared:
    fleet: Fleet
    faults: FaultConfig
    opts: RunOptions
    speed: float
    stop: threading.Event
    abort: threading.Event
    t0: list[float]
    barrier: threading.Barrier
    writer: TruthWriter | None
    on_publish: Callable[[Emission], None] | None
    run_tag: str


@dataclass
class _Partition:
    """One publisher thread's share of the fleet."""

    sh: _Shared
    devices: list[DeviceSpec]
    quota: int | None
    rate: float | None
    ledger: TruthLedger = field(init=False)
    stream: SimStream = field(init=False)
    links: dict[str, DeviceLink] = field(init=False)
    pump: LinkPump = field(init=False)
    since_pump: int = field(default=0, init=False)
    error: BaseException | None = None
    preparing: bool = True
    draining: bool = False
    #: Drawn but unsent when the timed phase ended (paced: the next emission; rate: the chunk's rest); the
    #: flush sends them first (dropped: seq gaps, orphaned duplicate copies and RFID repeat reads).
    carry: list[Emission] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ledger = TruthLedger(self.sh.writer)
        o = self.sh.opts
        until = None if o.sim_seconds is None else self.sh.fleet.start_ms + int(o.sim_seconds * 1000)
        self.stream = SimStream(self.sh.fleet, self.sh.faults, self.devices, until_ms=until)
        self.links = {
            d.device_id: DeviceLink(
                f"{o.client_prefix}-{d.device_id}-{self.sh.run_tag}"[:64], o.broker_host, o.broker_port, o.qos,
                o.max_inflight, o.max_queued, protocol=o.mqtt_protocol,
            )
            for d in self.devices
        }
        self.pump = LinkPump(self.links.values(), self.sh.abort)

    def run(self) -> None:
        try:
            if self.rate is not None:
                self._run_rate(self.rate)
            else:
                self._run_paced()
            self.draining = True
            for e in itertools.chain(self.carry, self.stream.finish()):
                if self.sh.abort.is_set() or not self._execute(e):
                    break
        except Exception as exc:  # noqa: BLE001 - thread boundary: join() re-raises it, never lost
            self.error = exc
            self.sh.stop.set()
            self.sh.abort.set()
            self.sh.barrier.abort()
        finally:
            try:
                for link in self.pump.close(self.sh.opts.ack_timeout_s):
                    log.warning("%s: %d messages unacknowledged at shutdown", link.client_id, link.in_flight)
            except Exception as exc:  # noqa: BLE001 - same boundary as above
                self.error = self.error or exc

    def _quota_reached(self) -> bool:
        return self.quota is not None and self.ledger.published >= self.quota

    def _deadline(self) -> float:
        d = self.sh.opts.duration_s
        return math.inf if d is None else self.sh.t0[0] + d

    def _run_paced(self) -> None:
        self.preparing = False
        self.sh.barrier.wait()
        t0 = self.sh.t0[0]
        start_ms = self.sh.fleet.start_ms
        scale = 1.0 / (self.sh.speed * 1000.0)
        deadline = self._deadline()
        for e in self.stream:
            target = t0 + (e.send_ms - start_ms) * scale
            now = time.monotonic()
            if (self.sh.stop.is_set() or self._quota_reached() or target > deadline or now > deadline
                    or (target - now > 0.0005 and self.pump.sleep(target - now, self.sh.stop))):
                self.carry = [e]  # the timed phase is over, not this emission
                return
            if not self._execute(e):
                return

    def _chunks(self, rate: float) -> Iterator[list[Emission]]:
        open_size = max(1, min(_CHUNK, math.ceil(rate * _OPEN_CHUNK_S)))
        size = open_size if self.quota is None else self.quota if self.quota <= _MAX_PREENCODE else _CHUNK
        made = 0
        while not self.sh.stop.is_set():
            want = size if self.quota is None else min(size, self.quota - made)
            if want <= 0:
                return
            chunk: list[Emission] = []
            n = 0
            for e in self.stream:
                chunk.append(e)
                if e.publishes:
                    n += 1
                    if n >= want:
                        break
            made += n
            yield chunk

    def _run_rate(self, rate: float) -> None:
        chunks = self._chunks(rate)
        first = next(chunks, [])
        self.preparing = False
        self.sh.barrier.wait()
        t0 = self.sh.t0[0]
        deadline = self._deadline()
        sent = 0
        for chunk in itertools.chain([first], chunks):
            for i, e in enumerate(chunk):
                if e.publishes:
                    now = time.monotonic()
                    due = t0 + sent / rate
                    if ((due - now > 0.002 and self.pump.sleep(due - now, self.sh.stop))
                            or now > deadline or self.sh.stop.is_set()):
                        self.carry = chunk[i:]  # the timed phase is over, not what was drawn for it
                        return
                    sent += 1
                if not self._execute(e):
                    return

    def _execute(self, e: Emission) -> bool:
        link = self.links[e.device_id]
        abort = self.sh.abort
        if abort.is_set():
            return False
        pump = self.pump
        if e.action == "publish":
            if link.state in ("idle", "closed"):
                return True  # stopped before this device ever came online: it has nothing to say
            if not pump.publish(link, e.topic, e.payload, e.retain):
                return False
            self.since_pump += 1
            if self.since_pump >= 16:  # read acks regularly even when never idle
                self.since_pump = 0
                pump.pump(0.0)
        elif e.action == "connect":
            if not pump.connect(link, e.topic, e.will_payload, self.sh.opts.connect_timeout_s):
                return False
            if not pump.publish(link, e.topic, e.payload, True):
                return False
        elif e.action == "disconnect":
            pump.drop(link, self.sh.opts.ack_timeout_s)
        self.ledger.record(e)
        if e.publishes and self.sh.on_publish is not None:
            self.sh.on_publish(e)
        return True


class SimRunner:
    """Run a fleet against a broker. ``start()``, then ``join()`` (or ``stop()`` early).

    The run ends after ``duration_s`` wall seconds, or ``count`` publishes, or ``sim_seconds`` of
    simulated time (each plus the final flush of held messages and offline statuses), or on ``stop()``. The ground truth file gets its
    summary line when the run has ended, and :meth:`join` returns that summary.
    """

    def __init__(
        self,
        fleet: Fleet,
        broker_host: str = "127.0.0.1",
        broker_port: int = 1883,
        ground_truth_path: str | Path | None = None,
        faults: FaultConfig | None = None,
        duration_s: float | None = None,
        count: int | None = None,
        rate: float | None = None,
        *,
        speed: float | None = None,
        qos: Literal[0, 1] = 1,
        publishers: int | None = None,
        on_publish: Callable[[Emission], None] | None = None,
        **options: object,
    ) -> None:
        self.fleet = fleet
        self.faults = faults if faults is not None else fleet.config.faults
        self.opts = RunOptions.model_validate(
            {
                "broker_host": broker_host, "broker_port": broker_port, "ground_truth_path": ground_truth_path,
                "duration_s": duration_s, "count": count, "rate": rate, "speed": speed, "qos": qos,
                "publishers": publishers, **options,
            }
        )
        self._on_publish = on_publish
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._parts: list[_Partition] = []
        self._threads: list[threading.Thread] = []
        self._supervisor: threading.Thread | None = None
        self._summary: Summary | None = None
        self._error: BaseException | None = None
        self._t0: list[float] = [0.0]
        self._t_end: float | None = None

    @property
    def speed(self) -> float:
        return self.opts.speed if self.opts.speed is not None else self.fleet.config.time_scale

    def start(self) -> None:
        if self._supervisor is not None:
            raise RuntimeError("a SimRunner runs once")
        devices = list(self.fleet.devices)
        n = self.opts.publishers or min(4, len(devices))
        n = max(1, min(n, len(devices)))
        writer = TruthWriter(self.opts.ground_truth_path) if self.opts.ground_truth_path else None
        barrier = threading.Barrier(n, action=self._mark_start)
        shared = _Shared(
            self.fleet, self.faults, self.opts, self.speed, self._stop, self._abort, self._t0, barrier, writer,
            self._on_publish, f"{int(time.time() * 1000) % 10**8:08d}",
        )
        count, rate = self.opts.count, self.opts.rate
        if count is None and rate is not None and self.opts.duration_s is not None:
            count = math.ceil(rate * self.opts.duration_s)
        for i in range(n):
            quota = None if count is None else count // n + (1 if i < count % n else 0)
            self._parts.append(_Partition(shared, devices[i::n], quota, None if rate is None else rate / n))
        self._threads = [
            threading.Thread(target=p.run, name=f"sim-pub-{i}", daemon=True) for i, p in enumerate(self._parts)
        ]
        for t in self._threads:
            t.start()
        self._supervisor = threading.Thread(target=self._supervise, args=(writer,), name="sim-supervisor", daemon=True)
        self._supervisor.start()

    def _mark_start(self) -> None:
        self._t0[0] = time.monotonic()

    def _supervise(self, writer: TruthWriter | None) -> None:
        for t in self._threads:
            t.join()
        self._t_end = time.monotonic()
        self._summary = summarize([p.ledger for p in self._parts])
        errors = [p.error for p in self._parts if p.error is not None]
        errors.sort(key=lambda exc: isinstance(exc, threading.BrokenBarrierError))  # the cause first
        self._error = errors[0] if errors else None
        if writer is not None:
            writer.close(self._summary)

    def stop(self, force: bool = False) -> None:
        """Stop producing; held messages and offline statuses are still sent unless ``force``."""
        self._stop.set()
        if force:
            self._abort.set()

    def join(self, timeout: float | None = None) -> Summary | None:
        """Wait for the end of the run; the summary, or None on timeout. Re-raises a thread's error."""
        if self._supervisor is None:
            raise RuntimeError("start() first")
        self._supervisor.join(timeout)
        if self._supervisor.is_alive():
            return None
        if self._error is not None:
            raise RuntimeError(f"simulator failed: {self._error}") from self._error
        return self._summary

    @property
    def done(self) -> bool:
        return self._supervisor is not None and not self._supervisor.is_alive()

    def stats(self) -> RunStats:
        parts = self._parts
        summary = summarize([p.ledger for p in parts]) if parts else Summary()
        by_kind: Counter[str] = Counter()
        for p in parts:
            by_kind.update(p.ledger.by_kind)
        t0 = self._t0[0]
        end = self._t_end if self._t_end is not None else time.monotonic()
        elapsed = max(0.0, end - t0) if t0 else 0.0
        now_ms = min((p.stream.now_ms for p in parts), default=self.fleet.start_ms)
        if self._supervisor is None:
            state = "idle"
        elif self.done:
            state = "failed" if self._error is not None else "done"
        elif any(p.draining for p in parts):
            state = "draining"
        elif any(p.preparing for p in parts):
            state = "preparing"  # rate mode: encoding payloads before the timed phase
        else:
            state = "running"
        in_flight = sum(link.in_flight for p in parts for link in p.links.values())
        return RunStats(
            state=state,  # type: ignore[arg-type]
            elapsed_s=elapsed,
            sim_time=datetime.fromtimestamp(now_ms / 1000, UTC),
            published=summary.published,
            by_kind=dict(by_kind),
            duplicates=summary.duplicates,
            malformed=summary.malformed,
            wills=summary.wills,
            anomalies=summary.anomalies,
            faults=summary.faults,
            in_flight=in_flight,
            msgs_per_s=summary.published / elapsed if elapsed > 0 else 0.0,
            error=None if self._error is None else str(self._error),
        )

