"""Train the anomaly forecaster on synthetic sensor series, export int8, pick the alert threshold.

The network maps the sensor feature vector (models.features) to the next reading's change, as a
mean and a log-spread in std units (Gaussian negative log-likelihood). The shipped threshold is the
NAB-optimal one on *synthetic* labelled series, so it is fixed before any real data is seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.anomaly import AnomalyScorer, AnomalyScorerConfig
from models.features import SensorFeatureConfig, sensor_training_pairs
from models.manifest import AnomalyScorerDefaults
from models.nab_scoring import STANDARD, ScoredFile, score_corpus, windows_for_anomalies
from models.runtime import load_model
from models.synthetic import SyntheticSeries, sensor_corpus
from models.training.export import assert_builtin_int8, convert, write_model
from models.training.tfutil import import_tf, precision_policy

Progress = Callable[[str, float], None]


class SeriesLike(Protocol):
    """One reading series: timestamps (ms) and values, oldest first (synthetic or real)."""

    @property
    def ts_ms(self) -> np.ndarray: ...

    @property
    def values(self) -> np.ndarray: ...


class FitParams(BaseModel):
    """How the forecaster network is fitted (shared by the shipped training and cloud retraining)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: int = Field(default=32, ge=4)
    epochs: int = Field(default=6, ge=1)
    batch_size: int = Field(default=512, ge=8)
    learning_rate: float = Field(default=2e-3, gt=0)


class AnomalyTrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 7
    n_series: int = Field(default=240, ge=2)
    length: int = Field(default=3000, ge=200)
    val_series: int = Field(default=40, ge=1)
    threshold_series: int = Field(default=60, ge=1)
    hidden: int = Field(default=32, ge=4)
    epochs: int = Field(default=6, ge=1)
    batch_size: int = Field(default=512, ge=8)
    learning_rate: float = Field(default=2e-3, gt=0)
    max_train_rows: int = Field(default=400_000, ge=100)
    representative_rows: int = Field(default=1000, ge=10)
    version: int = Field(default=1, ge=1)
    features: SensorFeatureConfig = SensorFeatureConfig()


