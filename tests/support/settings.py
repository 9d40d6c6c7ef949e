"""What every test shares: the databases to run on, the app's secret key."""

from __future__ import annotations

import os
from pathlib import Path

DATABASES = [name for name in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",")]


DATA_TABLES = [
    "sign_in_events",
    "newsletter_consents",
    "readers",
    "login_attempts",
    "outbox_messages",
    "editions",
    "suppressions",
    "articles",
    "rate_limits",
    "reader_sessions",
    "signing_keys",
    "article_changes",
    "api_keys",
    "webhook_events",
    "comments",
    "comment_reports",
]


SECRET = "test-secret-key-that-is-long-enough-0123456789"
# The repository: pyproject.toml, docs/, migrations/ and tests/ are under it.
REPOSITORY = Path(__file__).resolve().parents[2]
