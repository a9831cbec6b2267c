"""``edgehouse-cloud serve`` as a real process (optionally ``--workers N``) on a free loopback port.

    with ServedCloud(database_url, workers=2) as cloud:
        httpx.get(f"{cloud.url}/healthz")

Used by the multi-process ingest test and by ``bench/fleet.py`` (which kills and restarts replicas).
Job workers and the rollout controller are not embedded unless asked: those processes only serve.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx
from cloud_testkit import ADMIN_TOKEN

from edgehouse_cli.broker import free_port

_ROOT = Path(__file__).resolve().parents[2]


class ServedCloud:
    def __init__(self, database_url: str, *, workers: int = 1, port: int | None = None,
                 log: IO[bytes] | None = None, **settings: str) -> None:
        self.database_url = database_url
        self.workers = workers
        self.port = port or free_port("127.0.0.1")
        self._log = log
        self.env = {**os.environ, "PYTHONPATH": str(_ROOT), "EDGEHOUSE_CLOUD_ADMIN_TOKEN": ADMIN_TOKEN,
                     "EDGEHOUSE_CLOUD_DATABASE_URL": database_url, "EDGEHOUSE_CLOUD_LOG_LEVEL": "warning",
                     "EDGEHOUSE_CLOUD_EMBEDDED_WORKER": "false", "EDGEHOUSE_CLOUD_EMBEDDED_ROLLOUT_CONTROLLER": "false",
                     **{f"EDGEHOUSE_CLOUD_{k.upper()}": v for k, v in settings.items()}}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloud", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers)],
            env=self.env, cwd=_ROOT, stdout=self._log or subprocess.DEVNULL, stderr=self._log or subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edgehouse-cloud serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("edgehouse-cloud serve did not answer /healthz in time")
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        """The processes uvicorn started to serve (children of the server process), on Linux."""
        assert self.proc is not None
        pid = self.proc.pid
        if self.workers == 1:
            return [pid]
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]

    def kill(self) -> None:
        """SIGKILL the whole server (every worker process at once), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (graceful: requests in flight finish), SIGKILL after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
