"""The task ``device_anomaly`` in the model-update contracts: which version of each contract may carry it,
what the previous release's contracts (the committed v1 schemas) keep, and the rule the cloud applies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from protocols import (
    MODEL_TASKS,
    ArtifactRef,
    DesiredModel,
    DesiredModels,
    ModelRelease,
    ModelReport,
    ModelStats,
    SignedRelease,
    TaskReport,
    release_version,
    supports_task,
)
from protocols.schemas import SCHEMA_DIR

SHA = "ab" * 32


def _release(task: str, v: int) -> ModelRelease:
    manifest = {"task": task, "sha256": SHA, "size_bytes": 10, "version": 2}
    return ModelRelease(v=v, task=task, name=task, metadata_version=3, model_version=2,  # type: ignore[arg-type]
                        created_ts=1, expires_ts=2, artifact=ArtifactRef(sha256=SHA, length=10), manifest=manifest)


def _desired(v: int, *tasks: str) -> DesiredModels:
    models = tuple(DesiredModel(task=t, release=SignedRelease(signed=_release(t, release_version(t)),  # type: ignore[arg-type]
                                                              signatures=()), artifact_path=f"/a/{SHA}")
                   for t in tasks)
    return DesiredModels(v=v, gateway_id="gw-1", generated_ts=1, models=models)  # type: ignore[arg-type]


def test_device_anomaly_is_a_task_of_the_new_versions_only() -> None:
    assert MODEL_TASKS == ("anomaly", "demand", "device_anomaly")
    assert [release_version(t) for t in MODEL_TASKS] == [1, 1, 2]
    assert _release("device_anomaly", 2).v == 2 and _release("anomaly", 1).v == 1
    with pytest.raises(ValidationError, match="needs model_release v2"):
        _release("device_anomaly", 1)
    assert _desired(2, "anomaly", "device_anomaly").v == 2 and _desired(1, "anomaly", "demand").v == 1
    with pytest.raises(ValidationError, match="needs desired_models v2"):
        _desired(1, "device_anomaly")
    entry = TaskReport(task="device_anomaly", state="running",
                       active_stats=ModelStats(model_version=1, since_ts=0, devices=3, device_days=1.5, errors=2))
    report = ModelReport(gateway_id="gw-1", ts=1, agent_version="0.3.0", tasks=(entry,))
    assert report.v == 3 and json.loads(report.model_dump_json(by_alias=True))["tasks"][0]["active_stats"]["errors"] == 2
    with pytest.raises(ValidationError, match="needs model_report v3"):
        ModelReport(v=2, gateway_id="gw-1", ts=1, agent_version="0.2.0", tasks=(entry,))
    for v in (1, 2):  # the cloud keeps taking the previous reports
        assert ModelReport(v=v, gateway_id="gw-1", ts=1, agent_version="0.2.0",  # type: ignore[arg-type]
                           tasks=(TaskReport(task="anomaly", state="none"),)).v == v


def test_the_cloud_offers_the_new_task_only_to_agents_reporting_v3() -> None:
    assert supports_task(None, "anomaly") and supports_task(1, "demand") and supports_task(2, "anomaly")
    assert not supports_task(None, "device_anomaly") and not supports_task(2, "device_anomaly")
    assert supports_task(3, "device_anomaly")


def _schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMA_DIR / name).read_text()))


def test_the_previous_contracts_stay_as_published() -> None:
    """The v1 files (what the previous release validates) still name only anomaly and demand; the new
    files name device_anomaly, and a v1 document the cloud builds for an old agent fits the v1 file."""
    for name, path in (("edgehouse.model_release.v1.json", ("properties", "task")),
                       ("edgehouse.desired_models.v1.json", ("$defs", "DesiredModel", "properties", "task"))):
        node: Any = _schema(name)
        for key in path:
            node = node[key]
        assert node["enum"] == ["anomaly", "demand"], name
    assert "device_anomaly" in _schema("edgehouse.model_release.v2.json")["properties"]["task"]["enum"]
    assert _schema("edgehouse.model_report.v3.json")["properties"]["v"]["enum"] == [1, 2, 3]
    old = json.loads(_desired(1, "anomaly").model_dump_json(by_alias=True))
    assert old["v"] == 1 and old["models"][0]["release"]["signed"]["v"] == 1
