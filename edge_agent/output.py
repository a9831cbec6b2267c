"""The agent's own output: every alert and forecast leaves through :meth:`GatewayOutput.emit`.

One call stores the payload and its sync record in one transaction
(:mod:`edge_agent.store.gateway_output`), publishes it on the gateway's MQTT topic for local
consumers (``…/gw/{id}/alert``, ``…/forecast``; best effort, it works offline) and wakes the
sync worker. Scoring, forecasting, sync (its refusal alerts) and housekeeping (the quota alert)
are handed :meth:`~GatewayOutput.emit`; nothing else writes the agent's output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_agent.clock import now_ms
from edge_agent.store import Store
from edge_agent.store.gateway_output import GatewayPayload, enqueue
from protocols import AlertPayload, GatewayTopicKind, encode, gateway_topic

if TYPE_CHECKING:
    from edge_agent.ingest_batch import BatchResult

#: ``publish(topic, payload)``: :meth:`edge_agent.mqtt.MqttLink.publish` (QoS 1, not retained).
Publish = Callable[[str, bytes], bool]


class GatewayOutput:
    def __init__(
        self,
        store: Store,
        site: str,
        gateway_id: str,
        publish: Publish | None = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._publish = publish
        self._clock_ms = clock_ms
        self._alert_topic = gateway_topic(site, gateway_id, GatewayTopicKind.ALERT)
        self._forecast_topic = gateway_topic(site, gateway_id, GatewayTopicKind.FORECAST)
        self._wake_sync: list[Callable[[], None]] = []

    def wake_sync_with(self, notify: Callable[[], None]) -> None:
        """Call ``notify`` (the sync worker's) whenever new records are in the outbox."""
        self._wake_sync.append(notify)

    def emit(self, payload: GatewayPayload) -> bool:
        """Store + outbox ``payload`` (one transaction), publish it, wake the sync; False when
        its id was already stored (nothing published then)."""
        conn = self._store.connect()
        try:
            new = enqueue(conn, payload, self._clock_ms())
        finally:
            conn.close()
        if new:
            if self._publish is not None:
                topic = self._alert_topic if isinstance(payload, AlertPayload) else self._forecast_topic
                self._publish(topic, encode(payload))
            self.outbox_changed()
        return new

    def on_stored(self, result: BatchResult) -> None:
        """An ingest batch committed device records (and their outbox rows): wake the sync."""
        self.outbox_changed()

    def outbox_changed(self) -> None:
        for notify in self._wake_sync:
            notify()
