"""``create_app(settings)`` served by uvicorn on a free loopback port, in a thread of the test process.

    with LiveCloud(settings) as cloud:
        httpx.get(f"{cloud.url}/healthz")

For tests that need a real HTTP server (schemathesis, browsers) but want the app's objects at hand.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI

from cloud.app import create_app
from cloud.settings import CloudSettings
from edgehouse_cli.broker import free_port


class LiveCloud:
    def __init__(self, settings: CloudSettings) -> None:
        self.settings = settings
        self.app: FastAPI = create_app(settings)
        self.port = free_port("127.0.0.1")
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning", log_config=None, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, name="live-cloud", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the cloud did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
