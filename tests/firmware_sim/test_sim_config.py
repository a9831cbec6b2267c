"""Fleet files: the demo validates, bad keys are named, topic filters cover a gateway's devices."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from firmware_sim.cli import app, parse_broker
from firmware_sim.config import Fleet, FleetError
from firmware_sim.faults import FaultConfig, FaultSpecError, parse_fault_spec

DEMO = Path(__file__).resolve().parents[2] / "firmware_sim" / "fleets" / "demo.toml"


def test_demo_fleet_loads_with_two_sites_and_every_kind() -> None:
    fleet = Fleet.load(DEMO)
    assert [s.id for s in fleet.config.sites] == ["dc-north", "dc-south"]
    assert fleet.gateway_ids == ["gw-north-1", "gw-south-1"]
    kinds = {d.kind for d in fleet.devices_of("gw-north-1")}
    assert kinds == {"cold_room", "humidity", "conveyor", "pump", "power_meter", "barcode_scanner", "rfid_portal"}
    assert fleet.config.time_scale == pytest.approx(86_400 / 120)
    assert fleet.config.faults.duplicates > 0


def test_topic_filters_name_exactly_the_gateways_devices() -> None:
    fleet = Fleet.load(DEMO)
    filters = fleet.topic_filters("gw-south-1")
    assert len(filters) == len(fleet.devices_of("gw-south-1"))
    assert "edgehouse/v1/dc-south/dc-south-cold-01/+" in filters
    assert not any("dc-north" in f for f in filters)
    with pytest.raises(KeyError):
        fleet.topic_filters("gw-nowhere")


def test_bad_keys_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'colour = "red"\n[[sites]]\nid = "s1"\n[[sites.gateways]]\nid = "g1"\n'
        '[[sites.gateways.devices]]\nkind = "cold_room"\nsetpont_c = 3\n',
        encoding="utf-8",
    )
    with pytest.raises(FleetError) as err:
        Fleet.load(bad)
    msg = str(err.value)
    assert "unknown key 'colour'" in msg
    assert "sites[0].gateways[0].devices[0] (cold_room): unknown key 'setpont_c'" in msg


def test_duplicate_device_ids_and_bad_values_are_refused() -> None:
    group = {"kind": "humidity", "id_prefix": "h"}
    with pytest.raises(FleetError, match="appears twice"):
        Fleet.from_dict({"sites": [{"id": "s", "gateways": [{"id": "g", "devices": [group, group]}]}]})
    with pytest.raises(FleetError, match="speed or day_seconds"):
        Fleet.from_dict({"speed": 10, "day_seconds": 10, "sites": [{"id": "s", "gateways": [{"id": "g"}]}]})
    with pytest.raises(FleetError, match="reads_per_tag"):
        Fleet.from_dict(
            {"sites": [{"id": "s", "gateways": [{"id": "g", "devices": [{"kind": "rfid_portal", "reads_per_tag": [3, 1]}]}]}]}
        )


def test_fault_spec_parsing() -> None:
    assert parse_fault_spec("duplicates=0.01,malformed=0.5") == {"duplicates": 0.01, "malformed": 0.5}
    cfg = FaultConfig(duplicates=0.2).with_overrides("none")
    assert not cfg.any
    with pytest.raises(FaultSpecError, match="unknown fault 'dupes'"):
        parse_fault_spec("dupes=0.1")
    with pytest.raises(FaultSpecError, match="less than or equal to 1"):
        parse_fault_spec("late=2")


def test_cli_validate_and_generate(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(DEMO)])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output
    out, truth = tmp_path / "m.jsonl", tmp_path / "t.jsonl"
    res = runner.invoke(app, ["generate", "-f", str(DEMO), "--hours", "1", "--out", str(out), "--truth", str(truth)])
    assert res.exit_code == 0, res.output
    assert out.read_text().count("\n") > 100
    assert '"type":"summary"' in truth.read_text().splitlines()[-1]
    assert parse_broker("mqtt://10.0.0.2:1884") == ("10.0.0.2", 1884)
    assert parse_broker("localhost") == ("localhost", 1883)


def test_boot_salt_changes_only_the_ids() -> None:
    import itertools
    import json

    from sim_fleets import mixed

    from firmware_sim.generator import SimStream

    def telemetry(fleet: Fleet) -> list[tuple[str, str, int, list[object]]]:
        out = []
        for e in itertools.islice(SimStream(fleet), 400):
            if e.kind == "telemetry" and not e.malformed:
                doc = json.loads(e.payload)
                out.append((e.device_id, e.boot_id, doc["seq"], doc["body"]["readings"]))
        return out

    plain = mixed(seed=5)
    salted = Fleet.from_dict({**plain.config.model_dump(mode="json"), "boot_salt": "warmup"})
    a, b = telemetry(plain), telemetry(salted)
    assert a == telemetry(mixed(seed=5))  # no salt: the seed alone, the same bytes as ever
    assert [(d, s, r) for d, _, s, r in a] == [(d, s, r) for d, _, s, r in b]  # same devices, physics, seqs
    assert {boot for _, boot, _, _ in a}.isdisjoint({boot for _, boot, _, _ in b})  # other boots
