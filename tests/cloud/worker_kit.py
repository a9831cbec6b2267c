"""Real job workers for the cloud tests: ``edgehouse-cloud worker`` as a subprocess on the test's database.

The app fixtures run the embedded worker (``EMBEDDED_WORKER``, on by default, threads of the test
process); tests of several processes start :class:`WorkerProcess` instead, kill it (``kill -9``) and
start another, against the same database as the API apps they run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_testkit import ADMIN_TOKEN

_SERVES = re.compile(r"worker (\S+) serves ")


@dataclass
class WorkerProcess:
    """``python -m cloud worker`` with ``EDGEHOUSE_CLOUD_*`` settings; ``name`` is read from its log."""

    database_url: str
    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    name: str | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker-{id(self)}.log"

    def start(self, timeout_s: float = 60.0) -> WorkerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "EDGEHOUSE_CLOUD_DATABASE_URL": self.database_url,
               "EDGEHOUSE_CLOUD_ADMIN_TOKEN": ADMIN_TOKEN, "EDGEHOUSE_CLOUD_TRAIN_WORKDIR": str(self.workdir / "train"),
               **{f"EDGEHOUSE_CLOUD_{k.upper()}": v for k, v in self.settings.items()}}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen([sys.executable, "-m", "cloud", "worker", *self.args], env=env,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while self.name is None:
            if self._proc.poll() is not None:
                raise AssertionError(f"the worker exited with {self._proc.returncode}: {self.log()[-3000:]}")
            found = _SERVES.search(self.log())
            if found:
                self.name = found.group(1)
                break
            assert time.monotonic() < deadline, f"the worker did not start: {self.log()[-3000:]}"
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def children(self) -> list[int]:
        """Pids of the worker's child processes (the jobs' solver or training processes)."""
        out: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                out += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return out

    def stop(self, kill: bool = False, timeout_s: float = 30.0) -> int | None:
        if self._proc is None:
            return None
        self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            rc = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            rc = self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until_gone(pids: list[int], timeout_s: float) -> float:
    """Seconds until none of ``pids`` runs; fails after ``timeout_s``."""
    started = time.monotonic()
    while any(alive(p) for p in pids):
        assert time.monotonic() - started < timeout_s, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)
    return time.monotonic() - started
