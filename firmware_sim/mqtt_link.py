"""Simulated devices' MQTT connections (paho, MQTT 5), driven by one publisher thread each.

A :class:`LinkPump` owns the :class:`DeviceLink` s of one publisher thread and runs their network
I/O itself (``select`` over all sockets, paho's ``loop_read``/``loop_write``/``loop_misc``), so a
publish is written to the socket in the calling thread with no hand-off to a network thread.
Connections the broker loses are re-established with backoff and jitter; paho then re-sends
unacknowledged QoS 1 messages.

A fault "disconnect" ends a connection with reason code 0x04 (*disconnect with will message*):
the broker treats the device as lost and publishes its retained offline will, while no QoS 1
message is left half-acknowledged (the link drains first), so ground-truth counts stay exact.
"""

from __future__ import annotations

import random
import select
import threading
import time
from collections.abc import Iterable
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

LinkState = Literal["idle", "connecting", "up", "lost", "closed"]
_OK = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


class LinkError(RuntimeError):
    """The broker could not be reached or refused the device."""


class DeviceLink:
    """One device's paho client, without a network thread (see :class:`LinkPump`)."""

    def __init__(
        self,
        client_id: str,
        host: str,
        port: int,
        qos: int = 1,
        max_inflight: int = 20,
        max_queued: int = 2000,
        keepalive: int = 30,
        protocol: Literal["v5", "v311"] = "v5",
    ) -> None:
        self.client_id = client_id
        self.host = host
        self.port = port
        self.qos = qos
        self.keepalive = keepalive
        self.sent = 0
        self.acked = 0
        self.state: LinkState = "idle"
        self.refused: str | None = None
        self.retry_at = 0.0
        self._backoff = 0.1
        self.v5 = protocol == "v5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(max_queued)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish

    # paho callbacks run inside loop_read on the publisher thread: flags and counters only.
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
        if rc.is_failure:
            self.refused = str(rc)
        else:
            self.state = "up"
            self._backoff = 0.1

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        self.acked += 1

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked

    def socket(self) -> object | None:
        return self.client.socket()

    def begin_connect(self, will_topic: str, will_payload: bytes) -> None:
        """Open the TCP connection and send CONNECT (raises ``OSError`` if unreachable)."""
        self.client.will_set(will_topic, will_payload, qos=1, retain=True)
        self.refused = None
        self.state = "connecting"
        try:
            if self.v5:
                self.client.connect(self.host, self.port, keepalive=self.keepalive, clean_start=True)
            else:
                self.client.connect(self.host, self.port, keepalive=self.keepalive)
        except OSError:
            self.state = "idle"
            raise

    def lost(self) -> None:
        """The connection broke under us: try again later (backoff with jitter)."""
        if self.state in ("up", "connecting"):
            self.state = "lost"
            self.retry_at = time.monotonic() + self._backoff * random.uniform(0.8, 1.2)

    def try_reconnect(self) -> None:
        self.state = "connecting"
        try:
            self.client.reconnect()
        except OSError:
            self.state = "lost"
            self._backoff = min(self._backoff * 2, 5.0)
            self.retry_at = time.monotonic() + self._backoff * random.uniform(0.8, 1.2)

    def publish(self, topic: str, payload: bytes, retain: bool) -> MQTTErrorCode:
        """Hand one message to paho; QUEUE_SIZE means "pump and retry" (backpressure)."""
        qos = 1 if retain else self.qos
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc in _OK or info.rc is MQTTErrorCode.MQTT_ERR_CONN_LOST:
            # NO_CONN / CONN_LOST: paho keeps a QoS 1 message and re-sends it after the reconnect
            # (a QoS 0 one is gone: no ack to wait for).
            if qos == 1 or info.rc is MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.sent += 1
            if info.rc is MQTTErrorCode.MQTT_ERR_CONN_LOST:
                self.lost()
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if info.rc is MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            return info.rc
        raise LinkError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def drop(self) -> None:
        """Go away like a lost device: the broker publishes the will."""
        if self.v5:
            self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
        else:
            # MQTT 3.1.1 has no "disconnect with will": close the socket without DISCONNECT.
            sock = self.client.socket()
            if sock is not None:
                sock.close()
        self.state = "closed"

    def close(self) -> None:
        """Clean goodbye (no will)."""
        if self.state in ("up", "connecting"):
            self.client.disconnect()
        self.state = "closed"


