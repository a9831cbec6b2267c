"""Fixtures of the edge agent tests (defined in agent_testkit, registered here)."""

from agent_testkit import broker, fake_cloud, make_config

__all__ = ["broker", "fake_cloud", "make_config"]
