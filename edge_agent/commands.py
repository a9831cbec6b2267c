"""Gateway commands (``edgehouse/v1/{site}/gw/{gateway_id}/cmd``), on their own small thread.

:class:`MqttLink` routes messages on the command topic here instead of to ingest (they are not
device data: no decode, no dead-letter). The thread parses a :class:`~protocols.GatewayCommand`,
runs its handler (``check_models`` -> ``ModelUpdater.check_now``, ``sync_now`` ->
``SyncWorker.notify``: both only set events) and acknowledges the message after dispatch. A
malformed command is logged, counted (``edgehouse_agent_commands_total{cmd="invalid"}``) and
acknowledged, so the broker does not redeliver it forever.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping

from pydantic import ValidationError

from edge_agent.inbound import Acker, Inbound
from edge_agent.metrics import AgentMetrics
from protocols import GatewayCommand
from protocols.untrusted import clip

log = logging.getLogger(__name__)

_QUEUE_SIZE = 64
_POLL_S = 0.2


class CommandHandler:
    def __init__(
        self, handlers: Mapping[str, Callable[[], object]], ack: Acker, metrics: AgentMetrics
    ) -> None:
        self._handlers = dict(handlers)
        self._ack = ack
        self._metrics = metrics
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, item: Inbound) -> bool:
        """From the MQTT network thread: queue it (False when full: left unacknowledged)."""
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            log.warning("command queue full: command left unacknowledged")
            return False

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("command handler already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edge-commands", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            self.handle(item)

    def handle(self, item: Inbound) -> None:
        """Parse and dispatch one command, then acknowledge it (whatever happened)."""
        try:
            try:
                command = GatewayCommand.model_validate_json(item.payload)
            except ValidationError as exc:
                self._metrics.commands.labels("invalid").inc()
                first = exc.errors(include_url=False, include_input=False)[0]
                log.warning("malformed command on %s (%d bytes): %s at %s", clip(item.topic), len(item.payload),
                            clip(first.get("msg", "invalid")), clip(".".join(map(str, first.get("loc", ())))))
                return
            self._metrics.commands.labels(command.cmd).inc()
            handler = self._handlers.get(command.cmd)
            if handler is None:
                log.warning("command %s (%s): not available on this agent", command.cmd, command.cmd_id)
                return
            log.info("command %s (%s)", command.cmd, command.cmd_id)
            try:
                handler()
            except Exception:
                log.exception("command %s (%s) failed", command.cmd, command.cmd_id)
        finally:
            self._ack(item)
