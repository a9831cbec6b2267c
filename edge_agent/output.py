"""The agent's own output: every alert and forecast leaves through :meth:`GatewayOutput.emit`.

One call stores the payload and its sync record in one transaction
(:mod:`edge_agent.store.gateway_output`), publishes it on the gateway's MQTT topic for local
consumers (``…/gw/{id}/alert``, ``…/forecast``; best effort, it works offline) and wakes the
sync worker. Scoring, forecasting, sync (its refusal alerts) and housekeeping (the quota alert)
are handed :meth:`~GatewayOutput.emit`; nothing else writes the agent's output.

Every alert passes the site's :class:`~edge_agent.alert_budget.AlertBudget` first (when one is
given): during an alert flood, anomaly alerts are withheld (counted) and one ``alert_flood``
alert goes out instead; :meth:`~GatewayOutput.check_budget` sends the flood's clear.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_agent.clock import now_ms
from edge_agent.store import Store
from edge_agent.store.gateway_output import GatewayPayload, enqueue, is_stored, last_alert_with_prefix
from protocols import ALERT_FLOOD, AlertPayload, GatewayTopicKind, encode, gateway_topic

if TYPE_CHECKING:
    from edge_agent.alert_budget import AlertBudget
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
        budget: AlertBudget | None = None,
    ) -> None:
        self._store = store
        self._publish = publish
        self._clock_ms = clock_ms
        self._gateway_id = gateway_id
        self.budget = budget
        self._alert_topic = gateway_topic(site, gateway_id, GatewayTopicKind.ALERT)
        self._forecast_topic = gateway_topic(site, gateway_id, GatewayTopicKind.FORECAST)
        self._wake_sync: list[Callable[[], None]] = []

    def wake_sync_with(self, notify: Callable[[], None]) -> None:
        """Call ``notify`` (the sync worker's) whenever new records are in the outbox."""
        self._wake_sync.append(notify)

    def emit(self, payload: GatewayPayload) -> bool:
        """Store + outbox ``payload`` (one transaction), publish it, wake the sync; False when
        its id was already stored, or the alert budget withheld it (nothing published then)."""
        conn = self._store.connect()
        try:
            if self.budget is not None and isinstance(payload, AlertPayload):
                if is_stored(conn, payload):  # a repeat of what went out: not counted again
                    return False
                verdict = self.budget.admit(payload, self._clock_ms())
                if verdict.flood is not None:
                    self._emit_on(conn, verdict.flood)
                if not verdict.send:
                    return False
            return self._emit_on(conn, payload)
        finally:
            conn.close()

    def check_budget(self) -> AlertPayload | None:
        """Send the flood's clear once the alert rate has fallen back; return it (None: no change)."""
        if self.budget is None:
            return None
        cleared = self.budget.check(self._clock_ms())
        if cleared is not None:
            conn = self._store.connect()
            try:
                self._emit_on(conn, cleared)
            finally:
                conn.close()
        return cleared

    def restore_budget(self) -> None:
        """After a restart: an ``alert_flood`` left raised by the previous run stays open."""
        if self.budget is None:
            return
        conn = self._store.connect()
        try:
            last = last_alert_with_prefix(conn, f"{ALERT_FLOOD}.{self._gateway_id}.")
        finally:
            conn.close()
        self.budget.restore(last, self._clock_ms())

    def _emit_on(self, conn: sqlite3.Connection, payload: GatewayPayload) -> bool:
        new = enqueue(conn, payload, self._clock_ms())
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
