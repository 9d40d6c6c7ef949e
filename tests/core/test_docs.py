"""The threat model points at tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support.settings import REPOSITORY

ROOT = REPOSITORY
REFERENCE = re.compile(r"`((?:[a-z]+/)?test_[a-z_]+\.py)::(test_[a-z0-9_]+)`")


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


# Where a commit may be: the views and the CLI, and the exceptions docs/architecture.md
# names under "Transactions", each for its reason.
COMMITTING = {
    "auth_service/cli.py",
    "auth_service/auth/views.py",
    "auth_service/account/views.py",
    "auth_service/newsletter/views.py",
    "auth_service/comments/views.py",
    "auth_service/api/views.py",
    "auth_service/api/publisher.py",  # the publisher's article routes
    "auth_service/publisher/api_keys_cli.py",  # a command
    "auth_service/auth/signin.py",  # consume_code: a wrong code's spent try
    "auth_service/mail/worker.py",  # claims, marks, failures, releases
    "auth_service/publisher/webhooks.py",  # the worker's claims and marks of events
    "auth_service/newsletter/editions.py",  # each edition and batch of copies
    "auth_service/articles/store.py",  # the import command's body
    "auth_service/newsletter/subscribers.py",  # the import command's body
    "auth_service/entitlement/keys_cli.py",  # a command
    "auth_service/entitlement/keys.py",  # a deployment's first signing key
}


def test_only_views_commands_and_the_named_exceptions_commit():
    """The transaction rule (docs/architecture.md): domain code writes in the caller's
    transaction; a new commit elsewhere must be named there, and here, first."""
    committing = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "auth_service").rglob("*.py")
        if "commit()" in path.read_text(encoding="utf-8")
    }
    assert committing == COMMITTING
    described = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for module in ("auth/signin", "mail/worker", "newsletter/editions", "entitlement/keys"):
        assert f"`{module}" in described
