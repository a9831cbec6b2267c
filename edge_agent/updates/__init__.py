"""Safe model updates: signed releases from the cloud, verified, downloaded, swapped, reported.

``trust`` (keys + rotations) · ``verify`` (release checks -> RejectCode) · ``download`` (resumable,
ranged) · ``state`` (persisted install state) · ``slot`` (what the workers offer) · ``report``
(cloud report, status lines) · ``updater`` (the :class:`ModelUpdater` thread).
"""

from edge_agent.updates.slot import InstallMode, ModelInfo, ModelSlot, SlotStart
from edge_agent.updates.state import InstallState, StateFile, slot_start
from edge_agent.updates.stats import SlotStats, StatsCounter

__all__ = [
    "InstallMode",
    "InstallState",
    "ModelInfo",
    "ModelSlot",
    "SlotStart",
    "SlotStats",
    "StateFile",
    "StatsCounter",
    "slot_start",
]
