"""Alert hysteresis per ``(device_id, metric)`` stream, and the deterministic alert ids.

Pure: no I/O, no thread. :class:`AlertHysteresis` turns anomaly scores into raised / cleared
:class:`~protocols.AlertPayload` objects; the scoring worker stores and publishes them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from edge_agent.store.telemetry import Reading
from protocols import AlertDriver, AlertPayload

if TYPE_CHECKING:
    from models.anomaly import AnomalyResult

AlertState = Literal["raised", "cleared"]


@dataclass(slots=True)
class _StreamAlert:
    window: deque[int]
    active: bool = False
    raised_ts: int | None = None
    peak: float = 0.0
    #: Readings since the raise (the window of the clear event).
    since_raise: int = 0


@dataclass(frozen=True, slots=True)
class HysteresisConfig:
    threshold: float
    clear_ratio: float
    cooldown_ms: int
    window: int
    max_streams: int

    @property
    def clear_below(self) -> float:
        return self.threshold * self.clear_ratio


class AlertHysteresis:
    """Per-stream alert state: raise at ``threshold``, clear below ``clear_ratio * threshold``.

    A stream raises again only ``cooldown_ms`` (device time) after its last raise. No I/O; the
    caller stores and publishes what :meth:`observe` returns.
    """

    def __init__(self, gateway_id: str, config: HysteresisConfig, model_version: int) -> None:
        self._gateway_id = gateway_id
        self.config = config
        self._model_version = model_version
        self._streams: OrderedDict[tuple[str, str], _StreamAlert] = OrderedDict()
        self.suppressed = 0

    def _stream(self, key: tuple[str, str]) -> _StreamAlert:
        st = self._streams.get(key)
        if st is None:
            st = _StreamAlert(deque(maxlen=self.config.window))
            self._streams[key] = st
            if len(self._streams) > self.config.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(key)
        return st

    def retarget(self, config: HysteresisConfig, model_version: int) -> None:
        """A new model took over: its threshold and version from now on; stream states stay."""
        self.config = config
        self._model_version = model_version
        for st in self._streams.values():
            if st.window.maxlen != config.window:
                st.window = deque(st.window, maxlen=config.window)

    def active(self, device_id: str, metric: str) -> bool:
        st = self._streams.get((device_id, metric))
        return st is not None and st.active

    def observe(self, reading: Reading, result: AnomalyResult) -> AlertPayload | None:
        cfg = self.config
        st = self._stream((reading.device_id, reading.metric))
        st.window.append(reading.ts)
        score = result.score
        if st.active:
            st.peak = max(st.peak, score)
            st.since_raise += 1
            if score < cfg.clear_below:
                st.active = False
                start = st.raised_ts if st.raised_ts is not None else st.window[0]
                return self._payload("cleared", reading, result, start, st.since_raise)
            return None
        if score < cfg.threshold:
            return None
        if st.raised_ts is not None and reading.ts - st.raised_ts < cfg.cooldown_ms:
            self.suppressed += 1
            return None
        st.active = True
        st.raised_ts = reading.ts
        st.peak = score
        st.since_raise = 1
        return self._payload("raised", reading, result, st.window[0], len(st.window))

    def _payload(
        self, state: AlertState, reading: Reading, result: AnomalyResult, window_start: int, readings: int
    ) -> AlertPayload:
        """The alert of one stream: the stream itself is its one driver (contribution 1), with
        expected vs observed, the test that scored it and its window (``readings`` readings)."""
        cfg = self.config
        expected = "n/a" if result.expected is None else f"{result.expected:.4g}"
        if state == "raised":
            message = (
                f"{reading.metric} of {reading.device_id}: anomaly score {result.score:.2f} >= "
                f"{cfg.threshold:.2f} (observed {result.observed:.4g}, expected {expected})"
            )
        else:
            message = (
                f"{reading.metric} of {reading.device_id}: anomaly score back to {result.score:.2f} "
                f"< {cfg.clear_below:.2f} (observed {result.observed:.4g}, expected {expected})"
            )
        return AlertPayload(
            alert_id=alert_id(self._gateway_id, reading.device_id, reading.metric, reading.ts, state),
            gateway_id=self._gateway_id,
            kind="anomaly",
            state=state,
            severity="warning",
            ts=reading.ts,
            message=message,
            device_id=reading.device_id,
            metric=reading.metric,
            score=result.score,
            threshold=cfg.threshold,
            expected=result.expected,
            observed=result.observed,
            window_start_ts=min(window_start, reading.ts),
            window_end_ts=reading.ts,
            model_version=self._model_version,
            detector=result.detector,
            window_readings=readings,
            drivers=(
                AlertDriver(
                    device_id=reading.device_id,
                    metric=reading.metric,
                    contribution=1.0,
                    score=result.score,
                    expected=result.expected,
                    observed=result.observed,
                ),
            ),
        )


def alert_id(gateway_id: str, device_id: str, metric: str, ts: int, state: AlertState) -> str:
    """Deterministic, so re-scoring the same reading cannot store a second alert."""
    readable = f"anomaly:{device_id}:{metric}:{ts}:{state}"
    if len(readable) <= 128:
        return readable
    digest = hashlib.sha256(f"{gateway_id}|{device_id}|{metric}|{ts}|{state}".encode()).hexdigest()[:32]
    return f"anomaly:{digest}:{state}"
