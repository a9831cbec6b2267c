"""Loading the shipped .tflite files through LiteRT, manifest checks, (de)quantisation, no TF."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.manifest import QuantParams, read_manifest
from models.runtime import ModelLoadError, default_model_path, dequantize, load_model, quantize


@pytest.mark.parametrize("task", ["anomaly", "demand"])
def test_shipped_models_load_and_match_their_manifest(task: str) -> None:
    model = load_model(default_model_path(task))
    man = model.manifest
    assert man.task == task
    assert man.quantization == "int8-full-integer"
    assert man.batch_size == 1 and all(spec.shape[0] == 1 for spec in man.inputs + man.outputs)
    # float I/O around an int8 graph: the boundary ops' int8 params are recorded
    assert man.inputs[0].inner_quantization is not None
    assert man.outputs[0].inner_quantization is not None
    assert "int8_vs_float" in " ".join(man.metrics) or "val_int8_vs_float_rel" in man.metrics
    x = np.zeros(man.inputs[0].shape, np.float32)
    y = model.predict_one(x)
    assert y.shape == (int(np.prod(man.outputs[0].shape)),)
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("task", ["anomaly", "demand"])
def test_predict_one_fast_path_answers_as_the_general_path(task: str) -> None:
    """predict_one calls the wrapped interpreter directly; predict goes through LiteRT's Python API."""
    model = load_model(default_model_path(task))
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.normal(0, 3, model.manifest.inputs[0].shape).astype(np.float32)
        fast = model.predict_one(x.reshape(-1))
        general = model.predict(x)[0].reshape(-1)
        assert np.array_equal(fast, general)
        fast[:] = 0.0  # the answer is the caller's copy, not a view of the interpreter's buffer
        assert np.array_equal(model.predict(x)[0].reshape(-1), general)


def test_float_twin_ships_too() -> None:
    for task in ("anomaly", "demand"):
        twin = load_model(default_model_path(task, "_float"))
        assert twin.manifest.quantization == "float32"


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    src = default_model_path("anomaly")
    dst = tmp_path / "anomaly.tflite"
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), tmp_path / "anomaly.json")
    load_model(dst)
    data = bytearray(dst.read_bytes())
    data[-1] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        load_model(dst)


def test_missing_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope.tflite")
    lone = tmp_path / "lone.tflite"
    shutil.copy(default_model_path("anomaly"), lone)
    with pytest.raises(ModelLoadError, match="manifest"):
        load_model(lone)
    (tmp_path / "lone.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="invalid manifest"):
        load_model(lone)


def test_quantize_roundtrip() -> None:
    q = QuantParams(scale=0.05, zero_point=-3)
    x = np.array([-6.0, -0.26, 0.0, 0.4, 6.5, 100.0], np.float32)
    back = dequantize(quantize(x, q), q)
    inside = np.abs(x) < 6.0
    np.testing.assert_allclose(back[inside], x[inside], atol=q.scale / 2 + 1e-6)
    assert back[-1] == pytest.approx((127 + 3) * 0.05)  # saturates at int8 max


def test_manifest_roundtrip() -> None:
    man = read_manifest(default_model_path("demand").with_suffix(".json"))
    assert man.training_window is not None
    assert man.quantiles == (0.5, 0.9)
    assert man.recreate_command.startswith("edgehouse train demand")


def test_edge_side_never_imports_tensorflow() -> None:
    code = (
        "import sys, datetime\n"
        "from models.anomaly import AnomalyScorer\n"
        "from models.demand import DemandForecaster\n"
        "import models.features, models.runtime, models.nab_scoring, models.cli\n"
        "s = AnomalyScorer.default()\n"
        "[s.score('k', i * 60000, float(i % 7)) for i in range(50)]\n"
        "DemandForecaster.default().forecast([1.0] * 60, datetime.date(2024, 1, 1))\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'keras' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