def series_pairs(series: Iterable[SeriesLike], cfg: SensorFeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of every series through the edge feature state machine, concatenated."""
    xs, ys = [np.zeros((0, cfg.n_inputs), np.float32)], [np.zeros((0,), np.float32)]
    for s in series:
        x, y = sensor_training_pairs(s.ts_ms, s.values, cfg)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def build_model(tf: Any, n_inputs: int, hidden: int, batch_size: int | None) -> Any:
    """The forecaster; its output layer stays float32 under a mixed-precision policy."""
    keras = tf.keras
    inp = keras.Input(shape=(n_inputs,), batch_size=batch_size, name="features")
    h = keras.layers.Dense(hidden, activation="relu", name="h1")(inp)
    h = keras.layers.Dense(hidden, activation="relu", name="h2")(h)
    out = keras.layers.Dense(2, name="mean_logspread", dtype="float32")(h)
    return keras.Model(inp, out, name="anomaly_forecaster")


def fit_forecaster(
    tf: Any,
    x: np.ndarray,
    y: np.ndarray,
    params: FitParams,
    progress: Progress,
    *,
    mixed_precision: bool = False,
    initial_weights: list[np.ndarray] | None = None,
    span: tuple[float, float] = (0.1, 0.7),
) -> Any:
    """Fit the forecaster on (x, y) (Gaussian NLL); epochs report progress inside ``span``.
    With ``mixed_precision`` the hidden layers compute in float16 (outputs and weights stay float32)."""
    with precision_policy(tf, "mixed_float16" if mixed_precision else "float32"):
        model = build_model(tf, x.shape[1], params.hidden, None)
        if initial_weights is not None:
            model.set_weights(initial_weights)
        model.compile(optimizer=tf.keras.optimizers.Adam(params.learning_rate), loss=_nll(tf))

        class _Cb(tf.keras.callbacks.Callback):  # type: ignore[misc,name-defined]
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                loss = (logs or {}).get("loss", float("nan"))
                lo, hi = span
                progress(
                    f"epoch {epoch + 1}/{params.epochs} loss {loss:.4f}",
                    lo + (hi - lo) * (epoch + 1) / params.epochs,
                )

        model.fit(
            x,
            y,
            epochs=params.epochs,
            batch_size=params.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=[_Cb()],
        )
    return model


def export_int8(tf: Any, model: Any, representative: np.ndarray, hidden: int) -> tuple[Any, bytes]:
    """A float32 batch-1 copy of ``model`` and its full-integer int8 conversion (builtins only)."""
    export_model = build_model(tf, representative.shape[1], hidden, 1)
    export_model.set_weights([np.asarray(w, np.float32) for w in model.get_weights()])
    int8_bytes = convert(tf, export_model, representative, "float32")
    assert_builtin_int8(int8_bytes)
    return export_model, int8_bytes


def representative_rows(x: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    return x[rng.choice(x.shape[0], min(rows, x.shape[0]), replace=False)]


def _nll(tf: Any) -> Callable[[Any, Any], Any]:
    def loss(y_true: Any, y_pred: Any) -> Any:
        mu = y_pred[:, 0]
        log_s = tf.clip_by_value(y_pred[:, 1], -4.0, 4.0)
        z = (tf.reshape(y_true, [-1]) - mu) * tf.exp(-log_s)
        return tf.reduce_mean(0.5 * z * z + log_s)

    return loss


def gauss_nll(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean Gaussian negative log-likelihood of y under (mean, log-spread) predictions."""
    log_s = np.clip(pred[:, 1], -4.0, 4.0)
    z = (y - pred[:, 0]) * np.exp(-log_s)
    return float(np.mean(0.5 * z * z + log_s) + 0.5 * math.log(2 * math.pi))


def tflite_predict(path: Path, x: np.ndarray) -> np.ndarray:
    model = load_model(path)
    return np.stack([model.predict_one(row) for row in x])


def _synthetic_nab(model: Any, series: list[SyntheticSeries], threshold: float) -> tuple[float, float]:
    files = []
    for i, s in enumerate(series):
        scorer = AnomalyScorer(model, AnomalyScorerConfig(threshold=threshold))
        scores = np.array(
            [scorer.score("s", int(t), float(v)).score for t, v in zip(s.ts_ms, s.values, strict=True)]
        )
        anomalies = [s.anomaly_start] if s.anomaly_start is not None else []
        files.append(ScoredFile(f"synthetic_{i}", scores, windows_for_anomalies(len(scores), anomalies)))
    result = score_corpus(files, STANDARD)
    return min(result.threshold, 1.0), result.score


def pick_threshold(model_path: Path, series: list[SyntheticSeries], passes: int = 3) -> tuple[float, float]:
    """NAB-optimal (standard profile) threshold of the int8 scorer on labelled synthetic series.
    The scorer's post-alert damping depends on its threshold, so iterate to a fixed point: score
    without damping, then with damping at the last optimum, until the optimum stops moving."""
    model = load_model(model_path)
    threshold, score = _synthetic_nab(model, series, 1.0)
    for _ in range(passes - 1):
        new_threshold, score = _synthetic_nab(model, series, threshold)
        if abs(new_threshold - threshold) < 1e-3:
            break
        threshold = new_threshold
    return threshold, score


def train_anomaly(cfg: AnomalyTrainConfig, out_dir: Path, progress: Progress) -> dict[str, float]:
    tf, device = import_tf(cfg.seed)
    fc = cfg.features
    progress(f"generating {cfg.n_series} synthetic series on {device}", 0.0)
    train = sensor_corpus(cfg.seed, cfg.n_series, cfg.length)
    val = sensor_corpus(cfg.seed + 1, cfg.val_series, cfg.length)
    x, y = series_pairs(train, fc)
    rng = np.random.default_rng(cfg.seed)
    if x.shape[0] > cfg.max_train_rows:
        keep = rng.choice(x.shape[0], cfg.max_train_rows, replace=False)
        x, y = x[keep], y[keep]
    xv, yv = series_pairs(val, fc)
    progress(f"training on {x.shape[0]} windows", 0.1)

    params = FitParams(
        hidden=cfg.hidden, epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate
    )
    model = fit_forecaster(tf, x, y, params, progress, mixed_precision=device.startswith("GPU"))

    rep = representative_rows(x, cfg.representative_rows, rng)
    progress("converting to int8 and float32 tflite", 0.75)
    export_model, int8_bytes = export_int8(tf, model, rep, cfg.hidden)
    float_bytes = convert(tf, export_model, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_model.save(out_dir / "anomaly.keras")

    sub = xv[: min(20_000, xv.shape[0])]
    ysub = yv[: sub.shape[0]]
    pred_keras = model.predict(sub[:5000], batch_size=4096, verbose=0)
    fields: dict[str, Any] = {
        "task": "anomaly",
        "version": cfg.version,
        "training_data": (
            f"{cfg.n_series} synthetic sensor series x {cfg.length} readings (models.synthetic, seed {cfg.seed});"
            " no NAB data; threshold from synthetic labelled series"
        ),
        "seed": cfg.seed,
        "sensor_features": fc,
        "recreate_command": f"edgehouse train anomaly --seed {cfg.seed} --out models/default",
    }
    tmp_metrics = {"val_nll_keras": gauss_nll(pred_keras, ysub[:5000])}
    write_model(
        out_dir,
        "anomaly_float",
        float_bytes,
        {**fields, "name": "anomaly_float", "quantization": "float32", "metrics": tmp_metrics},
    )
    write_model(
        out_dir,
        "anomaly",
        int8_bytes,
        {**fields, "name": "anomaly", "quantization": "int8-full-integer", "metrics": tmp_metrics},
    )
    pred_f = tflite_predict(out_dir / "anomaly_float.tflite", sub[:5000])
    pred_q = tflite_predict(out_dir / "anomaly.tflite", sub[:5000])
    progress("choosing the alert threshold on synthetic labelled series", 0.85)
    thr_series = sensor_corpus(cfg.seed + 2, cfg.threshold_series, cfg.length, with_anomaly=True)
    threshold, synth_score = pick_threshold(out_dir / "anomaly.tflite", thr_series)
    metrics = {
        "val_nll_keras": tmp_metrics["val_nll_keras"],
        "val_nll_float32_tflite": gauss_nll(pred_f, ysub[:5000]),
        "val_nll_int8": gauss_nll(pred_q, ysub[:5000]),
        "int8_vs_float_mean_abs_diff_mu": float(np.mean(np.abs(pred_q[:, 0] - pred_f[:, 0]))),
        "int8_vs_float_mean_abs_diff_logspread": float(np.mean(np.abs(pred_q[:, 1] - pred_f[:, 1]))),
        "synthetic_nab_standard_int8": synth_score,
        "train_rows": float(x.shape[0]),
    }
    defaults = AnomalyScorerDefaults(
        threshold=threshold,
        threshold_source=f"NAB-optimal (standard) on {cfg.threshold_series} synthetic labelled series, seed {cfg.seed + 2}",
    )
    for name, q, data in (
        ("anomaly", "int8-full-integer", int8_bytes),
        ("anomaly_float", "float32", float_bytes),
    ):
        write_model(
            out_dir,
            name,
            data,
            {**fields, "name": name, "quantization": q, "metrics": metrics, "anomaly_defaults": defaults},
        )
    progress("done", 1.0)
    return {**metrics, "threshold": threshold}
