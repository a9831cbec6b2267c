"""edge_agent/README.md against the code: the module table names every module of the package and
only modules that exist; the two walks name existing files, each once, and the methods they name."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_package_layout import _modules, _table

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "edge_agent"
README = (PACKAGE / "README.md").read_text(encoding="utf-8")
_TICKED_PY = re.compile(r"`([A-Za-z_][\w/]*\.py)`")
_WALK_LINE = re.compile(r"^\s*\d+ ((?:edge_agent|protocols|models|cloud)/[\w/]+\.py)\b")
_ANY_PY = re.compile(r"\b[\w/]+\.py\b")
_METHOD = re.compile(r"\b([A-Z]\w+)\.(_?[a-z]\w*)\b")


def _walk(heading: str) -> list[tuple[str, str]]:
    """(file, its description) per numbered line of the fenced block under ``heading``."""
    block = README.split(heading, 1)[1].split("```", 2)[1]
    steps: list[tuple[str, str]] = []
    for line in block.splitlines():
        m = _WALK_LINE.match(line)
        if m:
            steps.append((m.group(1), line[m.end() :]))
        elif steps and line.strip():
            steps[-1] = (steps[-1][0], steps[-1][1] + " " + line.strip())
    return steps


def test_the_module_table_names_every_module_and_only_modules() -> None:
    table = _table("edge_agent")
    modules = _modules("edge_agent")
    assert modules - table == set(), "modules missing from the README's module table"
    assert table - modules == set(), "the README's module table names modules that do not exist"


def test_every_module_the_readme_names_exists() -> None:
    for name in _TICKED_PY.findall(README):
        assert (PACKAGE / name).is_file() or (REPO / name).is_file(), name


def _check_walk(heading: str, most: int) -> None:
    steps = _walk(heading)
    files = [f for f, _ in steps]
    assert 3 <= len(files) <= most, files
    block = README.split(heading, 1)[1].split("```", 2)[1]
    named = _ANY_PY.findall(block)
    assert sorted(named) == sorted(files) and len(set(files)) == len(files), "each file once, nothing else"
    for path, text in steps:
        source = (REPO / path).read_text(encoding="utf-8")
        for cls, method in _METHOD.findall(text):
            assert re.search(rf"^class {cls}\b", source, re.MULTILINE), f"{path}: no class {cls}"
            assert re.search(rf"^\s+def {method}\(", source, re.MULTILINE), f"{path}: no {cls}.{method}"


def test_the_telemetry_walk_names_at_most_15_files_each_once_and_they_match_the_code() -> None:
    _check_walk("## One telemetry message, broker to cloud", 15)


def test_the_model_update_walk_names_existing_files_each_once_and_they_match_the_code() -> None:
    _check_walk("## One model update, desired state to swap", 15)
