"""Model registry, signed releases, offline signing, key rotation and the gateway-facing model API."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cloud_testkit import admin_headers, make_settings, register
from fastapi.testclient import TestClient
from model_testkit import (
    candidate_body,
    desired,
    promote,
    register_fleet,
    upload,
    write_key,
)
from sqlalchemy import Engine, func, select

from cloud.app import create_app
from cloud.db.tables import model_artifacts
from cloud.services import model_registry
from cloud.services.errors import BadRequest
from cloud.services.model_signing import Keyring
from cloud.services.rollout_controller import RolloutController
from cloud.settings import CloudSettings
from models.manifest import read_manifest
from models.runtime import default_model_path
from protocols import KeyRotation, ModelRelease, SignedRelease
from protocols.signing import SignatureError, Signer, generate_private_key_pem, trusted_map, verify

ADMIN = admin_headers()


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return write_key(tmp_path / "release.pem")


@pytest.fixture
def settings(database_url: str, tmp_path: Path, signer: Signer) -> CloudSettings:
    return make_settings(database_url, signing_key_file=tmp_path / "release.pem", rollout_tick_s=0.05)


def _release(client: TestClient, task: str, md: int) -> SignedRelease:
    resp = client.get(f"/api/v1/models/{task}/releases/{md}", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return SignedRelease.model_validate_json(resp.text)


def _rollout(client: TestClient, task: str, version: int, **over: Any) -> dict[str, Any]:
    body = {"task": task, "model_version": version, "shadow": False,
            "gates": {"min_stage_duration_s": 0, "min_readings": 10}, **over}
    resp = client.post("/api/v1/rollouts", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


# registry ------------------------------------------------------------------------------------


def test_shipped_defaults_are_the_promoted_baselines(client: TestClient, engine: Engine) -> None:
    listing = client.get("/api/v1/models", headers=ADMIN).json()
    assert [(m["task"], m["model_version"], m["status"], m["created_by"]) for m in listing] == [
        ("anomaly", 1, "promoted", "shipped-default"), ("demand", 1, "promoted", "shipped-default"),
        ("device_anomaly", 1, "promoted", "shipped-default")]
    detail = client.get("/api/v1/models/demand/versions/1", headers=ADMIN).json()
    shipped = read_manifest(default_model_path("demand").with_suffix(".json"))
    assert detail["sha256"] == shipped.sha256 and detail["baseline_of"] == ["fleet"]
    assert detail["manifest"]["version"] == 1 and detail["releases"] == []
    deployed = model_registry.deployed_model(engine, "anomaly", "site:anywhere")
    assert deployed is not None
    version, data, manifest = deployed
    assert version == 1 and data == default_model_path("anomaly").read_bytes() and manifest["task"] == "anomaly"
    # a gateway keeps its shipped model: no release to send yet
    headers = register(client, "gw-1")
    assert desired(client, "gw-1", headers)["models"] == []


def test_register_candidate_assigns_versions_and_stores_artifacts_once(client: TestClient, engine: Engine) -> None:
    body = candidate_body("anomaly", salt=7)
    cand = model_registry.CandidateIn(
        task="anomaly", tflite=base64.b64decode(body["tflite_b64"]), manifest=body["manifest"],
        metrics={"nll": 0.9}, data_from_ts=10, data_to_ts=20, parent_version=1, created_by="job", job_id=4,
        gate_passed=True, gate_reason="nll 0.90 <= 0.93")
    first = model_registry.register_candidate(engine, cand)
    second = model_registry.register_candidate(engine, cand)
    assert (first.model_version, second.model_version) == (2, 3)
    assert first.status == "candidate" and first.job_id == 4 and first.gate_passed is True
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(model_artifacts)
                             .where(model_artifacts.c.sha256 == first.sha256)).scalar()
    assert count == 1
    detail = client.get("/api/v1/models/anomaly/versions/3", headers=ADMIN).json()
    assert detail["manifest"]["version"] == 3 and detail["data_from_ts"] == 10 and detail["parent_version"] == 1
    bad = cand.model_copy(update={"tflite": cand.tflite + b"x"})
    with pytest.raises(BadRequest) as err:
        model_registry.register_candidate(engine, bad)
    assert err.value.field == "manifest.sha256"
    listed = client.get("/api/v1/models", params={"task": "anomaly", "status": "candidate"}, headers=ADMIN).json()
    assert [m["model_version"] for m in listed] == [2, 3]


def test_upload_refuses_bad_input_naming_the_field(client: TestClient) -> None:
    url = "/api/v1/models/anomaly/versions"
    resp = client.post(url, json=candidate_body(tflite_b64="***"), headers=ADMIN)
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "tflite_b64"
    body = candidate_body()
    body["manifest"]["inputs"] = "nope"
    resp = client.post(url, json=body, headers=ADMIN)
    assert resp.status_code == 400 and resp.json()["detail"][0]["field"].startswith("manifest.inputs")
    resp = client.post(url, json=candidate_body("demand"), headers=ADMIN)
    assert resp.status_code == 400 and resp.json()["detail"][0]["field"] == "manifest.task"
    resp = client.post("/api/v1/models/vision/versions", json=candidate_body(), headers=ADMIN)
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "task"
    resp = client.post(url, json=candidate_body(scope="region:eu"), headers=ADMIN)
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "scope"
    resp = client.post(url, json=candidate_body(parent_version=99), headers=ADMIN)
    assert resp.status_code == 404 and resp.json()["detail"][0]["field"] == "parent_version"


def test_promote_signs_a_verifiable_release(client: TestClient, signer: Signer) -> None:
    v = upload(client)
    detail = promote(client, "anomaly", v)
    assert detail["status"] == "promoted" and detail["promoted_by"] == "admin" and detail["promoted_ts"]
    [rel] = detail["releases"]
    assert rel["keyids"] == [signer.keyid] and not rel["rollback"] and not rel["held"]
    doc = _release(client, "anomaly", rel["metadata_version"])
    assert verify(doc.signed, doc.signatures, trusted_map([signer.public_raw])) == signer.keyid
    assert doc.signed.model_version == v and doc.signed.manifest["version"] == v
    assert doc.signed.artifact.sha256 == detail["sha256"]
    assert doc.signed.expires_ts - doc.signed.created_ts == 30 * 86_400_000
    again = client.post(f"/api/v1/models/anomaly/versions/{v}/promote", headers=ADMIN)
    assert again.status_code == 409 and again.json()["detail"][0]["field"] == "version"


def test_a_failed_gate_needs_force(client: TestClient, engine: Engine) -> None:
    body = candidate_body("demand", salt=3)
    stored = model_registry.register_candidate(engine, model_registry.CandidateIn(
        task="demand", tflite=base64.b64decode(body["tflite_b64"]), manifest=body["manifest"], metrics={},
        data_from_ts=None, data_to_ts=None, parent_version=None, created_by="job", gate_passed=False,
        gate_reason="WAPE 0.4 > 0.3"))
    resp = client.post(f"/api/v1/models/demand/versions/{stored.model_version}/promote", headers=ADMIN)
    assert resp.status_code == 409 and "WAPE" in resp.text and resp.json()["detail"][0]["field"] == "force"
    assert promote(client, "demand", stored.model_version, force=True)["status"] == "promoted"


def test_metadata_version_strictly_grows_and_expiring_releases_are_resigned(
    client: TestClient, engine: Engine, settings: CloudSettings, signer: Signer
) -> None:
    register_fleet(client, 2)
    v = upload(client)
    md1 = promote(client, "anomaly", v)["releases"][0]["metadata_version"]
    _rollout(client, "anomaly", v)
    keyring = Keyring.from_settings(settings)
    controller = RolloutController(engine, keyring, 1.0)
    now = int(time.time() * 1000)
    controller.tick(now + keyring.ttl_ms // 2)  # not due yet
    assert len(client.get(f"/api/v1/models/anomaly/versions/{v}", headers=ADMIN).json()["releases"]) == 1
    controller.tick(now + keyring.ttl_ms * 4 // 5)  # within the last quarter: re-signed
    releases = client.get(f"/api/v1/models/anomaly/versions/{v}", headers=ADMIN).json()["releases"]
    mds = [r["metadata_version"] for r in releases]
    assert len(mds) == 2 and mds[0] == md1 and mds[1] > md1
    new = _release(client, "anomaly", mds[1])
    verify(new.signed, new.signatures, trusted_map([signer.public_raw]))
    assert new.signed.model_version == v and new.signed.expires_ts > _release(client, "anomaly", md1).signed.expires_ts
    # a rollback to the previous model is a newer document again
    rollout_id = client.get("/api/v1/rollouts", headers=ADMIN).json()[0]["rollout_id"]
    assert client.post(f"/api/v1/rollouts/{rollout_id}/rollback", headers=ADMIN).status_code == 200
    back = client.get("/api/v1/models/anomaly/versions/1", headers=ADMIN).json()["releases"]
    assert back[-1]["rollback"] and back[-1]["metadata_version"] > mds[1]


# gateway-facing API --------------------------------------------------------------------------


def test_desired_state_etag_and_304(client: TestClient) -> None:
    fleet = register_fleet(client, 1)
    (gw, headers), = fleet.items()
    url = f"/api/v1/gateways/{gw}/models/desired"
    first = client.get(url, headers=headers)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith('W/')
    time.sleep(0.01)
    second = client.get(url, headers=headers)
    assert second.headers["etag"] == etag and second.json()["generated_ts"] >= first.json()["generated_ts"]
    unchanged = client.get(url, headers={**headers, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == etag and not unchanged.content
    v = upload(client)
    promote(client, "anomaly", v)
    _rollout(client, "anomaly", v)
    changed = client.get(url, headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    [model] = changed.json()["models"]
    assert model["rollout_id"] == 1 and model["release"]["signed"]["model_version"] == v
    assert model["artifact_path"] == f"/api/v1/models/artifacts/{model['release']['signed']['artifact']['sha256']}"


def test_artifact_download_with_ranges(client: TestClient) -> None:
    headers = register(client, "gw-1")
    sha = client.get("/api/v1/models/anomaly/versions/1", headers=ADMIN).json()["sha256"]
    data = default_model_path("anomaly").read_bytes()
    url = f"/api/v1/models/artifacts/{sha}"
    full = client.get(url, headers=headers)
    assert full.status_code == 200 and full.content == data and full.headers["accept-ranges"] == "bytes"
    assert hashlib.sha256(full.content).hexdigest() == sha
    part = client.get(url, headers={**headers, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == data[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{len(data)}"
    rest = client.get(url, headers={**headers, "Range": "bytes=100-"})
    assert rest.status_code == 206 and part.content + rest.content == data
    assert rest.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    tail = client.get(url, headers={**headers, "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = client.get(url, headers={**headers, "Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    assert client.get(url, headers={**headers, "Range": "items=0-1"}).status_code == 200
    for huge in ("bytes=1-" + "9" * 4301, "bytes=" + "9" * 4301 + "-", "bytes=-" + "9" * 4301,
                 "bytes=0-9223372036854775808"):  # past int64 (and past Python's int-conversion limit)
        resp = client.get(url, headers={**headers, "Range": huge})
        assert resp.status_code == 416 and resp.headers["content-range"] == f"bytes */{len(data)}"
    assert client.get(f"/api/v1/models/artifacts/{'0' * 64}", headers=headers).status_code == 404
    planner = client.post("/api/v1/tokens", json={"role": "planner"}, headers=ADMIN).json()["token"]
    assert client.get(url, headers={"Authorization": f"Bearer {planner}"}).status_code == 403


def test_auth_of_model_routes(client: TestClient) -> None:
    a = register(client, "gw-a")
    b = register(client, "gw-b")
    planner = {"Authorization": "Bearer " + client.post("/api/v1/tokens", json={"role": "planner"},
                                                        headers=ADMIN).json()["token"]}
    assert client.get("/api/v1/gateways/gw-b/models/desired", headers=a).status_code == 403
    assert client.get("/api/v1/gateways/gw-b/models/desired", headers=b).status_code == 200
    assert client.get("/api/v1/gateways/gw-b/models/desired", headers=ADMIN).status_code == 200
    assert client.get("/api/v1/gateways/gw-b/models/desired", headers=planner).status_code == 403
    assert client.get("/api/v1/gateways/gw-b/models/desired").status_code == 401
    report = {"schema": "edgehouse.model_report", "v": 1, "gateway_id": "gw-b", "ts": 1, "agent_version": "1"}
    assert client.post("/api/v1/gateways/gw-b/models/report", json=report, headers=a).status_code == 403
    wrong = client.post("/api/v1/gateways/gw-a/models/report", json=report, headers=a)
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["field"] == "gateway_id"
    bad = client.post("/api/v1/gateways/gw-b/models/report", json={**report, "tasks": [{"task": "x"}]}, headers=b)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"].startswith("tasks.0")
    assert client.post("/api/v1/gateways/gw-b/models/report", json=report, headers=b).status_code == 204
    for who in (planner, a):
        assert client.get("/api/v1/models", headers=who).status_code == 403
        assert client.post("/api/v1/models/anomaly/versions/1/promote", headers=who).status_code == 403
        assert client.post("/api/v1/models/anomaly/versions", json=candidate_body(), headers=who).status_code == 403
        assert client.get("/api/v1/models/signing-requests", headers=who).status_code == 403
        assert client.post("/api/v1/rollouts", json={"task": "anomaly", "model_version": 1},
                           headers=who).status_code == 403
        assert client.put("/api/v1/gateways/gw-a/group", json={"group": "x"}, headers=who).status_code == 403


# offline signing and key rotation ------------------------------------------------------------


@pytest.fixture
def offline_key() -> Signer:
    return Signer(generate_private_key_pem())


@pytest.fixture
def offline(database_url: str, offline_key: Signer) -> Any:
    settings = make_settings(database_url, trusted_keys=[offline_key.public_key.public_key], rollout_tick_s=0.05)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _sign_pending(client: TestClient, key: Signer) -> list[int]:
    pending = client.get("/api/v1/models/signing-requests", headers=ADMIN).json()
    out = []
    for req in pending:
        doc = key.sign_release(ModelRelease.model_validate_json(json.dumps(req["release"])))
        resp = client.post("/api/v1/models/releases", content=doc.model_dump_json(by_alias=True),
                           headers={**ADMIN, "Content-Type": "application/json"})
        assert resp.status_code == 201, resp.text
        out.append(resp.json()["metadata_version"])
    return out


def test_offline_signing_flow(offline: TestClient, offline_key: Signer) -> None:
    client = offline
    fleet = register_fleet(client, 3)
    assert client.get("/api/v1/models/keys", headers=ADMIN).json()["online_keyid"] is None
    v = upload(client)
    detail = promote(client, "anomaly", v)
    assert detail["releases"] == [] and len(detail["pending_signatures"]) == 1
    pending = client.get("/api/v1/models/signing-requests", headers=ADMIN).json()
    assert [(p["purpose"], p["model_version"], p["release"]["rollback"]) for p in pending] == [
        ("release", v, False), ("rollback", 1, True)]
    assert pending[1]["metadata_version"] > pending[0]["metadata_version"]
    refused = client.post("/api/v1/rollouts", json={"task": "anomaly", "model_version": v}, headers=ADMIN)
    assert refused.status_code == 409 and "sign" in refused.text
    # a signature by an untrusted key, and a document other than the requested one, are refused
    wanted = ModelRelease.model_validate_json(json.dumps(pending[0]["release"]))
    stranger = Signer(generate_private_key_pem()).sign_release(wanted)
    resp = client.post("/api/v1/models/releases", content=stranger.model_dump_json(by_alias=True), headers=ADMIN)
    assert resp.status_code == 400 and resp.json()["detail"][0]["field"] == "signatures"
    altered = offline_key.sign_release(wanted.model_copy(update={"expires_ts": wanted.expires_ts + 1}))
    resp = client.post("/api/v1/models/releases", content=altered.model_dump_json(by_alias=True), headers=ADMIN)
    assert resp.status_code == 409 and resp.json()["detail"][0]["field"] == "signed"
    signed = _sign_pending(client, offline_key)
    assert len(signed) == 2 and client.get("/api/v1/models/signing-requests", headers=ADMIN).json() == []
    releases = client.get("/api/v1/models/anomaly/versions/1", headers=ADMIN).json()["releases"]
    assert [(r["rollback"], r["held"]) for r in releases] == [(True, True)]
    # the held rollback is not served: gateways still keep their shipped model
    assert all(desired(client, gw, h)["models"] == [] for gw, h in fleet.items())
    rollout = client.post("/api/v1/rollouts", json={"task": "anomaly", "model_version": v, "shadow": False},
                          headers=ADMIN).json()
    canary = rollout["stages"][0]["gateways"][0]
    assert desired(client, canary, fleet[canary])["models"][0]["release"]["signed"]["model_version"] == v
    # automatic rollback needs no key online: the pre-signed rollback is published
    resp = client.post(f"/api/v1/rollouts/{rollout['rollout_id']}/rollback", json={"reason": "bad"}, headers=ADMIN)
    assert resp.status_code == 200 and "pre-signed" in resp.json()["reason"]
    for gw, h in fleet.items():
        [model] = desired(client, gw, h)["models"]
        doc = SignedRelease.model_validate_json(json.dumps(model["release"]))
        assert doc.signed.model_version == 1 and doc.signed.rollback
        assert doc.signed.metadata_version == pending[1]["metadata_version"]
        verify(doc.signed, doc.signatures, trusted_map([offline_key.public_raw]))


def test_key_rotation_acceptance_and_refusal(offline: TestClient, offline_key: Signer) -> None:
    client = offline
    headers = register(client, "gw-1")
    new_key = Signer(generate_private_key_pem())
    rotation = KeyRotation(rotation_version=1, created_ts=int(time.time() * 1000), add=(new_key.public_key,))
    unknown = Signer(generate_private_key_pem()).sign_rotation(rotation)
    resp = client.post("/api/v1/models/keys/rotations", content=unknown.model_dump_json(by_alias=True),
                       headers=ADMIN)
    assert resp.status_code == 400 and "unknown_key" in resp.text
    doc = offline_key.sign_rotation(rotation)
    resp = client.post("/api/v1/models/keys/rotations", content=doc.model_dump_json(by_alias=True), headers=ADMIN)
    assert resp.status_code == 201, resp.text
    assert set(resp.json()["trusted"]) == {offline_key.keyid, new_key.keyid} and resp.json()["rotation_version"] == 1
    again = client.post("/api/v1/models/keys/rotations", content=doc.model_dump_json(by_alias=True), headers=ADMIN)
    assert again.status_code == 409 and again.json()["detail"][0]["field"] == "signed.rotation_version"
    served = desired(client, "gw-1", headers)["key_rotations"]
    assert len(served) == 1 and served[0]["signed"]["add"][0]["keyid"] == new_key.keyid
    # the new key now signs releases; a second rotation by the new key revokes the old one
    v = upload(client)
    promote(client, "anomaly", v)
    assert len(_sign_pending(client, new_key)) == 2
    revoke = new_key.sign_rotation(KeyRotation(rotation_version=2, created_ts=int(time.time() * 1000),
                                               revoke=(offline_key.keyid,)))
    resp = client.post("/api/v1/models/keys/rotations", content=revoke.model_dump_json(by_alias=True),
                       headers=ADMIN)
    assert resp.status_code == 201 and resp.json()["trusted"] == [new_key.keyid]
    late = offline_key.sign_rotation(KeyRotation(rotation_version=3, created_ts=1, add=(offline_key.public_key,)))
    resp = client.post("/api/v1/models/keys/rotations", content=late.model_dump_json(by_alias=True), headers=ADMIN)
    assert resp.status_code == 400
    malformed = client.post("/api/v1/models/keys/rotations", json={"signed": {}, "signatures": []}, headers=ADMIN)
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["field"].startswith("signed")
    with pytest.raises(SignatureError):
        verify(revoke.signed, revoke.signatures, trusted_map([offline_key.public_raw]))
