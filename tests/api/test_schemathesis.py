"""Schemathesis against a live server: every answer of /api/v1 matches the OpenAPI
document, and none is a 5xx, for inputs generated from the document (valid and not).

The server is the real one (gunicorn, several processes and threads) on SQLite and on
PostgreSQL, and schemathesis runs as a publisher would run it, from its command line.
Requests carry the service's own Origin, as its pages' would: without it every change
would be refused at the door and the run would test nothing else.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.scripted_provider import ScriptedProvider
from support.settings import SECRET

from auth_service import create_app
from auth_service.articles.store import import_articles
from auth_service.cli import demo_articles
from auth_service.extensions import db

CLI = Path(sys.executable).parent / "schemathesis"
CHECKS = "not_a_server_error,response_schema_conformance"


@pytest.fixture
def provider(request):
    """A sign-in provider named ``idp`` in the live server's settings (listed before
    ``live_server``), so that the providers' answers are checked with one in them."""
    scripted = ScriptedProvider()
    providers = {"idp": scripted.settings(icon="https://cdn.example/idp.svg")}
    request.node.add_marker(pytest.mark.live_settings(OIDC_PROVIDERS=json.dumps(providers)))
    yield scripted
    scripted.stop()


def test_every_answer_matches_the_document_and_none_is_a_server_error(
    provider, live_server, database_url, tmp_path
):
    _publish_demo_articles(database_url)
    run = subprocess.run(
        [
            str(CLI),
            "run",
            f"{live_server.url}/api/v1/openapi.json",
            "--url",
            live_server.url,
            "--checks",
            CHECKS,
            "--header",
            f"Origin: {live_server.url}",
            "--max-examples",
            "40",
            "--seed",
            "20261201",
            "--generation-database",
            "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    # It ran: every operation, and many requests (a run refused at the door proves nothing).
    generated = [int(n) for n in re.findall(r"(\d+) generated", report)]
    assert generated and generated[0] >= 100, report[-3000:]
    assert " 500 " not in live_server.log_text()


def _publish_demo_articles(database_url: str) -> None:
    """The demo articles in the live server's database: the document's example slug
    names one, so that the article route is reached with a real article too."""
    app = create_app({"SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        import_articles(demo_articles())
        db.session.commit()
        db.engine.dispose()
