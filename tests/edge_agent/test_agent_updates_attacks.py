"""The gateway refuses hostile or broken model updates and keeps scoring with its current model.

Each case serves one bad release (or key rotation) through the model-update contract and checks:
the refusal code, ``edgehouse_agent_model_update_rejected_total{task,code}``, the status line,
and that the running model is unchanged and still scores new telemetry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_testkit import free_port
from update_testkit import (
    NOW_MS,
    ModelCloud,
    anomaly_v2,
    checked,
    desired_model,
    make_release,
    manifest_for,
    new_signer,
    rotation,
    sha,
    shipped,
    started,
    update_sections,
    wait_for,
    write_telemetry,
)

from edge_agent.app import Agent
from protocols.signing import Signer

V1_BYTES, V1_MANIFEST = shipped()
V1_SHA = sha(V1_BYTES)
DAY_MS = 86_400_000


@dataclass
class Case:
    """``setup`` serves the bad update (after the agent started, if it needs a first install)."""

    name: str
    code: str
    setup: Callable[[ModelCloud, Signer, Agent], None]
    expect_version: int = 1
    before: Callable[[ModelCloud, Signer], None] | None = None
    updates: dict[str, Any] | None = None
    task: str = "anomaly"


def _serve(cloud: ModelCloud, doc: Any, data: bytes | None = None) -> None:
    if data is not None:
        cloud.add_artifact(data)
    cloud.serve(desired_model(doc))


def unsigned(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    _serve(cloud, make_release(None, anomaly_v2(), 2, 2), anomaly_v2())


def unknown_key(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    _serve(cloud, make_release(new_signer(), anomaly_v2(), 2, 2), anomaly_v2())


def tampered_artifact(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    data = anomaly_v2()
    doc = make_release(signer, data, 2, 2)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x01
    cloud.artifacts[desired_model(doc).artifact_path] = bytes(bad)
    cloud.serve(desired_model(doc))


def tampered_manifest(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    """A validly signed release whose embedded manifest was edited afterwards (a lower threshold)."""
    data = anomaly_v2()
    cloud.add_artifact(data)
    cloud.serve(desired_model(make_release(signer, data, 2, 2)))
    assert cloud.desired is not None
    cloud.desired["models"][0]["release"]["signed"]["manifest"]["anomaly_defaults"]["threshold"] = 0.01


def inconsistent_manifest(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    """Signed, but the embedded manifest is no ModelManifest this agent can read."""
    data = anomaly_v2()
    man = manifest_for(data, 2)
    del man["inputs"]
    _serve(cloud, make_release(signer, data, 2, 2, manifest=man), data)


def truncated(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    data = anomaly_v2()
    doc = make_release(signer, data, 2, 2)
    cloud.artifacts[desired_model(doc).artifact_path] = data[: len(data) // 2]  # a complete, short answer
    cloud.serve(desired_model(doc))


def over_long(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    data = anomaly_v2()
    doc = make_release(signer, data, 2, 2)
    cloud.artifacts[desired_model(doc).artifact_path] = data + b"\0" * 4096
    cloud.serve(desired_model(doc))


def install_v2_first(cloud: ModelCloud, signer: Signer) -> None:
    _serve(cloud, make_release(signer, anomaly_v2(), 2, 2), anomaly_v2())


def replay(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    """An old, validly signed document (model v1, metadata 1) served again after v2 was installed."""
    _serve(cloud, make_release(signer, V1_BYTES, 1, 1))


def downgrade(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    """A newer document that goes back to v1 without the signed rollback flag."""
    _serve(cloud, make_release(signer, V1_BYTES, 3, 1))


def expired(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    doc = make_release(
        signer, anomaly_v2(), 2, 2, created_ts=NOW_MS - 10 * DAY_MS, expires_ts=NOW_MS - DAY_MS
    )
    _serve(cloud, doc, anomaly_v2())


def new_manifest_old_artifact(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    """A new signed release whose artifact URL serves the old model's bytes."""
    doc = make_release(signer, anomaly_v2(), 2, 2)
    cloud.artifacts[desired_model(doc).artifact_path] = V1_BYTES
    cloud.serve(desired_model(doc))


