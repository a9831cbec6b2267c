"""Load and run `.tflite` models on the gateway (LiteRT, falling back to tflite_runtime).

The only place that imports an interpreter. Never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.manifest import (  # ModelLoadError, default_model_path: re-exported
    DEFAULT_DIR,
    ModelLoadError,
    ModelManifest,
    QuantParams,
    TensorSpec,
    default_model_path,
    file_digest,
    manifest_path_for,
    read_manifest,
)

__all__ = [
    "DEFAULT_DIR",
    "LoadedModel",
    "ModelLoadError",
    "default_model_path",
    "dequantize",
    "load_model",
    "quantize",
]


def _interpreter_factory() -> Callable[..., Any]:
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    except ImportError as exc:
        raise ModelLoadError(
            "no TFLite interpreter: install ai-edge-litert (pip install 'edgehouse[edge]')"
        ) from exc


def quantize(x: np.ndarray, q: QuantParams, dtype: type[np.integer] = np.int8) -> np.ndarray:
    info = np.iinfo(dtype)
    # np.clip's Python wrapper costs more than the two ufuncs it amounts to (same result).
    y = np.asarray(np.round(x / q.scale) + q.zero_point)  # an array even for a 0-d input
    return np.minimum(np.maximum(y, info.min, out=y), info.max, out=y).astype(dtype)


def dequantize(x: np.ndarray, q: QuantParams) -> np.ndarray:
    return (x.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)


def _np_dtype(name: str) -> type[np.generic]:
    return {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32}[
        name
    ]


class LoadedModel:
    """A verified model: `predict(x)` takes and returns float32 arrays whatever the tensor dtypes."""

    def __init__(self, path: Path, manifest: ModelManifest, interpreter: Any) -> None:
        self.path = path
        self.manifest = manifest
        self._interp = interpreter
        ins = interpreter.get_input_details()
        outs = interpreter.get_output_details()
        if len(ins) != len(manifest.inputs) or len(outs) != len(manifest.outputs):
            raise ModelLoadError(f"{path}: tensor count differs from its manifest")
        for detail, spec in zip(ins + outs, manifest.inputs + manifest.outputs, strict=True):
            if tuple(int(d) for d in detail["shape"]) != spec.shape or np.dtype(detail["dtype"]) != np.dtype(
                _np_dtype(spec.dtype)
            ):
                raise ModelLoadError(f"{path}: tensor {spec.name} differs from its manifest")
        self._in_idx = [int(d["index"]) for d in ins]
        self._out_idx = [int(d["index"]) for d in outs]
        self._in_specs = manifest.inputs
        self._out_specs = manifest.outputs
        #: predict_one without the general path's per-call checks: one float32 input and output.
        self._float_one = (
            len(ins) == 1 and len(outs) == 1
            and manifest.inputs[0].dtype == "float32" and manifest.outputs[0].dtype == "float32"
        )
        self._in_shape = manifest.inputs[0].shape if manifest.inputs else ()
        # The wrapped C++ interpreter's own calls, where the runtime has them (ai_edge_litert and
        # tflite_runtime both do): the Python wrappers add frames and a check that no numpy view
        # of an internal buffer is alive, and this class never makes one (no ``tensor()`` call).
        # Looked up on every call: a reference kept here would itself fail that check in invoke().
        inner = getattr(interpreter, "_interpreter", None)
        self._direct = all(callable(getattr(inner, n, None)) for n in ("SetTensor", "Invoke", "GetTensor"))

    def _prepare(self, x: np.ndarray, spec: TensorSpec) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(spec.shape)
        if spec.dtype == "float32":
            return x
        if spec.quantization is None:
            raise ModelLoadError(f"input {spec.name} is {spec.dtype} without quantization params")
        return quantize(x, spec.quantization, _np_dtype(spec.dtype))  # type: ignore[arg-type]

    def _finish(self, y: np.ndarray, spec: TensorSpec) -> np.ndarray:
        if spec.dtype == "float32":
            return y
        if spec.quantization is None:
            raise ModelLoadError(f"output {spec.name} is {spec.dtype} without quantization params")
        return dequantize(y, spec.quantization)

    def predict(self, *inputs: np.ndarray) -> list[np.ndarray]:
        if len(inputs) != len(self._in_idx):
            raise ValueError(f"expected {len(self._in_idx)} inputs, got {len(inputs)}")
        interp = self._interp
        for idx, spec, x in zip(self._in_idx, self._in_specs, inputs, strict=True):
            interp.set_tensor(idx, self._prepare(x, spec))
        interp.invoke()
        return [
            self._finish(interp.get_tensor(idx), spec)
            for idx, spec in zip(self._out_idx, self._out_specs, strict=True)
        ]

    def predict_one(self, x: np.ndarray) -> np.ndarray:
        """Single input, single output, batch 1: returns the output row."""
        if self._float_one:
            x = np.asarray(x, dtype=np.float32).reshape(self._in_shape)
            if self._direct:
                inner = self._interp._interpreter
                inner.SetTensor(self._in_idx[0], x)
                inner.Invoke()
                return inner.GetTensor(self._out_idx[0]).reshape(-1)  # type: ignore[no-any-return]
            interp = self._interp
            interp.set_tensor(self._in_idx[0], x)
            interp.invoke()
            return interp.get_tensor(self._out_idx[0]).reshape(-1)  # type: ignore[no-any-return]
        return self.predict(x)[0].reshape(-1)


def load_model(path: str | Path, num_threads: int = 1) -> LoadedModel:
    """Load `<name>.tflite` and its `<name>.json` manifest; verify size and sha256."""
    model_path = Path(path)
    if not model_path.is_file():
        raise ModelLoadError(f"model file not found: {model_path}")
    man_path = manifest_path_for(model_path)
    if not man_path.is_file():
        raise ModelLoadError(f"manifest not found next to the model: {man_path}")
    try:
        manifest = read_manifest(man_path)
    except ValueError as exc:
        raise ModelLoadError(f"invalid manifest {man_path}: {exc}") from exc
    digest, size = file_digest(model_path)
    if size != manifest.size_bytes or digest != manifest.sha256:
        raise ModelLoadError(f"{model_path}: sha256/size do not match its manifest (tampered or stale)")
    factory = _interpreter_factory()
    try:
        interp = factory(model_path=str(model_path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{model_path}: interpreter refused the model: {exc}") from exc
    return LoadedModel(model_path, manifest, interp)
