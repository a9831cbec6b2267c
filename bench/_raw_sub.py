"""A bare paho subscriber that only counts (auto-ack, QoS 1): the ceiling for bench/ingest.py.

    python bench/_raw_sub.py HOST PORT EXPECTED [IDLE_S]  -> prints "<received> <msgs_per_s>"

It stops after EXPECTED messages, or after IDLE_S seconds (default 5) without one.
"""

from __future__ import annotations

import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def main() -> None:
    host, port, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    received = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received, first, last
        now = time.perf_counter()
        if received == 0:
            first = now
        received += 1
        last = now
        if received >= expected:
            done.set()

    def on_connect(client: mqtt.Client, *args: object) -> None:
        client.subscribe("edgehouse/v1/+/+/+", qos=1)

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=MQTTProtocolVersion.MQTTv5)
    sub.on_message = on_message
    sub.on_connect = on_connect
    sub.connect(host, port)
    sub.loop_start()
    print("ready", flush=True)
    idle_s = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    while not done.wait(0.2):
        if received and time.perf_counter() - last > idle_s:
            break
    sub.disconnect()
    sub.loop_stop()
    rate = (received - 1) / (last - first) if last > first else 0.0
    print(f"{received} {rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
