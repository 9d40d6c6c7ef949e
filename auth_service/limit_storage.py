"""Flask-Limiter's counters in the service's own database, shared by every process.

With ``memory://`` each web process (each gunicorn worker, each machine) keeps its own
counters, so N processes grant N times every allowance, sign-in mails included. The
default storage, ``auth-service-db://``, keeps them in the ``rate_limits`` table of the
database every process already shares; ``redis://`` still works for sites that run one.

Only Flask-Limiter's default strategy, the fixed window, is supported: one row per
limit key holds the hits of the current window and the moment it ends. Each hit is one
``INSERT … ON CONFLICT DO UPDATE … RETURNING`` committed on a connection of its own, so
simultaneous hits from several processes lose none, and a request that rolls back its
own work keeps its count.

Importing this module registers the scheme with ``limits`` (its storages register
themselves through ``STORAGE_SCHEME``); ``init_app`` checks the settings before
Flask-Limiter opens the storage.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from urllib.parse import urlsplit

from flask import Flask
from limits.storage import Storage
from sqlalchemy import ColumnElement, case, delete, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .config import ConfigurationError
from .database import UPSERTS
from .extensions import db
from .models import RateLimitCounter

log = logging.getLogger(__name__)

SCHEME = "auth-service-db"
URI = f"{SCHEME}://"
COUNTERS = RateLimitCounter.__table__
KEY_LENGTH = COUNTERS.c.key.type.length


def init_app(app: Flask) -> None:
    """Check the rate-limit storage before ``limiter.init_app`` opens it.

    The database storage refuses, at start, what it cannot do. ``memory://`` outside
    dev mode and tests starts, with a warning: it is right for one process only.
    """
    if not app.config["RATELIMIT_ENABLED"]:
        return  # Flask-Limiter opens no storage, and nothing is counted
    scheme = urlsplit(app.config["RATELIMIT_STORAGE_URI"] or "").scheme
    if scheme == SCHEME:
        _check_database_storage(app)
    elif scheme == "memory" and not (app.config["DEV_MODE"] or app.testing):
        app.logger.warning(
            "RATELIMIT_STORAGE_URI is memory://: each process of the service counts rate "
            "limits alone, so N web processes (gunicorn workers, machines) grant N times "
            "every allowance, sign-in mails included. Remove the setting to count in the "
            "service's database (%s), or set it to redis://… to count in Redis.",
            URI,
        )


def _check_database_storage(app: Flask) -> None:
    """Refuse a strategy or a database the ``rate_limits`` table cannot serve."""
    strategy = app.config.get("RATELIMIT_STRATEGY", "fixed-window")
    if strategy != "fixed-window":
        # limits would refuse too (NotImplementedError naming the class), without the fix.
        raise ConfigurationError(
            f"RATELIMIT_STRATEGY {strategy!r} is not supported by the database storage of "
            f"rate limits ({URI}), which keeps fixed windows only. Remove "
            "RATELIMIT_STRATEGY, or set RATELIMIT_STORAGE_URI to redis://… to use it."
        )
    database = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if database.get_backend_name() not in UPSERTS:
        raise ConfigurationError(
            f"the database storage of rate limits ({URI}) works on SQLite and PostgreSQL, "
            f"not {database.get_backend_name()}; set RATELIMIT_STORAGE_URI to redis://…"
        )
    if database.get_backend_name() == "sqlite" and database.database in (None, "", ":memory:"):
        # An in-memory database is one connection: a count would commit the request.
        raise ConfigurationError(
            "an in-memory SQLite database cannot hold the rate limits on a connection of "
            "their own; set RATELIMIT_STORAGE_URI to memory:// (it is one process anyway)."
        )


def stored_key(key: str) -> str:
    """``key`` as it fits the ``rate_limits.key`` column.

    A per-address key can outgrow the column (an address may be 320 characters), so a
    long key keeps its start, for whoever reads the table, and ends with its SHA-256.
    """
    if len(key) <= KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: KEY_LENGTH - len(digest) - 1]}#{digest}"


class DatabaseStorage(Storage):
    """A ``limits`` storage of fixed-window counters in the ``rate_limits`` table.

    It talks to ``db.engine``, the engine of the current app: Flask-Limiter calls it in
    the request's app context. It never uses the request's session, and must not be
    called while that session holds SQLite's write lock (Flask-Limiter counts before
    the view runs, so it never is).
    """

    STORAGE_SCHEME = [SCHEME]
    # Expired rows are deleted by the first hit of a process, then at most this often.
    PRUNE_EVERY = 60.0

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool
    ) -> None:
        """Accept only the bare ``auth-service-db://``: the database is the app's own."""
        parts = urlsplit(uri or URI)
        if parts.netloc or parts.path or parts.query:
            raise ConfigurationError(
                f"RATELIMIT_STORAGE_URI {uri!r}: the database storage takes no host or "
                f"path, it uses SQLALCHEMY_DATABASE_URI; write {URI}"
            )
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_prune = 0.0
        self._prune_lock = threading.Lock()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """What Flask-Limiter may wrap or fall back on: any database error."""
        return SQLAlchemyError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount`` hits to ``key`` and return the hits of its window.

        One atomic upsert: a missing or ended window starts again with ``amount`` hits
        and ends ``expiry`` seconds from now; a running one only gains hits.
        """
        now = time.time()
        engine = db.engine
        insert = UPSERTS[engine.dialect.name](COUNTERS).values(
            key=stored_key(key), hits=amount, expires_at=now + expiry
        )
        ended = COUNTERS.c.expires_at <= now
        # Both CASEs read the row as it was before this statement, on both databases.
        upsert = insert.on_conflict_do_update(
            index_elements=[COUNTERS.c.key],
            set_={
                "hits": case(
                    (ended, insert.excluded.hits), else_=COUNTERS.c.hits + insert.excluded.hits
                ),
                "expires_at": case(
                    (ended, insert.excluded.expires_at), else_=COUNTERS.c.expires_at
                ),
            },
        ).returning(COUNTERS.c.hits)
        with engine.begin() as connection:
            hits = connection.execute(upsert).scalar_one()
        self._prune_now_and_then(now)
        return hits

    def get(self, key: str) -> int:
        """The hits of ``key``'s running window, 0 if none runs."""
        return self._read(COUNTERS.c.hits, key) or 0

    def get_expiry(self, key: str) -> float:
        """When ``key``'s window ends (epoch seconds); now if none runs, as ``limits``'s
        own storages answer."""
        return self._read(COUNTERS.c.expires_at, key) or time.time()

    def _read(self, column: ColumnElement, key: str) -> float | int | None:
        """``column`` of ``key``'s row if its window still runs."""
        query = select(column).where(
            COUNTERS.c.key == stored_key(key), COUNTERS.c.expires_at > time.time()
        )
        with db.engine.connect() as connection:
            return connection.scalar(query)

    def clear(self, key: str) -> None:
        """Forget ``key``'s window."""
        with db.engine.begin() as connection:
            connection.execute(delete(COUNTERS).where(COUNTERS.c.key == stored_key(key)))

    def reset(self) -> int | None:
        """Forget every window; return how many there were."""
        with db.engine.begin() as connection:
            return connection.execute(delete(COUNTERS)).rowcount

    def check(self) -> bool:
        """Whether the database answers (Flask-Limiter asks before leaving a fallback)."""
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def delete_expired(self, now: float | None = None) -> int:
        """Delete the rows of ended windows; return how many went."""
        ended = COUNTERS.c.expires_at <= (time.time() if now is None else now)
        with db.engine.begin() as connection:
            return connection.execute(delete(COUNTERS).where(ended)).rowcount

    def _prune_now_and_then(self, now: float) -> None:
        """Delete ended windows once every ``PRUNE_EVERY`` seconds of this process, so
        that one row per client IP ever seen does not stay forever."""
        if now < self._next_prune or not self._prune_lock.acquire(blocking=False):
            return  # not due, or another thread of this process is at it
        try:
            self._next_prune = now + self.PRUNE_EVERY
            self.delete_expired(now)
        except SQLAlchemyError:
            # Housekeeping: the hit is counted already, and the next prune will do.
            log.warning("Could not delete expired rate-limit counters", exc_info=True)
        finally:
            self._prune_lock.release()
