"""The broker link: MQTT v5, persistent session, QoS 1, manual acknowledgement.

paho's network thread only runs while a connection is up (``reconnect_on_failure=False``);
a supervisor thread owns connecting and reconnecting, with exponential backoff and jitter
reset after every successful CONNACK. ``on_message`` only hands the message to the ingest
queue and never raises (an exception there silently kills paho's thread). Acknowledgements
come from the ingest thread through :meth:`MqttLink.ack` once the message is committed.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent import __version__
from edge_agent.background import BackgroundWorker
from edge_agent.backoff import Backoff
from edge_agent.config import AgentConfig
from edge_agent.inbound import Inbound, InboundQueue
from edge_agent.metrics import AgentMetrics
from protocols import GatewayStatusPayload, GatewayTopicKind, encode, gateway_topic

log = logging.getLogger(__name__)

_PUT_RETRY_S = 0.5
_STATUS_PUBLISH_TIMEOUT_S = 2.0


def _status_payload(gateway_id: str, state: str) -> bytes:
    payload = GatewayStatusPayload(
        gateway_id=gateway_id,
        state=state,  # type: ignore[arg-type]
        agent_version=__version__,
        ts=time.time_ns() // 1_000_000,
    )
    return encode(payload)


class MqttLink(BackgroundWorker[None]):
    """Connect with :meth:`start`, subscribe with :meth:`subscribe`, leave with :meth:`stop`.

    Its thread (``edge-mqtt``) is the supervisor: it connects, holds the connection while paho's
    network thread runs, and reconnects with backoff.
    """

    name = "mqtt"

    def __init__(self, config: AgentConfig, inbox: InboundQueue, metrics: AgentMetrics) -> None:
        super().__init__(metrics)
        self._config = config
        self._mqtt = config.mqtt
        self._inbox = inbox
        self._metrics = metrics
        self._status_topic = gateway_topic(config.site, config.gateway_id, GatewayTopicKind.STATUS)
        self._intake_open = threading.Event()
        self._intake_open.set()
        #: Set once the broker acknowledged this connection's subscriptions (SUBACK), not merely
        #: once CONNACK arrived: a message published after ``wait_connected`` reaches us.
        self._connected = threading.Event()
        #: Set from CONNACK to the drop: SUBSCRIBEs may be sent (``subscribe`` sends its own).
        self._link_up = threading.Event()
        #: The packet id of the SUBSCRIBE sent at CONNACK, whose SUBACK sets ``_connected``.
        self._ready_mid: int | None = None
        self._last_error: str | None = None
        self._disconnected = threading.Event()
        self._connection = 0  # incremented at every successful CONNACK
        self._filters: dict[str, None] = {}  # insertion-ordered set
        #: Exact topics handed to their own sink instead of the ingest queue (gateway commands).
        self._routes: dict[str, Callable[[Inbound], bool]] = {}
        self._filters_lock = threading.Lock()
        self._first_connect = True
        self._backoff = Backoff(self._mqtt.reconnect_min_s, self._mqtt.reconnect_max_s)
        self._client = self._build_client()

    def _build_client(self) -> paho.Client:
        cfg = self._mqtt
        v5 = cfg.protocol == "v5"
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._config.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else False,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file),
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(
            self._status_topic, _status_payload(self._config.gateway_id, "offline"), qos=1, retain=True
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._mqtt.session_expiry_s
        props.ReceiveMaximum = self._config.receive_maximum
        return props

    # ----------------------------------------------------------------- lifecycle

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected with the subscriptions acknowledged (see ``connected``)."""
        return self._connected.wait(timeout_s)

    @property
    def connected(self) -> bool:
        """True once the broker acknowledged this connection's subscriptions, until it drops."""
        return self._connected.is_set()

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or the connection dropped; None once connected."""
        return self._last_error

    def close_intake(self) -> None:
        """Stop handing messages to ingest; later deliveries stay unacknowledged at the broker."""
        self._intake_open.clear()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Publish the retained offline status, disconnect cleanly and end both threads."""
        self.close_intake()
        self._stopping.set()
        if self._link_up.is_set():
            try:
                info = self._client.publish(
                    self._status_topic,
                    _status_payload(self._config.gateway_id, "offline"),
                    qos=1,
                    retain=True,
                )
                info.wait_for_publish(_STATUS_PUBLISH_TIMEOUT_S)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the offline status: %s", exc)
        # The supervisor sends DISCONNECT and ends paho's thread.
        stopped = super().stop(timeout_s)
        self._client.loop_stop()
        self._link_up.clear()
        self._connected.clear()
        self._metrics.mqtt_connected.set(0)
        return stopped

    # ----------------------------------------------------------------- subscriptions / output

    def subscribe(self, topic_filter: str) -> Callable[[], None]:
        """Subscribe at QoS 1 now and after every reconnect; return the cleanup.

        The cleanup stops resubscribing this filter but sends no UNSUBSCRIBE: the broker must
        keep the subscription in our persistent session, so messages published while the agent
        is down are queued for it rather than lost.
        """
        with self._filters_lock:
            self._filters[topic_filter] = None
        if self._link_up.is_set():
            self._client.subscribe([(topic_filter, self._subscribe_options())])

        def cleanup() -> None:
            with self._filters_lock:
                self._filters.pop(topic_filter, None)

        return cleanup

    def route(self, topic: str, sink: Callable[[Inbound], bool]) -> None:
        """Hand messages on exactly ``topic`` to ``sink`` (on the network thread: it must only
        enqueue) instead of ingest; the sink's owner acknowledges them with :meth:`ack`."""
        self._routes[topic] = sink

    def ack(self, item: Inbound) -> None:
        """Acknowledge one delivered message (from the ingest thread, after commit).

        A message delivered on an earlier connection is not acknowledged: the broker redelivers
        it on the current one (same session), and that copy gets the ack. Acking the old packet
        id could instead acknowledge a different message the broker has since given that id.
        """
        if item.qos == 0 or item.connection != self._connection:
            return
        rc = self._client.ack(item.mid, item.qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Not connected any more: the broker redelivers it and dedup absorbs the copy.
            log.debug("ack of mid %d not sent (%s)", item.mid, rc)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Publish best-effort; False when not connected (the outbox carries the data anyway)."""
        if not self._link_up.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _subscribe_options(self) -> SubscribeOptions | int:
        if self._mqtt.protocol != "v5":
            return 1  # MQTT 3.1.1: a bare QoS
        # Retained messages only on a new subscription: a resumed session needs none resent.
        return SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)

    # ----------------------------------------------------------------- supervisor

    def step(self, resource: None) -> None:
        """One connection: connect (or reconnect), hold it until it drops or the stop."""
        client = self._client
        self._disconnected.clear()
        try:
            if self._first_connect:
                if self._mqtt.protocol == "v5":
                    client.connect(
                        self._mqtt.host,
                        self._mqtt.port,
                        keepalive=self._mqtt.keepalive,
                        clean_start=False,
                        properties=self._connect_properties(),
                    )
                else:
                    client.connect(self._mqtt.host, self._mqtt.port, keepalive=self._mqtt.keepalive)
                self._first_connect = False
            else:
                client.reconnect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._last_error = f"connect failed: {exc}"
            self._metrics.mqtt_connect_failures.inc()
            delay = self._backoff.next_delay()
            log.warning(
                "MQTT connect to %s:%d failed (%s); retry in %.1fs",
                self._mqtt.host,
                self._mqtt.port,
                exc,
                delay,
            )
            self.sleep(delay)
            return
        client.loop_start()
        while not self.stopping and not self._disconnected.wait(0.5):
            pass
        if self.stopping:
            if not self._disconnected.is_set():
                # A normal DISCONNECT: the broker keeps our session and does not send the will.
                client.disconnect()
                self._disconnected.wait(_STATUS_PUBLISH_TIMEOUT_S)
            client.loop_stop()
            return
        client.loop_stop()
        delay = self._backoff.next_delay()
        log.warning("MQTT connection lost; reconnecting in %.1fs", delay)
        self.sleep(delay)

    # ----------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        try:
            if reason_code.is_failure:
                self._metrics.mqtt_connect_failures.inc()
                self._last_error = f"broker refused the connection: {reason_code}"
                log.error("broker refused the connection: %s", reason_code)
                return
            self._backoff.reset()
            self._last_error = None
            self._connection += 1
            log.info(
                "connected to MQTT %s:%d (session present: %s)",
                self._mqtt.host,
                self._mqtt.port,
                getattr(flags, "session_present", None),
            )
            client.publish(
                self._status_topic, _status_payload(self._config.gateway_id, "online"), qos=1, retain=True
            )
            # Connected only once the broker acknowledged the subscriptions (``_on_subscribe``):
            # whoever waits for ``connected`` and then publishes to us is not racing our
            # SUBSCRIBE (a first session has no subscription yet; what the broker sees before the
            # SUBACK is not delivered). Under the lock, so a filter added meanwhile is either in
            # this SUBSCRIBE or sent by subscribe() itself.
            with self._filters_lock:
                filters = list(self._filters)
                self._link_up.set()
                self._ready_mid = None
                if filters:
                    rc, mid = client.subscribe([(f, self._subscribe_options()) for f in filters])
                    if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                        self._ready_mid = mid
            if self._ready_mid is None:
                self._mark_connected()
        except Exception:
            log.exception("error in on_connect")

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        try:
            self._link_up.clear()
            self._ready_mid = None
            self._connected.clear()
            self._metrics.mqtt_connected.set(0)
            if not self.stopping:
                self._last_error = f"disconnected: {reason_code}"
                log.warning("disconnected from MQTT: %s", reason_code)
        except Exception:
            log.exception("error in on_disconnect")
        finally:
            self._disconnected.set()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        try:
            for rc in reason_codes:
                if rc.is_failure:
                    log.error("subscription refused by the broker: %s", rc)
            if mid == self._ready_mid:  # the SUBACK of this connection's subscriptions
                self._ready_mid = None
                self._mark_connected()
        except Exception:
            log.exception("error in on_subscribe")

    def _mark_connected(self) -> None:
        self._connected.set()
        self._metrics.mqtt_connected.set(1)
        self._metrics.mqtt_connects.inc()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            if not self._intake_open.is_set():
                return  # not acked: the broker redelivers it in the next session
            try:
                topic = message.topic
            except UnicodeDecodeError:
                topic = message._topic.decode("utf-8", "replace")
            item = Inbound(topic, message.payload, message.mid, message.qos, self._connection)
            sink = self._routes.get(topic)
            if sink is not None:
                sink(item)  # not device data: never into ingest (nor its dead letters)
                return
            if message.qos == 0:
                try:
                    self._inbox.put_nowait(item)
                except queue.Full:
                    self._metrics.queue_overflow.inc()
                return
            # Receive Maximum bounds unacknowledged QoS 1 deliveries to the queue's size, so this
            # rarely waits; if it does, waiting here is backpressure on the socket, not loss.
            while self._intake_open.is_set():
                try:
                    self._inbox.put(item, timeout=_PUT_RETRY_S)
                    return
                except queue.Full:
                    continue
        except Exception:
            log.exception("error in on_message (message left unacknowledged)")
