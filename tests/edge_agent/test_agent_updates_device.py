"""Signed updates of the device (multichannel) model on a real agent: a device_anomaly release is
verified, installed and hot-swapped into the device worker, which scores with it (version in /status,
the metrics and the model report v3 with its statistics); a model that fails to load or does not fit the
device layout is refused and the running model stays; a restart resumes the installed model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agent_testkit import BASE_TS, GATEWAY, free_port
from test_agent_device_scoring import _pump_rows, _result, _write
from update_testkit import (
    ModelCloud,
    checked,
    desired_model,
    make_release,
    manifest_for,
    sha,
    shipped,
    started,
    update_sections,
    wait_for,
)

from edge_agent.app import Agent
from edge_agent.scoring.device_alerts import DeviceAlertConfig, DeviceAlerts
from edge_agent.updates.state import StateFile
from protocols.signing import Signer

TASK = "device_anomaly"
V1_BYTES, V1_MANIFEST = shipped(TASK)


def device_v2() -> bytes:
    """The shipped int8 device model with one byte of its description changed: same length, loads."""
    out = V1_BYTES.replace(b"MLIR Converted.", b"MLIR Converted!")
    assert out != V1_BYTES and len(out) == len(V1_BYTES)
    return out


def device_release(signer: Signer, data: bytes, metadata_version: int = 2, version: int = 2, **manifest: Any) -> Any:
    return make_release(signer, data, metadata_version, version, task=TASK,
                        manifest=manifest_for(data, version, V1_MANIFEST, **manifest))


@pytest.fixture
def agents(make_config: Any, model_cloud: ModelCloud, signer: Signer) -> Iterator[Callable[..., Agent]]:
    made: list[Agent] = []
    port = free_port()

    def build(**updates: Any) -> Agent:
        agent = Agent(make_config(**update_sections(model_cloud, signer, port, **updates)))
        made.append(agent)
        return agent

    yield build
    for agent in made:
        agent.stop()


def test_a_signed_device_release_is_installed_and_scores(agents: Callable[..., Agent], model_cloud: ModelCloud,
                                                         signer: Signer) -> None:
    data = device_v2()
    model_cloud.add_artifact(data)
    doc = device_release(signer, data)
    assert doc.signed.v == 2  # device_anomaly releases are model_release v2
    model_cloud.serve(desired_model(doc, rollout_id=5))
    agent = started(agents())
    running = agent.device_scoring.running_model()
    assert running is not None and (running.version, running.sha256, running.rollout_id) == (2, sha(data), 5)
    assert agent.status().models[TASK].version == 2 and agent.status().models[TASK].state == "running"
    assert agent.metrics.value("model_version", {"task": TASK}) == 2
    assert agent.metrics.value("model_swaps_total", {"task": TASK}) == 1
    assert agent.inference.running_model().version == 1  # type: ignore[union-attr]  # the stream model untouched
    # it scores: a pump's messages past its warm-up are counted for v2
    _write(agent.store, _pump_rows(460, None))
    assert wait_for(lambda: agent.metrics.value("device_scored_messages_total") >= 460, 60)
    stats = agent.device_scoring.model_stats().active
    assert stats is not None and stats.model_version == 2 and stats.readings >= 50 and stats.devices == 1
    assert stats.device_days > 0.03  # 60 messages a minute apart at least: 1 h of one device
    agent.updater.check_now()
    report = agent.updater.report()
    entry = next(t for t in report.tasks if t.task == TASK)
    assert report.v == 3 and entry.current_version == 2 and entry.previous_version == 1 and entry.rollout_id == 5
    assert entry.active_stats is not None and entry.active_stats.devices == 1
    state = StateFile(agent.config.updates_dir).load().tasks[TASK]
    assert state.current is not None and state.current.version == 2 and state.current.sha256 == sha(data)
    agent.stop()
    # a restart runs the installed model (state file), not the shipped one
    again = started(agents())
    assert again.device_scoring.running_model().version == 2  # type: ignore[union-attr]


def test_a_device_model_that_fails_to_load_or_does_not_fit_is_refused(agents: Callable[..., Agent],
                                                                      model_cloud: ModelCloud,
                                                                      signer: Signer) -> None:
    broken = b"not a flatbuffer" * 100  # signed and digest-correct, but LiteRT refuses it
    model_cloud.add_artifact(broken)
    model_cloud.serve(desired_model(device_release(signer, broken)))
    agent = started(agents())
    running = agent.device_scoring.running_model()
    assert running is not None and running.version == 1  # the shipped model keeps running
    entry = next(t for t in agent.updater.report().tasks if t.task == TASK)
    assert entry.rejected_code == "load_failed" and entry.rejected_version == 2 and entry.current_version == 1
    assert agent.metrics.value("model_update_rejected_total", {"task": TASK, "code": "load_failed"}) == 1
    # a release whose tensors do not fit the device layout (8 channels x 15 inputs -> 8) is refused unloaded
    data = device_v2()
    model_cloud.add_artifact(data)
    spec = dict(V1_MANIFEST["inputs"][0], shape=[1, 60])
    model_cloud.serve(desired_model(device_release(signer, data, 3, 2, inputs=[spec])))
    checked(agent)
    entry = next(t for t in agent.updater.report().tasks if t.task == TASK)
    assert entry.rejected_code == "incompatible" and "60" in (entry.rejected_reason or "")
    assert agent.device_scoring.running_model().version == 1  # type: ignore[union-attr]


def test_a_raised_device_alert_survives_a_model_swap_and_the_new_model_clears_it() -> None:
    alerts = DeviceAlerts(GATEWAY, DeviceAlertConfig(0.9, 0.5, 60_000, 10), model_version=1)
    raised = alerts.observe("pump-1", BASE_TS, _result(0.95))
    assert raised is not None and raised.state == "raised" and alerts.active("pump-1")
    alerts.retarget(DeviceAlertConfig(0.8, 0.5, 60_000, 10), model_version=2)
    assert alerts.active("pump-1") and alerts.observe("pump-1", BASE_TS + 1000, _result(0.5)) is None
    cleared = alerts.observe("pump-1", BASE_TS + 2000, _result(0.1))
    assert cleared is not None and cleared.state == "cleared" and cleared.model_version == 2


def test_a_device_model_swapped_in_is_warm_on_the_stored_messages(agents: Callable[..., Agent],
                                                                  model_cloud: ModelCloud, signer: Signer) -> None:
    """Installed while a pump has history: the new model calibrates on the stored messages on the updater's
    thread, so it scores the very next messages (no second warm-up of 400 messages per device)."""
    agent = started(agents())
    rows = _pump_rows(480, None)
    _write(agent.store, rows[:450])
    assert wait_for(lambda: agent.metrics.value("device_scored_messages_total") >= 450, 60)
    data = device_v2()
    model_cloud.add_artifact(data)
    model_cloud.serve(desired_model(device_release(signer, data)))
    checked(agent)
    assert agent.device_scoring.running_model().version == 2  # type: ignore[union-attr]
    scored = agent.metrics.value("device_scored_messages_total")
    _write(agent.store, rows[450:], seq0=450)
    assert wait_for(lambda: agent.metrics.value("device_scored_messages_total") >= scored + 30, 30)
    stats = agent.device_scoring.model_stats().active
    assert stats is not None and stats.model_version == 2 and stats.readings == 30