def wrong_shapes(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    data = anomaly_v2()
    man = manifest_for(data, 2)
    man["inputs"] = [{**man["inputs"][0], "shape": [1, 30]}]  # the features give 31 values
    _serve(cloud, make_release(signer, data, 2, 2, manifest=man), data)


def wrong_model_bytes(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    """The manifest claims anomaly tensor specs, the bytes are the demand model: the runtime refuses."""
    data, _ = shipped("demand")
    _serve(cloud, make_release(signer, data, 2, 2, manifest=manifest_for(data, 2)), data)


def agent_too_old(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    _serve(cloud, make_release(signer, anomaly_v2(), 2, 2, min_agent_version="99.0.0"), anomaly_v2())


def disk_full_free_space(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    _serve(cloud, make_release(signer, anomaly_v2(), 2, 2), anomaly_v2())


def disk_full_enospc(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    """The staging file is /dev/full: the kernel answers every write with ENOSPC."""
    data = anomaly_v2()
    staging = agent.config.updates_dir / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    os.symlink("/dev/full", staging / f"{sha(data)}.part")
    _serve(cloud, make_release(signer, data, 2, 2), data)


def rotation_unknown_key(cloud: ModelCloud, signer: Signer, agent: Agent) -> None:
    attacker = new_signer()
    rot = rotation(attacker, 1, add=(attacker,), revoke=(signer.keyid,))
    data = anomaly_v2()
    cloud.add_artifact(data)
    cloud.serve(desired_model(make_release(attacker, data, 2, 2)), rotations=(rot,))


CASES = [
    Case("unsigned", "unsigned", unsigned),
    Case("unknown_key", "unknown_key", unknown_key),
    Case("tampered_artifact", "sha256_mismatch", tampered_artifact),
    Case("tampered_manifest", "bad_signature", tampered_manifest),
    Case("inconsistent_manifest", "manifest_mismatch", inconsistent_manifest),
    Case("truncated_download", "length_mismatch", truncated),
    Case("over_long_download", "length_mismatch", over_long),
    Case("replay_old_manifest", "replay", replay, expect_version=2, before=install_v2_first),
    Case("downgrade_without_rollback", "downgrade", downgrade, expect_version=2, before=install_v2_first),
    Case("expired", "expired", expired),
    Case("new_manifest_old_artifact", "sha256_mismatch", new_manifest_old_artifact),
    Case("wrong_tensor_shapes", "incompatible", wrong_shapes),
    Case("wrong_model_bytes", "load_failed", wrong_model_bytes),
    Case("agent_too_old", "agent_too_old", agent_too_old),
    Case("disk_full_free_space", "disk_full", disk_full_free_space, updates={"min_free_bytes": 1 << 62}),
    Case("disk_full_enospc", "disk_full", disk_full_enospc),
    Case("rotation_unknown_key", "unknown_key", rotation_unknown_key, task="keys"),
]


@pytest.fixture
def agent_for(make_config: Any, model_cloud: ModelCloud, signer: Signer) -> Iterator[Callable[..., Agent]]:
    made: list[Agent] = []

    def build(**updates: Any) -> Agent:
        agent = Agent(make_config(**update_sections(model_cloud, signer, free_port(), **updates)))
        made.append(agent)
        return agent

    yield build
    for agent in made:
        agent.stop()


def scores_new_telemetry(agent: Agent, seq: int) -> bool:
    before = agent.metrics.value("inference_scored_readings_total")
    n = write_telemetry(agent.store, seq, [20.0 + 0.01 * i for i in range(50)])
    agent.inference.notify()
    return wait_for(lambda: agent.metrics.value("inference_scored_readings_total") == before + n)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_attack_is_refused_and_the_current_model_keeps_scoring(
    case: Case, agent_for: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    if case.before is not None:
        case.before(model_cloud, signer)
    agent = started(agent_for(**(case.updates or {})))
    running = agent.inference.running_model()
    assert running is not None and running.version == case.expect_version
    assert scores_new_telemetry(agent, 0)
    case.setup(model_cloud, signer, agent)
    checked(agent)
    m = agent.metrics
    assert m.value("model_update_rejected_total", {"task": case.task, "code": case.code}) == 1
    total = sum(
        s.value
        for metric in m.registry.collect()
        if metric.name == "edgehouse_agent_model_update_rejected"
        for s in metric.samples
        if s.name.endswith("_total")
    )
    if case.task == "keys":  # the release signed by the attacker's key is refused as well
        assert m.value("model_update_rejected_total", {"task": "anomaly", "code": "unknown_key"}) == 1
    assert total == (2 if case.task == "keys" else 1)  # refused once, with exactly this code
    line = agent.status().models[case.task]
    assert line.rejected_code == case.code and line.rejected_reason
    after = agent.inference.running_model()
    assert after is not None and after.sha256 == running.sha256 and after.version == case.expect_version
    assert m.value("model_swaps_total", {"task": "anomaly"}) == (1 if case.before else 0)
    assert scores_new_telemetry(agent, 100)
    report = agent.updater.report()
    if case.task == "anomaly":
        anomaly = next(t for t in report.tasks if t.task == "anomaly")
        assert anomaly.rejected_code == case.code and anomaly.current_version == case.expect_version
    else:
        assert report.trusted_keyids == (signer.keyid,)  # the attacker's rotation changed nothing
    staging = agent.config.updates_dir / "staging"
    assert not staging.exists() or not [
        p for p in staging.iterdir() if not p.is_symlink() and p.stat().st_size
    ]
    # polling again does not re-check (nor re-count) a permanently refused document
    if case.code not in ("disk_full",):
        checked(agent)
        assert m.value("model_update_rejected_total", {"task": case.task, "code": case.code}) == 1


def test_refusal_is_in_the_persisted_state_and_survives_a_restart(
    agent_for: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    expired(model_cloud, signer, None)  # type: ignore[arg-type]
    agent = started(agent_for())
    assert agent.status().models["anomaly"].rejected_code == "expired"
    agent.stop()
    state = json.loads((agent.config.updates_dir / "state.json").read_text())
    assert state["tasks"]["anomaly"]["rejected"]["code"] == "expired"
    again = started(agent_for())
    assert again.status().models["anomaly"].rejected_code == "expired"
    assert again.metrics.value("model_update_rejected_total", {"task": "anomaly", "code": "expired"}) == 0


def test_disk_full_removes_the_partial_file(
    agent_for: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer, tmp_path: Path
) -> None:
    agent = started(agent_for())
    disk_full_enospc(model_cloud, signer, agent)
    checked(agent)
    assert agent.status().models["anomaly"].rejected_code == "disk_full"
    assert not (agent.config.updates_dir / "staging" / f"{sha(anomaly_v2())}.part").exists()
    # space back: the next poll installs it
    checked(agent)
    assert agent.inference.running_model().version == 2  # type: ignore[union-attr]
