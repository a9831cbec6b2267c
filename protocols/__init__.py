"""Edgehouse wire contracts: topics, device messages, gateway output, sync batches, model updates.

Pure data: this package imports nothing else of Edgehouse.
"""

from protocols.errors import DecodeError
from protocols.gateway import AlertPayload, ForecastPayload, GatewayCommand, GatewayStatusPayload
from protocols.messages import (
    METRIC_RANGES,
    Reading,
    ScanBody,
    ScanMessage,
    StatusBody,
    StatusMessage,
    TelemetryBody,
    TelemetryMessage,
    decode_device_message,
    encode,
)
from protocols.model_update import (
    ARTIFACT_PATH,
    DESIRED_PATH,
    MODEL_TASKS,
    REPORT_PATH,
    ArtifactRef,
    DesiredModel,
    DesiredModels,
    KeyRotation,
    ModelRelease,
    ModelReport,
    ModelStats,
    ModelTask,
    PublicKey,
    RejectCode,
    Signature,
    SignedKeyRotation,
    SignedRelease,
    TaskReport,
)
from protocols.sync import (
    AlertRecord,
    DeviceStatusRecord,
    ForecastRecord,
    RejectedRecord,
    ScanRecord,
    SyncAck,
    SyncBatch,
    TelemetryRecord,
    record_id,
)
from protocols.topics import (
    DeviceTopic,
    DeviceTopicKind,
    GatewayTopic,
    GatewayTopicKind,
    TopicError,
    device_filter,
    device_topic,
    gateway_topic,
    parse_topic,
)

__all__ = [
    "ARTIFACT_PATH", "DESIRED_PATH", "MODEL_TASKS", "REPORT_PATH", "ArtifactRef", "DesiredModel", "DesiredModels",
    "KeyRotation", "ModelRelease", "ModelReport", "ModelStats", "ModelTask", "PublicKey", "RejectCode", "Signature",
    "SignedKeyRotation", "SignedRelease", "TaskReport",
    "METRIC_RANGES", "AlertPayload", "AlertRecord", "DecodeError", "DeviceStatusRecord", "DeviceTopic",
    "DeviceTopicKind", "ForecastPayload", "ForecastRecord", "GatewayCommand", "GatewayStatusPayload",
    "GatewayTopic", "GatewayTopicKind", "Reading", "RejectedRecord", "ScanBody", "ScanMessage", "ScanRecord",
    "StatusBody", "StatusMessage", "SyncAck", "SyncBatch", "TelemetryBody", "TelemetryMessage",
    "TelemetryRecord", "TopicError", "decode_device_message", "device_filter", "device_topic", "encode",
    "gateway_topic", "parse_topic", "record_id",
]
