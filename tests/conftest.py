"""Fixtures: the app on SQLite and on a real PostgreSQL, clients, a real SMTP server.

Every test that takes ``app`` runs twice, once per database. PostgreSQL is a private
server started for the session from Debian's binaries (``tests/run.sh`` installs them);
set ``TEST_DATABASES=sqlite`` to run only the SQLite half while working locally.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from flask import has_app_context
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from auth_service import create_app
from auth_service.extensions import db

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
]
SECRET = "test-secret-key-that-is-long-enough-0123456789"


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No test sees the settings of the shell that runs the suite."""
    for key in list(os.environ):
        if key.startswith("AUTH_SERVICE_") or key in ("PUBLIC_URL", "FLASK_DEBUG", "FLASK_APP"):
            monkeypatch.delenv(key)


# --- PostgreSQL ------------------------------------------------------------------


def _postgres_bin() -> Path:
    """The folder of Debian's PostgreSQL server binaries."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail(
            "PostgreSQL is not installed; run tests/run.sh, which installs it, "
            "or set TEST_DATABASES=sqlite"
        )
    return found[-1].parent


def _as_postgres(command: list[str]) -> list[str]:
    """Run as the postgres user when we are root: the server refuses to run as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server of our own on 127.0.0.1, with a migrated database."""
    binaries = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="auth-service-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
            ]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(folder / "log"),
                "-o",
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    admin = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text("CREATE DATABASE auth_test"))
    admin.dispose()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/auth_test"
    _migrate(url)
    yield url
    subprocess.run(
        _as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
        capture_output=True,
    )
    shutil.rmtree(folder, ignore_errors=True)


def _migrate(url: str) -> None:
    """Build the schema with the project's Alembic migrations, as production does."""
    app = create_app({"SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    _migrate(f"sqlite:///{path}")
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
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()


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
    application.instance_path = str(tmp_path / "instance")
    Path(application.instance_path).mkdir(exist_ok=True)
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


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token a page hands to its forms, read as a browser would."""
    page = client.get(path).get_data(as_text=True)
    match = CSRF_FIELD.search(page)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


@dataclass
class Mail:
    """A mail as the reader gets it: headers and both parts."""

    to: str
    subject: str
    text: str
    html: str
    headers: dict = field(default_factory=dict)

    @property
    def link(self) -> str:
        """The sign-in link: the line of the text part that is only a URL."""
        return re.search(r"^(https?://\S+)$", self.text, re.MULTILINE).group(1)

    @property
    def token(self) -> str:
        """The token of the sign-in link."""
        return self.link.split("token=", 1)[1]

    @property
    def code(self) -> str:
        """The first standalone 6-digit number outside the link."""
        without_link = self.text.replace(self.link, "")
        return re.search(r"(?<!\d)(\d{6})(?!\d)", without_link).group(1)


class Visitor:
    """A reader at a browser: asks for links, reads the mail the service queued."""

    def __init__(self, app, client):
        self.app = app
        self.client = client

    def ask_for_link(
        self, email: str, *, next_url: str = "/", newsletter: bool = False, client=None
    ):
        """Submit the sign-up-or-sign-in form."""
        client = client or self.client
        data = {"email": email, "next": next_url, "csrf_token": csrf_token(client)}
        if newsletter:
            data["newsletter"] = "y"
        return client.post("/login", data=data)

    def outbox(self) -> list[Mail]:
        """Every queued mail, oldest first, read from the outbox table."""
        from auth_service.models import OutboxMessage

        rows = db.session.scalars(db.select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [
            Mail(r.to_address, r.subject, r.text_body, r.html_body, dict(r.headers)) for r in rows
        ]

    def last_mail(self) -> Mail:
        """The newest queued mail."""
        mails = self.outbox()
        assert mails, "no mail was queued"
        return mails[-1]

    def sign_in(
        self, email: str = "reader@example.com", *, next_url: str = "/", newsletter: bool = False
    ):
        """Ask for a link and open it in the same browser; return the final response."""
        response = self.ask_for_link(email, next_url=next_url, newsletter=newsletter)
        assert response.status_code == 303, response.status_code
        return self.client.get(f"/login/verify?token={self.last_mail().token}")


@pytest.fixture
def reader(app, client):
    """The reader of the journey, at the ``client`` browser."""
    return Visitor(app, client)


# --- A real SMTP server -------------------------------------------------------------


class Recorder:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.messages: list = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Accept and record one message."""
        with self.arrived:
            self.messages.append(envelope)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        """Block until ``count`` messages have arrived (or fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.messages)} of {count} messages arrived"
                self.arrived.wait(left)
        return self.messages


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again."""

    def __init__(self):
        self.port = free_port()
        self.recorder = Recorder()
        self.controller = None

    def start(self) -> None:
        """Listen on the port."""
        self.controller = Controller(
            self.recorder, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True
        )
        self.controller.start()

    def stop(self) -> None:
        """Stop listening: the service sees SMTP down."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list:
        """Envelopes accepted so far."""
        return self.recorder.messages


@pytest.fixture
def smtp_server():
    """A running SMTP server for one test."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()
