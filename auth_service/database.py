"""The database connection: Flask-SQLAlchemy, plus SQLite settings for concurrent use."""

from __future__ import annotations

import sqlite3

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db

SQLITE_BUSY_TIMEOUT_MS = 10_000


@event.listens_for(Engine, "connect")
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


def init_app(app: Flask) -> None:
    """Attach Flask-SQLAlchemy to ``app``."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
