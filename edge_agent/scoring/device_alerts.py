"""Alert hysteresis per device for the joint (multichannel) score, and its alert payloads.

Pure: no I/O, no thread. :class:`DeviceAlerts` turns :class:`models.device_anomaly.DeviceResult`
scores into raised / cleared device alerts (:class:`~protocols.AlertPayload` with ``metric``
absent): each channel is a driver with its contribution to the score, its expected and observed
value; the window is the messages the score looked at (``window_start_ts`` .. ``window_end_ts``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from protocols import MAX_DRIVERS, AlertDriver, AlertPayload

if TYPE_CHECKING:
    from models.device_anomaly import DeviceResult

AlertState = Literal["raised", "cleared"]
#: Channels named in the alert message (all of them are drivers).
_MESSAGE_CHANNELS = 3


@dataclass(frozen=True, slots=True)
class DeviceAlertConfig:
    threshold: float
    clear_ratio: float
    cooldown_ms: int
    max_devices: int
    #: A raise needs the score at or above the threshold for this many consecutive messages.
    confirm: int = 1
    #: Timestamps kept per device for the alert's window.
    window: int = 32

    @property
    def clear_below(self) -> float:
        return self.threshold * self.clear_ratio


@dataclass(slots=True)
class _DeviceState:
    ts: deque[int]
    active: bool = False
    raised_ts: int | None = None
    since_raise: int = 0
    #: Consecutive messages at or above the threshold (not yet raised).
    run: int = 0


class DeviceAlerts:
    """Raise once the score has stayed at or above ``threshold`` for ``confirm`` consecutive
    messages, clear below ``clear_ratio * threshold``, then a ``cooldown_ms`` (device time) before
    the same device raises again (counted in ``suppressed``)."""

    def __init__(self, gateway_id: str, config: DeviceAlertConfig, model_version: int) -> None:
        self._gateway_id = gateway_id
        self.config = config
        self._model_version = model_version
        self._devices: OrderedDict[str, _DeviceState] = OrderedDict()
        self.suppressed = 0

    def _state(self, device_id: str) -> _DeviceState:
        st = self._devices.get(device_id)
        if st is None:
            st = _DeviceState(deque(maxlen=self.config.window))
            self._devices[device_id] = st
            if len(self._devices) > self.config.max_devices:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(device_id)
        return st

    def retarget(self, config: DeviceAlertConfig, model_version: int) -> None:
        """A new model took over (a signed update): its threshold and version from now on; a raised
        device alert stays raised until the new model, once its warm-up is done, clears it."""
        self.config = config
        self._model_version = model_version
        for st in self._devices.values():
            st.run = 0

    def active(self, device_id: str) -> bool:
        st = self._devices.get(device_id)
        return st is not None and st.active

    def observe(self, device_id: str, ts: int, result: DeviceResult) -> AlertPayload | None:
        cfg = self.config
        st = self._state(device_id)
        st.ts.append(ts)
        if st.active:
            st.since_raise += 1
            if result.score < cfg.clear_below:
                st.active = False
                start = st.raised_ts if st.raised_ts is not None else st.ts[0]
                return self._payload("cleared", device_id, ts, result, start, st.since_raise)
            return None
        if result.score < cfg.threshold:
            st.run = 0
            return None
        st.run += 1
        if st.run < cfg.confirm:
            return None
        if st.raised_ts is not None and ts - st.raised_ts < cfg.cooldown_ms:
            self.suppressed += 1
            st.run = 0
            return None
        st.active = True
        st.raised_ts = ts
        st.since_raise = 1
        window = max(1, min(max(result.window, st.run), len(st.ts)))
        st.run = 0
        return self._payload("raised", device_id, ts, result, st.ts[-window], window)

    def _payload(
        self, state: AlertState, device_id: str, ts: int, result: DeviceResult, start: int, readings: int
    ) -> AlertPayload:
        cfg = self.config
        ranked = sorted(result.channels, key=lambda c: c.contribution, reverse=True)[:MAX_DRIVERS]
        named = ", ".join(
            f"{c.channel} {100 * c.contribution:.0f}% (observed {c.observed:.4g}, expected {c.expected:.4g})"
            for c in ranked[:_MESSAGE_CHANNELS]
        )
        if state == "raised":
            head = f"{device_id}: joint anomaly score {result.score:.2f} >= {cfg.threshold:.2f} ({result.detector})"
        else:
            head = f"{device_id}: joint anomaly score back to {result.score:.2f} < {cfg.clear_below:.2f}"
        # Shares are rounded down a little so that rounding never lifts their sum above 1.
        drivers = tuple(
            AlertDriver(
                device_id=device_id,
                metric=c.channel,
                contribution=max(0.0, min(1.0, c.contribution * (1.0 - 1e-9))),
                expected=c.expected,
                observed=c.observed,
            )
            for c in ranked
        )
        return AlertPayload(
            alert_id=device_alert_id(self._gateway_id, device_id, ts, state),
            gateway_id=self._gateway_id,
            kind="anomaly",
            state=state,
            severity="warning",
            ts=ts,
            message=f"{head}: {named}"[:500],
            device_id=device_id,
            metric=None,
            score=result.score,
            threshold=cfg.threshold,
            window_start_ts=min(start, ts),
            window_end_ts=ts,
            model_version=self._model_version,
            detector=f"device_{result.detector}",
            window_readings=readings,
            drivers=drivers,
        )


def device_alert_id(gateway_id: str, device_id: str, ts: int, state: AlertState) -> str:
    """Deterministic (re-scoring the same message cannot store a second alert); ``device`` in the
    metric's place never collides with a stream's alert id (metric names are a fixed set)."""
    readable = f"anomaly:{device_id}:device:{ts}:{state}"
    if len(readable) <= 128:
        return readable
    digest = hashlib.sha256(f"{gateway_id}|{device_id}|device|{ts}|{state}".encode()).hexdigest()[:32]
    return f"anomaly:{digest}:device:{state}"
