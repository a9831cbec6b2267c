"""Anomaly scoring of committed telemetry: ``worker`` (the :class:`InferenceWorker` thread and
model slot), ``hysteresis`` (per-stream raise / clear / cool-down, alert ids), ``replay``
(warm-ups on stored rows)."""
