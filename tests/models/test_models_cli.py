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
