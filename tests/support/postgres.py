"""A PostgreSQL server of our own on 127.0.0.1, from Debian's binaries: the session's
(conftest) and any a test needs to stop and restart."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from auth_service import create_app
from auth_service.extensions import db
from support.network import free_port
from support.settings import DATA_TABLES, DATABASES, SECRET


def postgres_bin() -> Path:
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


@dataclass
class PostgresServer:
    folder: Path
    port: int
    fsync: bool = False  # off for tests (nothing here must survive a crash of the machine)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "auth_test") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *arguments: str) -> None:
        subprocess.run(
            _as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(self.data), *arguments]),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        if not self.fsync:
            options += " -c fsync=off"
        self.pg_ctl("-w", "-l", str(self.folder / "log"), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-w", "-m", mode, "stop")

    def remove(self) -> None:
        subprocess.run(
            _as_postgres(
                [str(postgres_bin() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
            ),
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(database: str = "auth_test", *, fsync: bool = False) -> PostgresServer:
    """Initialise, start and create ``database`` on a new server (``fsync``: PostgreSQL's
    own default, for benchmarks whose commits must cost what they cost in production)."""
    folder = Path(tempfile.mkdtemp(prefix="auth-service-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    server = PostgresServer(folder, free_port(), fsync)
    subprocess.run(
        _as_postgres(
            [
                str(postgres_bin() / "initdb"),
                "-D",
                str(server.data),
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
    server.start()
    admin = create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {database}"))
    admin.dispose()
    return server


def migrate(url: str) -> None:
    """Build the schema with the project's Alembic migrations, as production does."""
    with pytest.MonkeyPatch.context() as patch:
        # Session-wide, before any test's own folder exists: a folder of its own.
        patch.setenv("AUTH_SERVICE_INSTANCE_PATH", tempfile.mkdtemp(prefix="auth-service-migrate-"))
        app = create_app({"SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.engine.dispose()


# A test that needs PostgreSQL itself (its own server, or one shared by processes): left
# out, and said so, only when a developer runs TEST_DATABASES=sqlite; CI runs both.
needs_postgresql = pytest.mark.skipif(
    "postgresql" not in DATABASES, reason="TEST_DATABASES leaves PostgreSQL out"
)


def empty(url: str) -> None:
    """Delete every row the tests write, keeping the migrated schema."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
