"""The pure simulator: a fleet (or part of it) as a time-ordered stream of emissions, no MQTT.

Every device has three seeded generators of its own (physics, faults, ids) derived from the
fleet seed and its id, so a device's series is the same whatever else is in the stream and
whatever fault rates are set. Iterate a :class:`SimStream` for as long as wanted, then drain
:meth:`SimStream.finish` to flush held messages and say goodbye (offline status).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

from firmware_sim.config import TELEMETRY_KINDS, DeviceSpec, Fleet
from firmware_sim.devices import DeviceModel, Sample, build_model
from firmware_sim.devices.base import Anomaly
from firmware_sim.emission import Emission, MessageKind, TruthEvent
from firmware_sim.envelope import Envelopes
from firmware_sim.faults import MALFORMED_KINDS, FaultConfig
from protocols import DeviceTopicKind, device_topic


class _Ev(IntEnum):
    STEP = 0
    RELEASE = 1
    RECONNECT = 2


@dataclass
class _Held:
    emission: Emission
    duplicate: bool


@dataclass
class _Device:
    spec: DeviceSpec
    model: DeviceModel
    faults_rng: random.Random
    env: Envelopes
    interval_ms: int
    topics: dict[str, str]
    connected: bool = False
    skew_ms: int = 0
    buffer: list[_Held] = field(default_factory=list)
    reorder_held: _Held | None = None
    pending_events: list[TruthEvent] = field(default_factory=list)
    disconnected_at: int = 0
    reconnect_at: int = 0


def _rng(seed: int, device_id: str, purpose: str) -> random.Random:
    return random.Random(f"{seed}:{device_id}:{purpose}")


class SimStream:
    """An iterator of :class:`Emission` for ``devices`` (default: the whole fleet), in send order.

    ``until_ms`` (true simulated time, epoch ms) ends the stream; without it, it never ends and
    the caller stops iterating when it wants, then drains :meth:`finish`.
    """

    def __init__(
        self,
        fleet: Fleet,
        faults: FaultConfig | None = None,
        devices: Sequence[DeviceSpec] | None = None,
        until_ms: int | None = None,
    ) -> None:
        self.fleet = fleet
        self.faults = faults if faults is not None else fleet.config.faults
        self.until_ms = until_ms
        self.now_ms = fleet.start_ms
        self._events: list[tuple[int, int, _Ev, int, _Held | None]] = []
        self._out: list[tuple[int, int, Emission]] = []
        self._tie = itertools.count()
        self._devices: list[_Device] = []
        start = fleet.start_ms
        for spec in devices if devices is not None else fleet.devices:
            dev = _Device(
                spec=spec,
                model=build_model(spec, _rng(fleet.seed, spec.device_id, "physics"), start),
                faults_rng=_rng(fleet.seed, spec.device_id, "faults"),
                env=Envelopes(spec.device_id, spec.group.fw_version, _rng(fleet.seed, spec.device_id, "ids" + fleet.config.boot_salt)),
                interval_ms=int(spec.group.interval_s * 1000),
                topics={k.value: device_topic(spec.site, spec.device_id, k) for k in DeviceTopicKind},
            )
            self._devices.append(dev)
            idx = len(self._devices) - 1
            self._connect(dev, start, ())
            first = start + int(_rng(fleet.seed, spec.device_id, "phase").uniform(0, dev.interval_ms))
            self._schedule(first, _Ev.STEP, idx)
        self._finished = False

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Emission]:
        return self

    def __next__(self) -> Emission:
        while True:
            if self._out and (not self._events or self._out[0][0] <= self._events[0][0]):
                send_ms, _, e = heapq.heappop(self._out)
                self.now_ms = max(self.now_ms, send_ms)
                return e
            if not self._events:
                raise StopIteration
            t, _, ev, idx, held = heapq.heappop(self._events)
            self.now_ms = max(self.now_ms, t)
            dev = self._devices[idx]
            if ev is _Ev.STEP:
                self._step(dev, idx, t)
            elif ev is _Ev.RELEASE and held is not None:
                self._send(dev, held, t)
            elif ev is _Ev.RECONNECT:
                self._reconnect(dev, t)

    def finish(self) -> Iterator[Emission]:
        """Everything still owed, then a retained offline status per device (clean shutdown)."""
        if self._finished:
            return
        self._finished = True
        self._events = [e for e in self._events if e[2] is not _Ev.STEP]
        heapq.heapify(self._events)
        self.until_ms = self.now_ms
        yield from self
        for dev in self._devices:
            t = self.now_ms
            self._flush_reorder(dev, t)
            if not dev.connected:
                self._reconnect(dev, t)
            payload, seq = dev.env.status("offline", t + dev.skew_ms, t, reason="shutdown")
            self._push(
                Emission("publish", dev.spec.device_id, dev.spec.site, t, dev.topics["status"], payload, "status",
                         retain=True, seq=seq, boot_id=dev.env.boot_id)
            )
            while self._out:
                yield heapq.heappop(self._out)[2]

    # -- internals ---------------------------------------------------------------------------

    def _schedule(self, t: int, ev: _Ev, idx: int, held: _Held | None = None) -> None:
        heapq.heappush(self._events, (t, next(self._tie), ev, idx, held))

    def _push(self, e: Emission) -> None:
        heapq.heappush(self._out, (e.send_ms, next(self._tie), e))

    def _fault(self, dev: _Device, fault: str, seq: int, **extra: object) -> TruthEvent:
        return {
            "type": "fault", "fault": fault, "device_id": dev.spec.device_id, "site": dev.spec.site,
            "seq": seq, "boot_id": dev.env.boot_id, **extra,
        }

    def _connect(self, dev: _Device, t: int, events: tuple[TruthEvent, ...]) -> None:
        """Boot (if first time) / reconnect: birth message plus the will to arm."""
        if not dev.env.boot_id:
            dev.env.new_boot(t)
        ts = t + dev.skew_ms
        birth, seq = dev.env.status("online", ts, t)
        will, _ = dev.env.status("offline", ts, t, reason="connection lost")
        dev.connected = True
        self._push(
            Emission("connect", dev.spec.device_id, dev.spec.site, t, dev.topics["status"], birth, "status",
                     retain=True, will_payload=will, seq=seq, boot_id=dev.env.boot_id, events=events)
        )

    def _disconnect(self, dev: _Device, t: int) -> None:
        self._flush_reorder(dev, t)
        dev.connected = False
        dev.disconnected_at = t
        self._push(Emission("disconnect", dev.spec.device_id, dev.spec.site, t))

    def _reconnect(self, dev: _Device, t: int) -> None:
        backlog, dev.buffer = dev.buffer, []
        ev = self._fault(
            dev, "disconnect", dev.env.seq, start_ts=dev.disconnected_at + dev.skew_ms, end_ts=t + dev.skew_ms,
            buffered=len(backlog),
        )
        self._connect(dev, t, (ev,))
        for held in backlog:
            self._send(dev, held, t)

    def _send(self, dev: _Device, held: _Held, t: int) -> None:
        if not dev.connected and t <= dev.reconnect_at:
            dev.buffer.append(held)  # sent right after the reconnect
            return
        e = replace(held.emission, send_ms=t)
        self._push(e)
        if held.duplicate:
            dup_ev = self._fault(dev, "duplicate", e.seq)
            dup_ev["boot_id"] = e.boot_id  # a held message may predate a reboot
            self._push(replace(e, duplicate=True, events=(dup_ev,)))

    def _flush_reorder(self, dev: _Device, t: int) -> None:
        if dev.reorder_held is not None:
            held, dev.reorder_held = dev.reorder_held, None
            self._send(dev, held, max(t, held.emission.send_ms))

    def _device_faults(self, dev: _Device, idx: int, t: int) -> None:
        f = self.faults
        rng = dev.faults_rng
        r_reboot, r_disc, r_skew = rng.random(), rng.random(), rng.random()
        if dev.connected and r_reboot < f.reboots:
            old = dev.env.boot_id
            self._disconnect(dev, t)
            dev.env.new_boot(t)
            ev = self._fault(dev, "reboot", 0, old_boot_id=old, ts=t + dev.skew_ms)
            self._connect(dev, t, (ev,))
        elif dev.connected and r_disc < f.disconnects:
            self._disconnect(dev, t)
            dev.reconnect_at = t + int(rng.uniform(*f.disconnect_s) * 1000)
            self._schedule(dev.reconnect_at, _Ev.RECONNECT, idx)
        if r_skew < f.clock_skew:
            if dev.skew_ms == 0:
                dev.skew_ms = int(rng.uniform(*f.skew_s) * 1000) * rng.choice((-1, 1))
            else:
                dev.skew_ms = 0
            dev.pending_events.append({"fault": "clock_skew", "offset_ms": dev.skew_ms})

    def _step(self, dev: _Device, idx: int, t: int) -> None:
        self._device_faults(dev, idx, t)
        result = dev.model.step(t, dev.interval_ms)
        if result.anomalies:
            events = tuple(self._anomaly_event(dev, a) for a in result.anomalies)
            self._push(Emission("note", dev.spec.device_id, dev.spec.site, t, events=events))
        kind: MessageKind = "telemetry" if dev.spec.kind in TELEMETRY_KINDS else "scan"
        for sample in result.samples:
            self._produce(dev, idx, kind, sample)
        nxt = t + dev.interval_ms
        if self.until_ms is None or nxt < self.until_ms:
            self._schedule(nxt, _Ev.STEP, idx)

    def _anomaly_event(self, dev: _Device, a: Anomaly) -> TruthEvent:
        return {
            "type": "anomaly", "device_id": dev.spec.device_id, "site": dev.spec.site, "metric": a.metric,
            "kind": a.kind, "start_ts": a.start_ms, "end_ts": a.end_ms, **a.extra,
        }

    def _produce(self, dev: _Device, idx: int, kind: MessageKind, sample: Sample) -> None:
        f = self.faults
        rng = dev.faults_rng
        ts = sample.t_ms + dev.skew_ms
        if sample.readings is not None:
            payload, seq = dev.env.telemetry(sample.readings, ts)
        elif sample.scan is not None:
            payload, seq = dev.env.scan(sample.scan, ts)
        else:
            return
        r_mal, r_late, r_reorder, r_dup = rng.random(), rng.random(), rng.random(), rng.random()
        site, did = dev.spec.site, dev.spec.device_id
        events: list[TruthEvent] = []
        for pending in dev.pending_events:
            events.append({"type": "fault", "device_id": did, "site": site, "seq": seq,
                           "boot_id": dev.env.boot_id, **pending})
        dev.pending_events.clear()
        if r_mal < f.malformed:
            mkind = rng.choice(MALFORMED_KINDS)
            bad, bad_seq = dev.env.malformed(payload, mkind)
            ev = self._fault(dev, "malformed", bad_seq, malformed_kind=mkind)
            bad_e = Emission("publish", did, site, sample.t_ms, dev.topics[kind], bad, kind, seq=bad_seq,
                             boot_id=dev.env.boot_id, malformed=True, events=(ev,))
            self._send(dev, _Held(bad_e, False), sample.t_ms)
        e = Emission("publish", did, site, sample.t_ms, dev.topics[kind], payload, kind, seq=seq,
                     boot_id=dev.env.boot_id, burst_repeat=sample.burst_repeat, events=tuple(events))
        held = _Held(e, r_dup < f.duplicates)
        late_ok = sample.scan is None or sample.scan.code_type != "rfid"  # bursts stay inside the window
        if late_ok and r_late < f.late:
            delay = int(rng.uniform(*f.late_delay_s) * 1000)
            late_ev = self._fault(dev, "late", seq, delay_ms=delay)
            held.emission = replace(e, events=e.events + (late_ev,))
            self._schedule(sample.t_ms + delay, _Ev.RELEASE, idx, held)
            return
        if dev.reorder_held is None and r_reorder < f.reorder:
            dev.reorder_held = held
            return
        self._send(dev, held, sample.t_ms)
        if dev.reorder_held is not None:
            prev, dev.reorder_held = dev.reorder_held, None
            ev = self._fault(dev, "reorder", prev.emission.seq, swapped_with=seq)
            ev["boot_id"] = prev.emission.boot_id
            prev.emission = replace(prev.emission, events=prev.emission.events + (ev,))
            self._send(dev, prev, sample.t_ms)


def simulate(
    fleet: Fleet,
    sim_seconds: float,
    faults: FaultConfig | None = None,
    devices: Sequence[DeviceSpec] | None = None,
) -> Iterator[Emission]:
    """Every emission of ``sim_seconds`` of simulated time, including the final flush."""
    stream = SimStream(fleet, faults, devices, until_ms=fleet.start_ms + int(sim_seconds * 1000))
    yield from stream
    yield from stream.finish()


def messages(
    fleet: Fleet,
    sim_seconds: float,
    faults: FaultConfig | None = None,
    devices: Sequence[DeviceSpec] | None = None,
) -> Iterator[tuple[str, bytes, tuple[TruthEvent, ...]]]:
    """``(topic, payload, ground-truth events)`` for every publish, offline (no broker).

    Events of emissions that publish nothing (anomaly notes, disconnects) ride on the next tuple.
    """
    carry: tuple[TruthEvent, ...] = ()
    for e in simulate(fleet, sim_seconds, faults, devices):
        if e.publishes:
            yield e.topic, e.payload, carry + e.events
            carry = ()
        else:
            carry += e.events
