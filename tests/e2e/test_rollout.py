"""A staged rollout over four real agents: a worse candidate halts at the canary and rolls back
(never reaching a later wave), a good one reaches every gateway through canary and waves.

Real Mosquitto, the cloud and the agents as processes, the simulator streaming telemetry; the
cloud signs with an online key that the agents trust.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest
from e2e_kit import wait_until

from edgehouse_cli.broker import MosquittoBroker
from edgehouse_cli.lifecycle import ModelAdmin, running_version, seen_versions, shipped_variant
from edgehouse_cli.stack import AgentProcess, CloudProcess
from firmware_sim.config import Fleet
from firmware_sim.runner import SimRunner
from protocols.signing import Signer, generate_private_key_pem

GATEWAYS = 4


def _fleet() -> Fleet:
    devices = [
        {"kind": "cold_room", "interval_s": 300, "count": 2},
        {"kind": "conveyor", "interval_s": 300},
        {"kind": "power_meter", "interval_s": 300},
    ]
    sites = [{"id": f"site-{i}", "gateways": [{"id": f"gw-{i}", "devices": devices}]} for i in range(GATEWAYS)]
    return Fleet.from_dict({"seed": 5, "start": "2026-03-02T06:00:00Z", "day_seconds": 30, "sites": sites})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[ModelAdmin, list[AgentProcess], SimRunner]]:
    key = tmp_path / "release.pem"
    key.write_bytes(generate_private_key_pem())
    public = Signer.from_file(key).public_key.public_key
    broker = MosquittoBroker(data_dir=tmp_path / "broker")
    cloud = CloudProcess(workdir=tmp_path / "cloud",
                         settings={"signing_key_file": str(key), "rollout_tick_s": "0.2"})
    fleet = _fleet()
    agents: list[AgentProcess] = []
    runner: SimRunner | None = None
    broker.start()
    cloud.start()
    try:
        for gw in fleet.gateway_ids:
            agent = AgentProcess(
                gateway_id=gw, site=fleet.site_of(gw), workdir=tmp_path / "agents", mqtt_host=broker.host,
                mqtt_port=broker.port, filters=fleet.topic_filters(gw), cloud_url=cloud.url,
                cloud_token=cloud.register_gateway(gw, fleet.site_of(gw)),
                extra={"updates": {"trusted_keys": [public], "poll_interval_s": 0.3, "report_interval_s": 0.3,
                                   "min_free_bytes": 0},
                       "models": {"cooldown_s": 60.0}},
            )
            agent.start()
            agents.append(agent)
        runner = SimRunner(fleet, broker.host, broker.port, duration_s=600.0)
        runner.start()
        yield ModelAdmin(cloud.url, cloud.admin_token), agents, runner
    finally:
        if runner is not None:
            runner.stop(force=True)
        for agent in agents:
            agent.stop()
        cloud.stop()
        broker.stop()


class _Watch:
    """Polls every agent's /status in the background: which versions each one ever mentioned."""

    def __init__(self, agents: list[AgentProcess]) -> None:
        self._agents = agents
        self.seen: dict[str, set[int]] = {a.gateway_id: set() for a in agents}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for agent in self._agents:
                try:
                    self.seen[agent.gateway_id] |= seen_versions(agent.status(), "anomaly")
                except (httpx.HTTPError, OSError, ValueError):  # a busy agent: next round
                    pass

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_worse_candidate_halts_at_canary_and_good_one_reaches_every_wave(
    stack: tuple[ModelAdmin, list[AgentProcess], SimRunner],
) -> None:
    admin, agents, _runner = stack
    baseline = running_version(agents[0].status(), "anomaly")
    assert baseline is not None
    # The scorer stays silent until each stream has seen a day of its readings (models/README.md): 288 readings
    # (5-minute readings: a busy machine keeps up with them) of each of the four devices' 11 channels, a
    # simulated day (30 s here), before the candidates are judged on their alerts. Scored, not only stored: a
    # candidate warms up on the rows the running model has scored, and on a busy machine the scorer runs behind
    # ingest (skipping the oldest rows when far behind); a gate judged on cold streams would pass on readings no
    # model could have alerted on.
    day = 288 * 11
    wait_until(lambda: all(a.metric("edgehouse_agent_inference_scored_readings_total") > day + 11 * 50
                           for a in agents), 180, "a day of telemetry scored at every agent")
    gates = {"min_readings": 400, "max_alert_rate_ratio": 2.0, "min_stage_duration_s": 1.0, "stage_timeout_s": 120}

    # A mis-calibrated candidate: the same network with an alert threshold far too low.
    tflite, manifest = shipped_variant("anomaly", anomaly_threshold=0.02)
    bad = admin.upload("anomaly", tflite, manifest, parent_version=baseline)
    admin.promote("anomaly", bad)
    with _Watch(agents) as watch:
        rollout = admin.rollout("anomaly", bad, canary_fraction=0.25, waves=[0.5, 1.0], shadow=True, gates=gates)
        final = admin.wait_rollout(rollout["rollout_id"], 120)
        assert final["state"] == "rolled_back", json.dumps([final["events"], final["members"]])
        canary = set(final["stages"][0]["gateways"])
        later = {gw for stage in final["stages"][1:] for gw in stage["gateways"]}
        assert len(canary) == 1 and len(later) == GATEWAYS - 1
        assert any("alert" in e["reason"] for e in final["events"] if e["kind"] in ("halted", "rolled_back", "gate"))
        # Every gateway (the canary included) runs the baseline again and drops the shadow.
        wait_until(lambda: all(running_version(a.status(), "anomaly") == baseline
                               and bad not in seen_versions(a.status(), "anomaly") for a in agents),
                   60, "every agent back on the baseline")
    assert all(bad in watch.seen[gw] for gw in canary), "the canary never ran the candidate in shadow"
    assert not any(bad in watch.seen[gw] for gw in later), (
        f"the bad model reached a later wave: {watch.seen}; {json.dumps(final['events'])}")
    for gw in later:
        assert all(m["release"]["signed"]["model_version"] != bad for m in admin.desired(gw)["models"])

    # A sound candidate goes canary -> wave 1 -> wave 2 and ends on every gateway.
    tflite, manifest = shipped_variant("anomaly")
    good = admin.upload("anomaly", tflite, manifest, parent_version=baseline)
    admin.promote("anomaly", good)
    rollout = admin.rollout("anomaly", good, canary_fraction=0.25, waves=[0.5, 1.0], shadow=True, gates=gates)
    final = admin.wait_rollout(rollout["rollout_id"], 180)
    assert final["state"] == "completed", json.dumps([final["events"], final["members"]])
    wait_until(lambda: all(running_version(a.status(), "anomaly") == good for a in agents), 60,
               "every agent on the new model")
    for agent in agents:
        line = agent.status()["models"]["anomaly"]
        assert line["previous_version"] is not None
        assert line.get("rejected_code") is None
