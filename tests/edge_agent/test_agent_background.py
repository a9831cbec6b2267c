"""BackgroundWorker: start once, stop event and wake, timed join, the loop guard."""

from __future__ import annotations

import threading
import time

import pytest

from edge_agent import background
from edge_agent.background import BackgroundWorker
from edge_agent.metrics import AgentMetrics


class _Flaky(BackgroundWorker[None]):
    name = "flaky"

    def __init__(self, metrics: AgentMetrics, fail_first: int) -> None:
        super().__init__(metrics)
        self.fail_first = fail_first
        self.steps = 0
        self.finished = 0
        self.woken = 0

    def step(self, resource: None) -> None:
        self.steps += 1
        if self.steps <= self.fail_first:
            raise KeyError(f"unexpected {self.steps}")  # no component catches a KeyError
        if self.wait_for_wake(5.0):
            self.woken += 1

    def finish(self, resource: None) -> None:
        self.finished += 1


def wait_for(cond: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_an_unexpected_error_is_counted_and_the_loop_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "GUARD_MIN_S", 0.01)
    monkeypatch.setattr(background, "GUARD_MAX_S", 0.02)
    metrics = AgentMetrics()
    worker = _Flaky(metrics, fail_first=3)
    worker.start()
    try:
        assert wait_for(lambda: worker.steps == 4)  # three failures, then a step that waits
        assert worker.running
        assert metrics.value("thread_errors_total", {"thread": "flaky"}) == 3
        worker.notify()
        assert wait_for(lambda: worker.woken == 1)
        with pytest.raises(RuntimeError, match="flaky already started"):
            worker.start()
    finally:
        assert worker.stop(timeout_s=5)
    assert not worker.running and worker.finished == 1
    assert not [t for t in threading.enumerate() if t.name == "edge-flaky"]
    worker.start()  # stopped: it may start again, with a cleared stop event
    try:
        assert wait_for(lambda: worker.steps >= 5) and worker.running
    finally:
        worker.stop()
    assert worker.finished == 2


class _Stuck(BackgroundWorker[None]):
    name = "stuck"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def step(self, resource: None) -> None:
        self.release.wait(10)  # ignores the stop


def test_a_hung_join_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    worker = _Stuck()
    worker.start()
    try:
        assert worker.stop(timeout_s=0.1) is False
        assert any("stuck thread did not stop within 0.1s" in r.getMessage() for r in caplog.records)
    finally:
        worker.release.set()
