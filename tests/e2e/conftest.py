"""End-to-end fixtures: real Mosquitto (shipped config), the cloud and agents as processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgehouse_cli.broker import MosquittoBroker
from edgehouse_cli.stack import AgentProcess, CloudProcess
from firmware_sim.config import Fleet


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(data_dir=tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudProcess]:
    c = CloudProcess(workdir=tmp_path / "cloud")
    c.start()
    yield c
    c.stop()


@pytest.fixture
def start_agents(
    tmp_path: Path, broker: MosquittoBroker, cloud: CloudProcess
) -> Iterator[Callable[..., list[AgentProcess]]]:
    started: list[AgentProcess] = []

    def _start(fleet: Fleet, **extra: dict[str, Any]) -> list[AgentProcess]:
        agents = []
        for gw in fleet.gateway_ids:
            token = cloud.register_gateway(gw, fleet.site_of(gw))
            agent = AgentProcess(
                gateway_id=gw, site=fleet.site_of(gw), workdir=tmp_path / "agents",
                mqtt_host=broker.host, mqtt_port=broker.port, filters=fleet.topic_filters(gw),
                cloud_url=cloud.url, cloud_token=token, extra=dict(extra),
            )
            agent.start()
            agents.append(agent)
            started.append(agent)
        return agents

    yield _start
    for agent in started:
        agent.stop()
