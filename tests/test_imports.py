"""Imports run one way: commands -> pipelines -> components -> poisonlab, with no circles."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

COMMANDS = {"submit", "compile"}


def _imported(path) -> set[str]:
    """Every module a file imports, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_below_the_commands_imports_them():
    for folder in ("pipelines", "components", "poisonlab"):
        for path in (ROOT / folder).rglob("*.py"):
            upward = {name.split(".")[0] for name in _imported(path)} & COMMANDS
            assert not upward, f"{path.relative_to(ROOT)} imports {upward}"


def test_poisonlab_imports_neither_pipelines_nor_components():
    for path in (ROOT / "poisonlab").rglob("*.py"):
        upward = {name.split(".")[0] for name in _imported(path)} & {"pipelines", "components"}
        assert not upward, f"{path.relative_to(ROOT)} imports {upward}"


def test_gcs_reads_results_without_the_report():
    # data -> gcs -> report -> experiment -> data was a circle.
    assert not {n for n in _imported(ROOT / "poisonlab" / "gcs.py") if n.endswith(".report")}
    code = "import sys, poisonlab.gcs; print('poisonlab.report' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
