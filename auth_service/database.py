"""The database connection: Flask-SQLAlchemy, plus SQLite settings for concurrent use."""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .config import ConfigurationError
from .extensions import db

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# INSERT … ON CONFLICT … RETURNING, spelled the same on both databases but built by
# each dialect's own construct: the upserts of the rate limits and the suppressions.
UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _tune_sqlite(dbapi_connection, _record) -> None:
    """Make SQLite wait for a lock instead of failing with "database is locked".

    WAL lets readers work while one writer writes; the busy timeout makes a second
    writer queue for up to ten seconds; foreign keys make ``ON DELETE CASCADE`` work.
    """
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


# The outbox claims with UPDATE … FROM … RETURNING (SQLite 3.33 and 3.35).
OLDEST_SQLITE = (3, 35, 0)


def init_app(app: Flask) -> None:
    """Attach Flask-SQLAlchemy to ``app``; tune every SQLite connection (a listener on
    SQLAlchemy's Engine class, registered once per process)."""
    if not event.contains(Engine, "connect", _tune_sqlite):
        event.listen(Engine, "connect", _tune_sqlite)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        check_sqlite_version(sqlite3.sqlite_version_info)
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        # A file does not drop connections: the ping would be one more query per request.
        options["pool_pre_ping"] = False
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    # Teardowns run last-registered first: this one ends the session before
    # Flask-SQLAlchemy's, which then finds nothing left to close.
    app.teardown_appcontext(_end_session)


def end_transaction() -> None:
    """Roll back what the request began. If the database went away in the middle (a
    restart, a failover, a cut connection), the rollback fails too: then the session's
    connections are dropped, not returned to the pool, and no error escapes, so the
    request's answer, already decided, still reaches the reader."""
    try:
        db.session.rollback()
    except DBAPIError as error:
        log.warning("The database went away while a request ended: %s", error)
        db.session().invalidate()  # talks to no server: it discards the connections
        db.session.remove()


def _end_session(_error: BaseException | None) -> None:
    if not db.session.registry.has():
        return  # the request never touched the database
    try:
        end_transaction()
    finally:
        db.session.remove()


def check_sqlite_version(version: tuple[int, ...]) -> None:
    """Refuse to start on a SQLite too old for the outbox's claims, saying what to do."""
    if tuple(version) < OLDEST_SQLITE:
        found = ".".join(map(str, version))
        oldest = ".".join(map(str, OLDEST_SQLITE))
        raise ConfigurationError(
            f"this Python uses SQLite {found}; auth-service needs {oldest} or later. Use "
            "a Python built with a newer SQLite, or PostgreSQL (SQLALCHEMY_DATABASE_URI)."
        )
