"""The shape of the code, checked: no module of the packages over 400 lines, and every package README's module
table names each module of its package (and only modules that exist), so a newcomer can place every file.

A table row may name a folder (``training/``): it then stands for every module under that folder.
``edge_agent``'s table and its two walks are checked in more detail by ``tests/edge_agent/test_agent_docs.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_agent", "cloud", "models", "protocols", "firmware_sim", "edgehouse_cli")
MAX_LINES = 400
_TICKED = re.compile(r"`([A-Za-z_][\w/]*(?:\.py|/))`")


def _modules(package: str) -> set[str]:
    """Every module of ``package``, relative to it; an ``__init__.py`` only when it defines something."""
    root = REPO / package
    out = set()
    for path in root.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in tree.body):
                continue
        out.add(path.relative_to(root).as_posix())
    return out


def _table(package: str) -> set[str]:
    """What the first column of the README's ``## Modules`` table names (files and folders)."""
    readme = (REPO / package / "README.md").read_text(encoding="utf-8")
    assert "\n## Modules" in readme, f"{package}/README.md has no '## Modules' section"
    section = readme.split("\n## Modules", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            named.update(_TICKED.findall(first))
    return named


def _covered(module: str, named: set[str]) -> bool:
    return module in named or any(n.endswith("/") and module.startswith(n) for n in named)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_400_lines(package: str) -> None:
    long = {m: n for m in sorted(_modules(package))
            if (n := len((REPO / package / m).read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules of {package} (lines): {long}"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_readme_names_every_module_of_the_package(package: str) -> None:
    named = _table(package)
    missing = sorted(m for m in _modules(package) if not _covered(m, named))
    assert missing == [], f"{package}/README.md's module table does not name: {missing}"
    ghosts = sorted(n for n in named if not (REPO / package / n).exists())
    assert ghosts == [], f"{package}/README.md's module table names what does not exist: {ghosts}"
