"""The Typer app the lead mounts as `edgehouse train`: commands exist and are documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from models.cli import app


def test_commands_and_options_are_listed() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "anomaly" in result.output and "demand" in result.output
    for command, option in (("anomaly", "--seed"), ("demand", "--holdout-rows")):
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0 and option in sub.output


def test_readme_documents_the_commands() -> None:
    readme = (Path(__file__).resolve().parents[2] / "models" / "README.md").read_text()
    for text in ("edgehouse train anomaly", "edgehouse train demand", "bench/nab.py", "bench/demand.py"):
        assert text in readme


def test_help_does_not_import_tensorflow() -> None:
    code = "import sys; from models.cli import app; assert 'tensorflow' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


def test_train_anomaly_trains_the_stream_and_the_device_model(tmp_path: Path) -> None:
    """A real (tiny) run of `edgehouse train anomaly`: both models exported; `--no-device` skips the device one."""
    import json

    from models.runtime import load_model

    runner = CliRunner()
    tiny = ["--seed", "3", "--epochs", "1", "--series", "4", "--length", "400"]
    both, stream_only = tmp_path / "both", tmp_path / "stream"
    result = runner.invoke(app, ["anomaly", "--out", str(both), *tiny, "--device-epochs", "1", "--devices", "4",
                                 "--device-version", "3"])
    assert result.exit_code == 0, result.output
    assert load_model(both / "anomaly.tflite").manifest.task == "anomaly"
    device = load_model(both / "device_anomaly.tflite").manifest
    assert device.task == "device_anomaly" and device.version == 3 and device.anomaly_defaults is not None
    assert json.loads((both / "device_anomaly.json").read_text())["sha256"] == device.sha256
    result = runner.invoke(app, ["anomaly", "--out", str(stream_only), *tiny, "--no-device"])
    assert result.exit_code == 0, result.output
    assert (stream_only / "anomaly.tflite").is_file() and not (stream_only / "device_anomaly.tflite").exists()
    assert "--no-device" in runner.invoke(app, ["anomaly", "--help"]).output
