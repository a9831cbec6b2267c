"""edge_agent.broker: the shipped Mosquitto configuration."""

from __future__ import annotations


def test_shipped_broker_config_keeps_messages_for_a_slow_or_absent_agent() -> None:
    from edge_agent.broker import shipped_config

    options = {}
    for line in shipped_config().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options[key] = value
    assert options["max_queued_messages"] == "0"  # the default 1000 drops QoS 1 messages
    assert int(options["max_queued_bytes"]) > 0
    assert options["persistence"] == "true"
    assert options["listener"] == "1883 127.0.0.1"
    assert {"persistent_client_expiration", "autosave_interval", "max_inflight_messages"} <= options.keys()
