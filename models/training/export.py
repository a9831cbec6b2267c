"""Keras -> full-integer int8 `.tflite` (+ float32 twin) and its manifest. Needs TensorFlow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.manifest import (
    DType,
    ModelManifest,
    QuantParams,
    TensorSpec,
    file_digest,
    manifest_path_for,
    write_manifest,
)

IoType = Literal["float32", "int8"]


def convert(tf: Any, model: Any, representative: np.ndarray | None, io_type: IoType = "float32") -> bytes:
    """Convert a batch-1 Keras model. With `representative`, full-integer int8 (builtins only,
    no Flex ops); `io_type` says whether the graph's own input/output stay float32 (QUANTIZE and
    DEQUANTIZE inside the graph) or are int8 tensors quantised on the Python side."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is None:
        return bytes(converter.convert())

    def gen() -> Iterator[list[np.ndarray]]:
        for row in representative:
            yield [row.reshape(1, -1).astype(np.float32)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_type == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def _qp(detail: dict[str, Any]) -> QuantParams | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    return QuantParams(scale=float(scale), zero_point=int(zero)) if scale else None


def _inspector(tflite_bytes: bytes) -> Any:
    """An interpreter without the XNNPACK delegate, so every op and tensor stays visible."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(
        model_content=tflite_bytes,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    return interp


def tensor_specs(tflite_bytes: bytes) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Read the I/O tensors; for float I/O also find the int8 params of the boundary (de)quantize ops."""
    interp = _inspector(tflite_bytes)
    details = interp.get_tensor_details()

    def inner(index: int, is_input: bool) -> QuantParams | None:
        for op in interp._get_ops_details():
            if is_input and op["op_name"] == "QUANTIZE" and index in op["inputs"]:
                return _qp(details_by_index[int(op["outputs"][0])])
            if not is_input and op["op_name"] == "DEQUANTIZE" and index in op["outputs"]:
                return _qp(details_by_index[int(op["inputs"][0])])
        return None

    details_by_index = {int(d["index"]): d for d in details}

    def spec(d: dict[str, Any], is_input: bool) -> TensorSpec:
        dtype: DType = np.dtype(d["dtype"]).name  # type: ignore[assignment]
        return TensorSpec(
            name=str(d["name"]),
            shape=tuple(int(s) for s in d["shape"]),
            dtype=dtype,
            quantization=_qp(d) if dtype != "float32" else None,
            inner_quantization=inner(int(d["index"]), is_input) if dtype == "float32" else None,
        )

    return (
        tuple(spec(d, True) for d in interp.get_input_details()),
        tuple(spec(d, False) for d in interp.get_output_details()),
    )


def assert_builtin_int8(tflite_bytes: bytes) -> None:
    """Refuse Flex/custom ops and float compute ops in an int8 model."""
    interp = _inspector(tflite_bytes)
    details = {int(d["index"]): d for d in interp.get_tensor_details()}
    for op in interp._get_ops_details():
        name = str(op["op_name"])
        if name.startswith("Flex") or name == "CUSTOM":
            raise RuntimeError(f"non-builtin op {name} in the int8 model")
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        for idx in list(op["inputs"]) + list(op["outputs"]):
            if idx >= 0 and np.dtype(details[int(idx)]["dtype"]) == np.float32:
                raise RuntimeError(f"op {name} computes in float32")


def write_model(
    out_dir: Path,
    name: str,
    tflite_bytes: bytes,
    manifest_fields: dict[str, Any],
) -> ModelManifest:
    """Write `<name>.tflite` and `<name>.json`; the manifest's digest, size and specs come from the file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.tflite"
    path.write_bytes(tflite_bytes)
    digest, size = file_digest(path)
    inputs, outputs = tensor_specs(tflite_bytes)
    manifest = ModelManifest(
        created_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        inputs=inputs,
        outputs=outputs,
        sha256=digest,
        size_bytes=size,
        io_dtype=inputs[0].dtype,
        **manifest_fields,
    )
    write_manifest(manifest, manifest_path_for(path))
    return manifest