class LinkPump:
    """Network I/O for a set of links, run by the thread that publishes on them."""

    def __init__(self, links: Iterable[DeviceLink], abort: threading.Event) -> None:
        self.links = list(links)
        self._abort = abort
        self._last_misc = time.monotonic()

    def pump(self, timeout: float = 0.0) -> None:
        """Wait up to ``timeout`` for socket events, then read, write and keep alive."""
        now = time.monotonic()
        socks = {}
        writers = []
        for link in self.links:
            if link.state == "lost" and now >= link.retry_at:
                link.try_reconnect()
            if link.state not in ("up", "connecting"):
                continue
            sock = link.socket()
            if sock is None:
                link.lost()
            else:
                socks[sock] = link
                if link.client.want_write():
                    writers.append(sock)
        if not socks:
            if timeout > 0:
                self._abort.wait(timeout)
            return
        readable, writable, _ = select.select(list(socks), writers, [], timeout)
        for sock in readable:
            link = socks[sock]
            if link.client.loop_read() not in _OK:
                link.lost()
        for sock in writable:
            link = socks[sock]
            if link.state in ("up", "connecting") and link.client.loop_write() not in _OK:
                link.lost()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for link in self.links:
                if link.state in ("up", "connecting") and link.client.loop_misc() not in _OK:
                    link.lost()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Pump for ``seconds``; True if ``stop`` was set meanwhile."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(min(left, 0.05))
        return True

    def connect(self, link: DeviceLink, will_topic: str, will_payload: bytes, timeout_s: float) -> bool:
        """Connect ``link`` (retrying with backoff); False if aborted, :class:`LinkError` on timeout."""
        deadline = time.monotonic() + timeout_s
        delay = 0.1
        while not self._abort.is_set():
            try:
                link.begin_connect(will_topic, will_payload)
            except OSError as exc:
                if time.monotonic() + delay > deadline:
                    raise LinkError(f"cannot reach MQTT broker {link.host}:{link.port}: {exc}") from None
                self._abort.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 2.0)
                continue
            while link.state == "connecting" and link.refused is None and time.monotonic() < deadline:
                if self._abort.is_set():
                    return False
                self.pump(0.01)
            if link.state == "up":
                return True
            if link.refused is not None:
                raise LinkError(f"broker refused {link.client_id!r}: {link.refused}")
            raise LinkError(f"no CONNACK from {link.host}:{link.port} within {timeout_s:g} s")
        return False

    def publish(self, link: DeviceLink, topic: str, payload: bytes, retain: bool) -> bool:
        """Publish, pumping while paho's queue is full; False only if aborted."""
        while link.publish(topic, payload, retain) is MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            if self._abort.is_set():
                return False
            self.pump(0.001)
        return True

    def wait_acked(self, links: Iterable[DeviceLink], timeout_s: float) -> bool:
        """Pump until every message handed to paho is acknowledged (QoS 1) or written (QoS 0)."""
        pending = [link for link in links if link.acked < link.sent]
        deadline = time.monotonic() + timeout_s
        while pending:
            if self._abort.is_set() or time.monotonic() > deadline:
                return False
            self.pump(0.005)
            pending = [link for link in pending if link.acked < link.sent]
        return True

    def drop(self, link: DeviceLink, ack_timeout_s: float) -> None:
        self.wait_acked([link], ack_timeout_s)
        link.drop()
        self.pump(0.0)

    def close(self, ack_timeout_s: float) -> list[DeviceLink]:
        """Drain, then disconnect every link cleanly; returns the links left with unacked messages."""
        if not self._abort.is_set():
            self.wait_acked(self.links, ack_timeout_s)
        unacked = [link for link in self.links if link.acked < link.sent]
        for link in self.links:
            link.close()
        deadline = time.monotonic() + 1.0
        while any(link.client.want_write() and link.socket() is not None for link in self.links):
            if time.monotonic() > deadline:
                break
            self.pump(0.01)
        return unacked
