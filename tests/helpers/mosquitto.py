"""A private Mosquitto broker on a free loopback port, for tests.

    with Mosquitto() as broker:
        client.connect(broker.host, broker.port)
        broker.restart()          # same port, e.g. to test reconnects

The config has ``max_queued_messages 0`` (no per-client queue limit: Mosquitto's default of
1000 drops QoS 1 messages for a slow subscriber) and ``persistence false`` unless a
``persistence_dir`` is given.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

MOSQUITTO_BIN = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_available() -> bool:
    return Path(MOSQUITTO_BIN).exists() or shutil.which("mosquitto") is not None


class Mosquitto:
    """Start/stop/restart one private broker; ``host``/``port``/``url`` say where it listens."""

    def __init__(
        self,
        port: int | None = None,
        extra_config: str = "",
        persistence_dir: Path | None = None,
        binary: str | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._binary = binary or (MOSQUITTO_BIN if Path(MOSQUITTO_BIN).exists() else shutil.which("mosquitto"))
        if self._binary is None:
            raise FileNotFoundError("mosquitto is not installed")
        self._tmp = Path(tempfile.mkdtemp(prefix="eh-mosq-"))
        self.log_path = self._tmp / "mosquitto.log"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "max_queued_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to 'mosquitto', which cannot write our temp dirs
        if persistence_dir is not None:
            persistence_dir.mkdir(parents=True, exist_ok=True)
            lines += ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        self.config_path = self._tmp / "mosquitto.conf"
        self.config_path.write_text("\n".join(lines) + "\n" + extra_config + "\n", encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> Self:
        if self.running:
            return self
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [self._binary, "-c", str(self.config_path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen on {self.port} within {timeout_s} s: {self.log()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL); idempotent."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout_s)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self.stop()

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        if down_s > 0:
            time.sleep(down_s)
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
