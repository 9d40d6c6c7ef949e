"""Fixtures: the app on SQLite and on a real PostgreSQL, clients, a real SMTP server.

Every test that takes ``app`` runs twice, once per database. PostgreSQL is a private
server started for the session from Debian's binaries (``tests/run.sh`` installs them);
set ``TEST_DATABASES=sqlite`` to run only the SQLite half while working locally.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from flask import has_app_context
from flask.testing import FlaskClient
from support.articles import ARTICLES
from support.live import live_server  # noqa: F401 (a fixture, registered by importing it)
from support.postgres import empty, migrate, start_postgres
from support.settings import DATABASES, SECRET
from support.smtp import SmtpServer
from support.web import Visitor

from auth_service import create_app
from auth_service.articles.store import import_articles
from auth_service.extensions import db


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No test sees the settings of the shell that runs the suite, and none writes an
    ``instance/`` folder into the repository: each app's instance folder is the test's."""
    for key in list(os.environ):
        if key.startswith("AUTH_SERVICE_") or key in ("PUBLIC_URL", "FLASK_DEBUG", "FLASK_APP"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path / "instance"))


# --- PostgreSQL ------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server of our own on 127.0.0.1, with a migrated database."""
    server = start_postgres()
    url = server.url()
    migrate(url)
    yield url
    server.remove()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path):
    """A migrated, empty database: a fresh SQLite file, or the emptied PostgreSQL one."""
    if request.param == "sqlite":
        path = tmp_path / "test.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    empty(url)


# --- The app ----------------------------------------------------------------------


@pytest.fixture
def settings(request) -> dict:
    """Per-test settings: ``@pytest.mark.settings(KEY=value)`` adds to the defaults."""
    extra = {}
    for marker in request.node.iter_markers("settings"):
        extra = {**marker.kwargs, **extra}
    if "smtp_server" in request.fixturenames:
        server = request.getfixturevalue("smtp_server")
        extra = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": server.port, **extra}
    return extra


class OwnContextClient(FlaskClient):
    """A test client whose every request runs in its own application context.

    The ``app`` fixture keeps one app context open so that tests can query the
    database; Flask would reuse it for every request, and what extensions keep per
    request in ``g`` (Flask-Login's user, Flask-Babel's locale, the CSRF token) would
    leak from one request, or one browser, into the next. In production each request
    has its own context and its own database session; so it is here.
    """

    def open(self, *args, **kwargs):
        """Send one request inside its own application context."""
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if has_app_context():
            # The test's own session must not serve objects the request has changed.
            db.session.expire_all()
        return response


@pytest.fixture
def app(database_url, settings, tmp_path):
    """The application on a fresh database, with the dev mailbox in a temporary folder."""
    config = {
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "PUBLIC_URL": "http://news.test",
        "RATELIMIT_ENABLED": False,
        **settings,
    }
    application = create_app(config)
    application.test_client_class = OwnContextClient
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """A browser-like test client: keeps its own cookies."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """The command line of the app."""
    return app.test_cli_runner()


def pytest_configure(config):
    """Declare the markers the tests use."""
    config.addinivalue_line("markers", "settings(**config): extra app settings for one test")
    config.addinivalue_line(
        "markers", "live_settings(**config): extra settings of the gunicorn server of live.py"
    )


# --- Reading pages and mail ---------------------------------------------------------


@pytest.fixture
def reader(app, client):
    """The reader of the journey, at the ``client`` browser."""
    return Visitor(app, client)


# --- A real SMTP server -------------------------------------------------------------


@pytest.fixture
def smtp_server():
    """A running SMTP server for one test."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser(app):
    """A second browser: its own cookies, nothing shared with ``client``."""
    return app.test_client()


@pytest.fixture
def articles(app):
    """The test articles, stored the way ``auth-service articles import`` stores them."""
    import_articles(ARTICLES)
    return ARTICLES


def pytest_terminal_summary(terminalreporter) -> None:
    """Every mail's SpamAssassin score in the run's summary, the passing ones too
    (``mail/test_spam_score.py`` records them; CI's log keeps them)."""
    lines = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            found = dict(report.user_properties)
            if report.when == "call" and "spam_score" in found:
                name = report.nodeid.rpartition("::")[2]
                lines.append(f"{name}: {found['spam_score']:.3f} ({found['spam_rules']})")
    if lines:
        terminalreporter.section("SpamAssassin scores of the mails (the gate: at most 1.0)")
        for line in sorted(lines):
            terminalreporter.line(line)
