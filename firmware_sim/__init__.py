"""Edgehouse device simulator: seeded warehouse device fleets, fault injection, ground truth.

Offline (no broker)::

    fleet = Fleet.load("firmware_sim/fleets/demo.toml")
    for topic, payload, truth_events in messages(fleet, sim_seconds=86_400):
        ...

Against a broker::

    runner = SimRunner(fleet, "127.0.0.1", 1883, "truth.jsonl", duration_s=60)
    runner.start(); summary = runner.join()

Imports only ``protocols`` and third-party libraries (enforced by import-linter).
"""

from firmware_sim.config import DeviceSpec, Fleet, FleetConfig, FleetError
from firmware_sim.emission import Emission
from firmware_sim.faults import FaultConfig, FaultSpecError, parse_fault_spec
from firmware_sim.generator import SimStream, messages, simulate
from firmware_sim.runner import RunOptions, RunStats, SimRunner
from firmware_sim.truth import Summary, TruthLedger, TruthWriter, read_truth, summarize

__all__ = [
    "DeviceSpec", "Emission", "FaultConfig", "FaultSpecError", "Fleet", "FleetConfig", "FleetError", "RunOptions",
    "RunStats", "SimRunner", "SimStream", "Summary", "TruthLedger", "TruthWriter", "messages", "parse_fault_spec",
    "read_truth", "simulate", "summarize",
]
