"""Per-call latency: the shipped int8 models in LiteRT (as the gateway calls them, float in/out
through models.runtime) vs the same float model in Keras through tf.function.

    python bench/inference.py [--calls 20000] [--repeats 5]

Also times an int8-I/O conversion of the anomaly model with Python-side quantize/dequantize, the
alternative the shipped float-I/O graph was chosen over. Needs TensorFlow for the Keras figure.
Last line: inference: anomaly_int8_us=<x> demand_int8_us=<x> keras_float_us=<x> speedup=<r>
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.runtime import LoadedModel, default_model_path, load_model


def per_call_us(fn: Callable[[], Any], calls: int, repeats: int) -> float:
    for _ in range(min(calls, 500)):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def _input(model: LoadedModel, seed: int) -> np.ndarray:
    shape = model.manifest.inputs[0].shape
    return np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)


def _int8_io_variant(tf: Any, keras_model: Any, n_inputs: int, out: Path) -> LoadedModel:
    """The anomaly network converted with int8 input/output tensors (Python-side quantisation)."""
    from models.training.export import convert, write_model

    rep = np.random.default_rng(0).normal(0, 1.5, (500, n_inputs)).astype(np.float32)
    data = convert(tf, keras_model, rep, "int8")
    base = load_model(default_model_path("anomaly")).manifest
    fields = base.model_dump(
        exclude={"created_utc", "inputs", "outputs", "sha256", "size_bytes", "io_dtype", "name"}
    )
    write_model(out, "anomaly_int8io", data, {**fields, "name": "anomaly_int8io"})
    return load_model(out / "anomaly_int8io.tflite")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    anomaly = load_model(default_model_path("anomaly"))
    demand = load_model(default_model_path("demand"))
    xa, xd = _input(anomaly, 1), _input(demand, 2)
    anomaly_us = per_call_us(lambda: anomaly.predict_one(xa), args.calls, args.repeats)
    demand_us = per_call_us(lambda: demand.predict_one(xd), args.calls, args.repeats)
    print(f"LiteRT int8 anomaly (float I/O, quantize inside the graph): {anomaly_us:8.2f} us/call")
    print(f"LiteRT int8 demand  (float I/O, quantize inside the graph): {demand_us:8.2f} us/call")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    keras_model = tf.keras.models.load_model(
        default_model_path("anomaly").with_suffix(".keras"), compile=False
    )
    call = tf.function(lambda t: keras_model(t, training=False))
    xt = tf.constant(xa.reshape(1, -1))
    keras_us = per_call_us(lambda: call(xt), max(args.calls // 20, 200), args.repeats)
    print(f"Keras float32 anomaly via tf.function:                      {keras_us:8.2f} us/call")

    with tempfile.TemporaryDirectory(prefix="edgehouse-bench-") as tmp:
        int8io = _int8_io_variant(tf, keras_model, xa.size, Path(tmp))
        int8io_us = per_call_us(lambda: int8io.predict_one(xa), args.calls, args.repeats)
    print(f"LiteRT int8 anomaly (int8 I/O, Python-side quantize):       {int8io_us:8.2f} us/call")
    print(
        f"inference: anomaly_int8_us={anomaly_us:.2f} demand_int8_us={demand_us:.2f} "
        f"keras_float_us={keras_us:.2f} speedup={keras_us / anomaly_us:.1f}"
    )


if __name__ == "__main__":
    main()
