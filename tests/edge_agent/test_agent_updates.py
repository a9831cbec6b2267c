"""Model updates on the gateway: install, same-artifact releases, resumed downloads, a swap under
steady ingest, shadow runs, rollback, ``check_models`` over MQTT, restarts, key rotations, reports."""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from agent_testkit import GATEWAY, SITE, free_port, inbound, scan
from paho.mqtt.enums import CallbackAPIVersion
from update_testkit import (
    ModelCloud,
    anomaly_v2,
    checked,
    desired_model,
    make_release,
    manifest_for,
    new_signer,
    public_b64,
    rotation,
    sha,
    shipped,
    started,
    stored_readings,
    update_sections,
    wait_for,
    write_telemetry,
)

from edge_agent.app import Agent
from edge_agent.cli import model_line
from edge_agent.config import AgentConfig, ConfigError
from edge_agent.ingest_batch import BatchWriter
from edge_agent.updates.state import StateFile
from edge_agent.updates.verify import Rejected, check_compatible, parse_manifest
from models.manifest import ModelManifest
from protocols import GatewayCommand, encode, gateway_topic, record_id
from protocols.signing import Signer
from tests.helpers.mosquitto import Mosquitto

V1_BYTES, V1_MANIFEST = shipped()
V1_SHA = sha(V1_BYTES)


