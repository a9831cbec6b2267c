"""A private Mosquitto for tests: the shipped broker config on a free loopback port.

    with Mosquitto() as broker:
        client.connect(broker.host, broker.port)
        broker.restart()          # same port, same persistence, e.g. to test reconnects

One launcher serves the demo, the benchmarks and the tests (``edgehouse_cli.broker``), so
every test runs the config a gateway ships with (``edge_agent/broker/mosquitto.conf``: no
per-client message-count limit, queue bounded in bytes, persistence on).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Self

from edgehouse_cli.broker import MosquittoBroker, free_port

__all__ = ["Mosquitto", "free_port", "mosquitto_available"]


def mosquitto_available() -> bool:
    return MosquittoBroker.available() is not None


class Mosquitto(MosquittoBroker):
    """:class:`MosquittoBroker` in a temporary folder unless ``persistence_dir`` is given."""

    def __init__(self, port: int | None = None, extra_config: str = "", persistence_dir: Path | None = None) -> None:
        self._own_dir = persistence_dir is None
        super().__init__(
            data_dir=persistence_dir or Path(tempfile.mkdtemp(prefix="eh-mosq-")),
            port=port or 0,
            extra_config=extra_config,
        )

    def start(self, timeout_s: float = 10.0) -> Mosquitto:  # type: ignore[override]
        super().start(timeout_s)
        return self

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
