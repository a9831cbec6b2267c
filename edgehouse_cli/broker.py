"""MQTT brokers the demo can start: Mosquitto (preferred) or an embedded amqtt broker.

Mosquitto runs with the broker config the gateway ships (``edge_agent/broker/mosquitto.conf``),
adapted to a private port and a private persistence directory. amqtt is a pure-Python MQTT
3.1.1 broker used only when no Mosquitto binary is installed, so that ``make demo`` works on
a machine with nothing but Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

from edge_agent.broker import shipped_config


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s} s")


class Broker(Protocol):
    host: str
    port: int
    name: str
    mqtt_protocol: str  # "v5" or "v311"

    def start(self) -> None: ...
    def stop(self) -> None: ...


def private_mosquitto_conf(base: str, port: int, data_dir: Path) -> str:
    """The shipped config with its listener and persistence moved to a private port and folder."""
    keep = []
    for line in base.splitlines():
        key = line.strip().split(" ", 1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if key in {"listener", "persistence_location", "log_dest", "pid_file", "user"}:
            continue
        keep.append(line)
    if os.geteuid() == 0:
        # Started as root, Mosquitto drops to the `mosquitto` user, which cannot reach a private
        # folder under a root-only parent (pytest's tmp, a user's home): persistence would fail.
        keep.append("user root")
    keep += [
        f"listener {port} 127.0.0.1",
        f"persistence_location {data_dir}/",
        f"log_dest file {data_dir}/mosquitto.log",
    ]
    return "\n".join(keep) + "\n"


@dataclass
class MosquittoBroker:
    """A private Mosquitto with the shipped config on a free port, persisting into ``data_dir``.

    The demo, the end-to-end tests and the benchmarks all use this one launcher, so they all
    run the broker config a gateway ships with. ``extra_config`` lines are appended.
    """

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    extra_config: str = ""
    binary: str | None = None
    name: str = "mosquitto"
    mqtt_protocol: str = "v5"
    _proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        return shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mosquitto.log"

    def start(self, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        binary = self.binary or self.available()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(private_mosquitto_conf(shipped_config(), self.port, self.data_dir) + self.extra_config)
        with open(self.data_dir / "mosquitto.out", "ab") as out:
            self._proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout_s} s: {self.log()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file), then SIGKILL; idempotent."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None

    def kill(self) -> None:
        """SIGKILL, as in a crash (nothing saved since the last autosave)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop and start again on the same port, with the same persistence."""
        self.stop()
        if down_s > 0:
            time.sleep(down_s)
        self.start()

    def log(self) -> str:
        """The end of the broker's log and console output (for failure messages)."""
        parts = []
        for path in (self.data_dir / "mosquitto.out", self.log_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(encoding="utf-8", errors="replace")[-2000:])
        return "\n".join(parts)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedBroker:
    """amqtt in a thread with its own event loop (MQTT 3.1.1 only, memory-only sessions)."""

    name = "amqtt (embedded)"
    mqtt_protocol = "v311"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: object | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self.port = self.port or free_port(self.host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            raise RuntimeError(f"embedded broker failed to start: {self._error!r}")
        wait_for_port(self.host, self.port)

    def _run(self) -> None:
        from amqtt.broker import Broker as AmqttBroker

        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            self._broker = AmqttBroker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - any start failure is reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            fut.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None
        self._broker = None


def pick_broker(data_dir: Path, prefer_embedded: bool = False) -> Broker:
    if not prefer_embedded and MosquittoBroker.available():
        return MosquittoBroker(data_dir=data_dir)
    return EmbeddedBroker()
