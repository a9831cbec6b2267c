"""Safe model updates: signed releases from the cloud, verified, downloaded, swapped, reported.

``trust`` (keys + rotations) · ``verify`` (release checks -> RejectCode) · ``download`` (resumable,
ranged) · ``state`` (persisted install state) · ``slot`` (what the workers offer) · ``report``
(cloud report, status lines) · ``updater`` (the :class:`ModelUpdater` thread).
"""

from edge_agent.updates.slot import InstallMode, ModelInfo, ModelSlot, SlotStats, StatsCounter
from edge_agent.updates.state import InstallState, StateFile, saved_stats, startup_models

__all__ = [
    "InstallMode",
    "InstallState",
    "ModelInfo",
    "ModelSlot",
    "SlotStats",
    "StateFile",
    "StatsCounter",
    "saved_stats",
    "startup_models",
]
