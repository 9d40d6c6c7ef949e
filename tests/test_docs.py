"""The threat model points at tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(test_[a-z_]+\.py)::(test_[a-z0-9_]+)`")


def _tests_in(path: Path) -> set[str]:
    """Names of the test functions defined in a test module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_test_named_in_the_threat_model_exists():
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    references = REFERENCE.findall(text)
    assert len(references) > 30
    missing = [
        f"{module}::{name}"
        for module, name in references
        if not (ROOT / "tests" / module).exists() or name not in _tests_in(ROOT / "tests" / module)
    ]
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