def wave(n: int, seed: int = 1, start: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [20.0 + 2.0 * math.sin((start + i) / 30) + rng.gauss(0.0, 0.1) for i in range(n)]


@pytest.fixture
def agents(make_config: Any, model_cloud: ModelCloud, signer: Signer) -> Iterator[Callable[..., Agent]]:
    made: list[Agent] = []
    port = free_port()

    def build(mqtt_port: int | None = None, models: dict[str, Any] | None = None, **updates: Any) -> Agent:
        sections = update_sections(model_cloud, signer, mqtt_port or port, **updates)
        if models is not None:
            sections["models"] = models
        agent = Agent(make_config(**sections))
        made.append(agent)
        return agent

    yield build
    for agent in made:
        agent.stop()


def v2_release(signer: Signer, metadata_version: int = 2, **kw: Any) -> Any:
    return make_release(signer, anomaly_v2(), metadata_version, 2, **kw)


# --------------------------------------------------------------------------- install


def test_signed_release_installs_swaps_and_reports(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    data = anomaly_v2()
    model_cloud.add_artifact(data)
    model_cloud.serve(desired_model(v2_release(signer), rollout_id=7))
    agent = started(agents())
    running = agent.inference.running_model()
    assert running is not None and running.version == 2 and running.sha256 == sha(data)
    assert running.metadata_version == 2 and running.rollout_id == 7
    path = agent.config.updates_dir / "anomaly" / f"v2-{sha(data)}.tflite"
    assert running.path == path and path.read_bytes() == data
    assert json.loads(path.with_suffix(".json").read_text())["version"] == 2  # the signed manifest
    m = agent.metrics
    assert m.value("model_swaps_total", {"task": "anomaly"}) == 1
    assert m.value("model_version", {"task": "anomaly"}) == 2
    assert m.value("model_update_last_check_timestamp_seconds") > 0
    state = StateFile(agent.config.updates_dir).load().tasks["anomaly"]
    assert state.current is not None and state.current.version == 2 and state.last_metadata_version == 2
    assert state.previous is not None and state.previous.sha256 == V1_SHA  # kept for rollback
    status = agent.status().models["anomaly"]
    assert (status.version, status.sha256, status.state, status.previous_version) == (
        2,
        sha(data)[:12],
        "running",
        1,
    )
    assert wait_for(lambda: any(r.tasks[0].current_version == 2 for r in model_cloud.reports))
    report = next(r for r in model_cloud.reports if r.tasks[0].current_version == 2)
    anomaly = next(t for t in report.tasks if t.task == "anomaly")
    assert anomaly.previous_version == 1 and anomaly.current_metadata_version == 2 and anomaly.rollout_id == 7
    assert report.v == 3  # v3: this agent understands device_anomaly (desired_models v2)
    assert {t.task for t in report.tasks} == {"anomaly", "demand", "device_anomaly"} and report.trusted_keyids == (
        signer.keyid,
    )
    assert all(a == "Bearer gw-token" for a in model_cloud.auth)
    # nothing changed: the next poll is a 304 and installs nothing
    checked(agent)
    assert model_cloud.not_modified >= 1 and m.value("model_swaps_total", {"task": "anomaly"}) == 1


def test_same_artifact_new_release_only_records_the_metadata_version(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    man = manifest_for(V1_BYTES, 1, anomaly_defaults={"threshold": 0.4, "threshold_source": "retuned"})
    model_cloud.serve(desired_model(make_release(signer, V1_BYTES, 5, 1, manifest=man)))
    agent = started(agents())
    running = agent.inference.running_model()
    assert running is not None and running.sha256 == V1_SHA and running.metadata_version == 5
    assert model_cloud.artifact_requests == []  # nothing downloaded
    assert agent.metrics.value("model_swaps_total", {"task": "anomaly"}) == 0
    assert StateFile(agent.config.updates_dir).load().tasks["anomaly"].last_metadata_version == 5


def test_download_resumes_after_the_connection_drops(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    data, base = shipped("anomaly", "_float")  # a differently typed model (float32), 10.5 kB
    path = model_cloud.add_artifact(data)
    model_cloud.drop_after[path] = 4096
    model_cloud.serve(desired_model(make_release(signer, data, 2, 3, manifest=manifest_for(data, 3, base))))
    agent = started(agents())
    running = agent.inference.running_model()
    assert running is not None and running.version == 3
    assert model_cloud.artifact_requests[0] == (path, None)
    resumed = [rng for p, rng in model_cloud.artifact_requests[1:] if p == path]
    assert resumed and resumed[0] is not None and int(resumed[0].split("=")[1].rstrip("-")) >= 1024


def _cut_download(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> tuple[Agent, Path, str]:
    """An agent whose download of v3 is cut at 5000 bytes, then answered 503 until it gives up."""
    data, base = shipped("anomaly", "_float")
    path = model_cloud.add_artifact(data)
    model_cloud.drop_after[path] = 5000
    model_cloud.fail_after_cut = 503
    model_cloud.serve(desired_model(make_release(signer, data, 2, 3, manifest=manifest_for(data, 3, base))))
    agent = started(agents(download_retries=0))
    status = agent.status().models["anomaly"]
    assert status.rejected_code == "download_failed" and status.version == 1
    part = agent.config.updates_dir / "staging" / f"{sha(data)}.part"
    assert part.exists() and 0 < part.stat().st_size < len(data)
    return agent, part, path


def test_part_file_survives_a_restart_and_the_download_resumes(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    agent, part, path = _cut_download(agents, model_cloud, signer)
    have = part.stat().st_size
    agent.stop()
    # the restarted agent asks for the rest only
    del model_cloud.fail_with[path]
    model_cloud.artifact_requests.clear()
    again = started(agents())
    running = again.inference.running_model()
    assert running is not None and running.version == 3
    assert model_cloud.artifact_requests == [(path, f"bytes={have}-")]
    assert not part.exists()


def test_partial_download_of_a_release_no_longer_desired_is_deleted(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    agent, part, _ = _cut_download(agents, model_cloud, signer)
    # The cloud replaces it (here: the shipped model again, in a newer signed release).
    model_cloud.serve(desired_model(make_release(signer, V1_BYTES, 4, 1, manifest=manifest_for(V1_BYTES, 1))))
    checked(agent)
    assert not part.exists()
    running = agent.inference.running_model()
    assert running is not None and running.sha256 == V1_SHA and running.metadata_version == 4


# --------------------------------------------------------------------------- swap under ingest


def test_swap_under_steady_ingest_scores_every_stored_reading_once(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    data = anomaly_v2()
    model_cloud.add_artifact(data)
    agent = started(agents())  # nothing desired yet (404)
    stop = threading.Event()
    written = [0]

    def ingest() -> None:
        seq = 0
        while not stop.is_set():
            write_telemetry(agent.store, seq, wave(20, seed=seq, start=seq))
            seq += 20
            written[0] = seq
            agent.inference.notify()
            stop.wait(0.005)

    writer = threading.Thread(target=ingest, daemon=True)
    writer.start()
    try:
        assert wait_for(lambda: written[0] >= 400)
        model_cloud.serve(desired_model(v2_release(signer)))
        checked(agent)
        running = agent.inference.running_model()
        assert running is not None and running.version == 2
        assert wait_for(lambda: written[0] >= 1200)
    finally:
        stop.set()
        writer.join(5)
    total = stored_readings(agent.store)
    m = agent.metrics
    assert wait_for(lambda: m.value("inference_scored_readings_total") == total)
    assert m.value("inference_dropped_messages_total") == 0 and m.value("inference_errors_total") == 0
    assert m.value("model_swaps_total", {"task": "anomaly"}) == 1
    stats = agent.inference.model_stats()
    assert stats.previous is not None and stats.active is not None
    assert (stats.previous.model_version, stats.active.model_version) == (1, 2)
    # every reading was scored by exactly one active model: v1 up to the swap, v2 after it
    assert stats.previous.readings + stats.active.readings == total
    assert stats.previous.readings > 0 and stats.active.readings > 0


# --------------------------------------------------------------------------- shadow, promotion, rollback


def test_shadow_runs_next_to_the_running_model_then_is_promoted(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    data, base = shipped("anomaly", "_float")
    model_cloud.add_artifact(data)
    doc = make_release(signer, data, 2, 3, manifest=manifest_for(data, 3, base))
    model_cloud.serve(desired_model(doc, mode="shadow", rollout_id=3))
    agent = started(agents())
    assert agent.inference.running_model() is not None
    assert agent.inference.running_model().version == 1  # type: ignore[union-attr]
    shadow = agent.inference.shadow_model()
    assert shadow is not None and shadow.version == 3
    assert agent.status().models["anomaly"].state == "shadow"
    n = write_telemetry(agent.store, 0, wave(300))
    agent.inference.notify()
    assert wait_for(lambda: agent.metrics.value("inference_scored_readings_total") == n)
    stats = agent.inference.model_stats()
    assert stats.shadow is not None and stats.baseline is not None
    assert stats.shadow.model_version == 3 and stats.baseline.model_version == 1
    # The same readings, like for like: those both models score past their warm-up (150 per stream).
    assert stats.shadow.readings == stats.baseline.readings
    assert 0 < stats.shadow.readings <= n - 150
    report = agent.updater.report()
    anomaly = next(t for t in report.tasks if t.task == "anomaly")
    assert anomaly.state == "shadow" and anomaly.shadow_version == 3 and anomaly.shadow_stats == stats.shadow
    assert anomaly.shadow_baseline_stats == stats.baseline
    # promotion: the same signed release, now active: no download, the warm shadow scorer takes over
    requests = len(model_cloud.artifact_requests)
    model_cloud.serve(desired_model(doc, mode="active", rollout_id=3))
    checked(agent)
    running = agent.inference.running_model()
    assert running is not None and running.version == 3 and agent.inference.shadow_model() is None
    assert len(model_cloud.artifact_requests) == requests
    assert agent.metrics.value("model_swaps_total", {"task": "anomaly"}) == 1
    state = StateFile(agent.config.updates_dir).load().tasks["anomaly"]
    assert state.current is not None and state.current.version == 3 and state.shadow is None


def _shadow_v3_agent(agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer) -> Agent:
    """A started agent running the shipped v1 with v3 (the float model) desired in shadow."""
    data, base = shipped("anomaly", "_float")
    model_cloud.add_artifact(data)
    model_cloud.serve(
        desired_model(make_release(signer, data, 2, 3, manifest=manifest_for(data, 3, base)), "shadow")
    )
    return started(agents())


def test_model_stats_carry_over_an_agent_restart(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    agent = _shadow_v3_agent(agents, model_cloud, signer)
    n = write_telemetry(agent.store, 0, wave(300))
    agent.inference.notify()
    assert wait_for(lambda: agent.metrics.value("inference_scored_readings_total") == n)
    before = agent.inference.model_stats()
    assert before.shadow is not None and before.shadow.readings > 0 and before.active is not None
    agent.stop()  # saves the statistics with the install state
    saved = StateFile(agent.config.updates_dir).load().tasks["anomaly"].stats
    assert saved is not None and saved.shadow == before.shadow and saved.active == before.active
    again = started(agents())
    # The shadow run and its baseline go on counting from where they were (same since_ts), so a
    # rollout gate does not start over; the stored rows are re-scored as warm-up, not counted.
    n2 = write_telemetry(again.store, 300, wave(100, start=300))
    again.inference.notify()
    assert wait_for(lambda: again.metrics.value("inference_scored_readings_total") == n2)
    after = again.inference.model_stats()
    assert after.shadow is not None and after.baseline is not None and after.active is not None
    assert after.shadow.since_ts == before.shadow.since_ts and after.active.since_ts == before.active.since_ts
    assert after.shadow.readings == before.shadow.readings + n2
    assert after.baseline.readings == after.shadow.readings
    assert after.active.readings == before.active.readings + n2
    # A model installed later counts from zero: promote the shadow.
    data, base = shipped("anomaly", "_float")
    model_cloud.serve(
        desired_model(make_release(signer, data, 4, 3, manifest=manifest_for(data, 3, base)), "active")
    )
    checked(again)
    promoted = again.inference.model_stats()
    assert promoted.active is not None and promoted.active.model_version == 3
    assert promoted.active.readings == 0 and promoted.previous is not None


def test_shadow_no_longer_desired_is_dropped(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    agent = _shadow_v3_agent(agents, model_cloud, signer)
    assert agent.inference.shadow_model() is not None
    model_cloud.serve()
    checked(agent)
    assert agent.inference.shadow_model() is None
    assert agent.inference.running_model().version == 1  # type: ignore[union-attr]


def test_signed_rollback_to_the_previous_model_is_accepted_without_a_download(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    model_cloud.add_artifact(anomaly_v2())
    model_cloud.serve(desired_model(v2_release(signer)))
    agent = started(agents())
    assert agent.inference.running_model().version == 2  # type: ignore[union-attr]
    requests = len(model_cloud.artifact_requests)
    model_cloud.serve(desired_model(make_release(signer, V1_BYTES, 3, 1, rollback=True)))
    checked(agent)
    running = agent.inference.running_model()
    assert running is not None and running.version == 1 and running.metadata_version == 3
    assert len(model_cloud.artifact_requests) == requests  # the previous model's bytes were local
    state = StateFile(agent.config.updates_dir).load().tasks["anomaly"]
    assert state.current is not None and state.current.version == 1
    assert state.previous is not None and state.previous.version == 2
    assert agent.metrics.value("model_swaps_total", {"task": "anomaly"}) == 2


# --------------------------------------------------------------------------- restart


def test_restart_runs_the_installed_model_and_still_refuses_a_replay(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    old = make_release(signer, V1_BYTES, 1, 1)
    model_cloud.add_artifact(anomaly_v2())
    model_cloud.serve(desired_model(v2_release(signer)))
    first = started(agents())
    assert first.inference.running_model().version == 2  # type: ignore[union-attr]
    first.stop()
    model_cloud.serve(desired_model(old))  # an old, validly signed document replayed
    requests = len(model_cloud.artifact_requests)
    again = started(agents())
    running = again.inference.running_model()
    assert running is not None and running.version == 2 and running.metadata_version == 2
    assert again.status().models["anomaly"].rejected_code == "replay"
    assert again.metrics.value("model_update_rejected_total", {"task": "anomaly", "code": "replay"}) == 1
    assert len(model_cloud.artifact_requests) == requests
    # the same replayed document again: refused once, not re-counted on every poll
    checked(again)
    assert again.metrics.value("model_update_rejected_total", {"task": "anomaly", "code": "replay"}) == 1


def test_broken_installed_model_falls_back_to_the_previous_one_at_start(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    data = anomaly_v2()
    model_cloud.add_artifact(data)
    model_cloud.serve(desired_model(v2_release(signer)))
    first = started(agents())
    path = first.inference.running_model().path  # type: ignore[union-attr]
    first.stop()
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    again = started(agents())
    running = again.inference.running_model()
    assert running is not None and running.sha256 == V1_SHA  # previous (the shipped model)
    assert again.metrics.value("model_load_failures_total", {"task": "anomaly"}) == 1
    assert again.status().models["anomaly"].rejected_code == "load_failed"


# --------------------------------------------------------------------------- MQTT command


def test_check_models_command_over_mqtt(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer, broker: Mosquitto
) -> None:
    model_cloud.add_artifact(anomaly_v2())
    agent = started(agents(mqtt_port=broker.port))
    assert wait_for(lambda: agent.mqtt.connected)
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="ops", protocol=paho.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        topic = gateway_topic(SITE, GATEWAY, "cmd")
        pub.publish(topic, b"{not json", qos=1).wait_for_publish(5)
        assert wait_for(lambda: agent.metrics.value("commands_total", {"cmd": "invalid"}) == 1)
        model_cloud.serve(desired_model(v2_release(signer)))
        cmd = GatewayCommand(cmd="check_models", cmd_id="c1")
        pub.publish(topic, encode(cmd), qos=1).wait_for_publish(5)
        assert wait_for(lambda: (agent.inference.running_model() or agent).version == 2)  # type: ignore[union-attr]
        # A record in the outbox that nothing woke the sync for (cloud.interval_s is 60 s here):
        # it reaches the cloud because of sync_now.
        conn = agent.store.connect()
        try:
            BatchWriter(conn, SITE, 2000, 4096).write([inbound(scan(1, code_type="barcode", tag=None))], 1)
        finally:
            conn.close()
        rid = record_id("scan", "scan-1", "boot-a", 1)
        assert rid not in model_cloud.synced
        pub.publish(topic, encode(GatewayCommand(cmd="sync_now", cmd_id="c2")), qos=1).wait_for_publish(5)
        assert wait_for(lambda: agent.metrics.value("commands_total", {"cmd": "sync_now"}) == 1)
        assert wait_for(lambda: rid in model_cloud.synced, timeout=10)  # well before the 60 s round
        assert wait_for(lambda: agent.status().outbox_depth == 0)
    finally:
        pub.loop_stop()
        pub.disconnect()
    m = agent.metrics
    assert m.value("commands_total", {"cmd": "check_models"}) == 1
    assert m.value("dead_letters_total") == 0 and m.value("messages_in_total") == 0  # never ingested
    assert agent.ingest.running and agent.commands.running


# --------------------------------------------------------------------------- key rotation


def test_key_rotation_by_a_trusted_key_is_accepted_and_persists(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    newkey = new_signer()
    add = rotation(signer, 1, add=(newkey,))
    model_cloud.add_artifact(anomaly_v2())
    model_cloud.serve(desired_model(v2_release(newkey)), rotations=(add,))
    agent = started(agents())
    assert agent.inference.running_model().version == 2  # type: ignore[union-attr]
    assert set(agent.updater.report().trusted_keyids) == {signer.keyid, newkey.keyid}
    agent.stop()
    # after a restart the added key is still trusted; a rotation revoking the old key applies
    revoke = rotation(newkey, 2, revoke=(signer.keyid,))
    data, base = shipped("anomaly", "_float")
    model_cloud.add_artifact(data)
    model_cloud.serve(
        desired_model(make_release(signer, data, 3, 3, manifest=manifest_for(data, 3, base))),
        rotations=(add, revoke),
    )
    again = started(agents())
    assert again.updater.report().trusted_keyids == (newkey.keyid,)
    assert again.status().models["anomaly"].rejected_code == "unknown_key"  # signed by the revoked key
    assert again.inference.running_model().version == 2  # type: ignore[union-attr]


# --------------------------------------------------------------------------- pieces


def test_updates_config_defaults_and_bad_keys(make_config: Any, tmp_path: Path) -> None:
    cfg = make_config(cloud={"url": "http://cloud", "token": "t"})
    assert cfg.updates_enabled and cfg.updates_dir == cfg.data_dir / "models"
    assert cfg.updates.poll_interval_s == 300 and cfg.updates.report_interval_s == 60
    assert cfg.updates.chunk_bytes == 65536
    assert not make_config().updates_enabled
    with pytest.raises(ConfigError, match=r"^updates\.trusted_keys"):
        make_config(updates={"trusted_keys": ["not-a-key"]})
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("# ops key\n" + public_b64(new_signer()) + "\n")
    cfg = make_config(
        cloud={"url": "http://cloud", "token": "t"}, updates={"trusted_key_files": [str(keyfile)]}
    )
    assert len(cfg.updates.all_trusted_keys()) == 1
    keyfile.write_text("garbage\n")
    with pytest.raises(ConfigError, match=r"^updates\.trusted_key_files"):
        make_config(updates={"trusted_key_files": [str(keyfile)]})
    with pytest.raises(ConfigError, match="updates.enabled"):
        make_config(updates={"enabled": True})
    path = tmp_path / "agent.toml"
    path.write_text('gateway_id = "g"\nsite = "s"\ndata_dir = "d"\n[updates]\ntrusted_keys = ["AAAA"]\n')
    with pytest.raises(ConfigError) as info:
        AgentConfig.load(path)
    assert str(info.value).startswith("updates.trusted_keys")


def test_compatibility_checks_are_pure_functions() -> None:
    man = ModelManifest.model_validate(V1_MANIFEST)
    check_compatible(man)
    wrong = man.model_copy(update={"inputs": (man.inputs[0].model_copy(update={"shape": (1, 30)}),)})
    with pytest.raises(Rejected) as info:
        check_compatible(wrong)
    assert info.value.code == "incompatible"
    demand = ModelManifest.model_validate(shipped("demand")[1])
    check_compatible(demand)
    doc = make_release(new_signer(), V1_BYTES, 1, 1)
    with pytest.raises(Rejected) as info:
        parse_manifest(doc.signed, "demand")
    assert info.value.code == "manifest_mismatch"


def test_status_cli_model_line_and_http_status(agents: Callable[..., Agent], model_cloud: ModelCloud) -> None:
    agent = started(agents())
    assert agent.http is not None
    data = httpx.get(f"http://127.0.0.1:{agent.http.port}/status").json()
    assert data["models"]["anomaly"]["version"] == 1 and data["models"]["anomaly"]["sha256"] == V1_SHA[:12]
    line = model_line(
        {
            "version": 2,
            "sha256": "abc",
            "state": "rejected",
            "rejected_code": "expired",
            "rejected_reason": "old",
        }
    )
    assert line == "v2 abc, rejected, rejected expired: old"


def test_same_bytes_under_a_new_model_version_is_installed_not_relabelled(
    agents: Callable[..., Agent], model_cloud: ModelCloud, signer: Signer
) -> None:
    """Another model version may reuse the bytes with other scorer defaults: it must take effect."""
    data, base = shipped()
    manifest = manifest_for(data, 2, base)
    manifest["anomaly_defaults"] = {**base["anomaly_defaults"], "threshold": 0.2}
    model_cloud.add_artifact(data)
    model_cloud.serve(desired_model(make_release(signer, data, 2, 2, manifest=manifest)))
    agent = started(agents())
    running = agent.inference.running_model()
    assert running is not None and running.version == 2 and running.sha256 == V1_SHA
    assert agent.inference.threshold == pytest.approx(0.2)
    assert agent.metrics.value("model_swaps_total", {"task": "anomaly"}) == 1
    assert model_cloud.artifact_requests == []  # the bytes were already here
