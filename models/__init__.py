"""Gateway models: shared features, int8 LiteRT scorers, training/export (TensorFlow, lazy) and evaluation.

Edge API (no TensorFlow): `models.runtime.load_model`, `models.anomaly.AnomalyScorer`,
`models.demand.DemandForecaster`. See models/README.md.
"""
