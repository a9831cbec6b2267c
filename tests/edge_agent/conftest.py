"""Fixtures of the edge agent tests (defined in agent_testkit / update_testkit, registered here)."""

from agent_testkit import broker, fake_cloud, make_config, store
from update_testkit import model_cloud, signer

__all__ = ["broker", "fake_cloud", "make_config", "model_cloud", "signer", "store"]
