"""The rate limits counted in the service's own database (``auth-service-db://``).

The default storage of Flask-Limiter's counters is the ``rate_limits`` table, so that
every web process counts one allowance. Each test runs on SQLite and on PostgreSQL:
the sign-in form's per-IP limit through the test client, then the storage itself
(rollbacks, windows that end, many threads hitting one key, pruning, long keys).
Starting the service with ``memory://``, or with a setting the storage cannot serve,
is checked on the factory. Two real processes sharing the table are in
``auth/test_shared_limits.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import func, insert, select, update
from support.settings import SECRET

from auth_service import create_app
from auth_service.auth import flow
from auth_service.config import ConfigurationError
from auth_service.extensions import db, limiter
from auth_service.limit_storage import URI, DatabaseStorage
from auth_service.models import LoginAttempt, RateLimitCounter, Reader

LIMITS_ON = pytest.mark.settings(RATELIMIT_ENABLED=True)


@pytest.fixture
def storage(app) -> DatabaseStorage:
    """The storage as Flask-Limiter builds it from its URI, in the app's context."""
    return storage_from_string(URI)


def counts() -> dict[str, int]:
    """Every counter in the ``rate_limits`` table: key to hits."""
    return dict(db.session.execute(select(RateLimitCounter.key, RateLimitCounter.hits)).all())


def end_every_window() -> None:
    """Move every window's end into the past, as if its time had run out."""
    with db.engine.begin() as connection:
        connection.execute(update(RateLimitCounter).values(expires_at=time.time() - 1))
    db.session.expire_all()


# --- The sign-in form -------------------------------------------------------------------


@LIMITS_ON
@pytest.mark.settings(LOGIN_LIMIT_PER_IP="3 per 5 minutes")
def test_the_fourth_post_from_one_ip_is_refused_and_counted_in_the_database(app, reader):
    """Defence: the per-IP limit of ``POST /login`` counted in the ``rate_limits`` table,
    the storage every process of the service shares."""
    assert app.config["RATELIMIT_STORAGE_URI"] == URI  # the default, not set by the test
    assert limiter.storage.__class__ is DatabaseStorage

    statuses = [
        reader.ask_for_link(f"reader{number}@example.com").status_code for number in range(1, 5)
    ]

    assert statuses == [303, 303, 303, 429]
    assert 4 in counts().values(), counts()  # the IP's counter; addresses count once each
    per_ip = db.session.scalar(select(RateLimitCounter).where(RateLimitCounter.hits == 4))
    assert time.time() < per_ip.expires_at <= time.time() + 5 * 60


@LIMITS_ON
@pytest.mark.settings(LOGIN_LIMIT_PER_IP="3 per 5 minutes")
def test_a_post_whose_request_rolls_back_still_counts(app, reader, monkeypatch):
    """Defence: a count is committed on its own connection before the view runs, so a
    request that fails and rolls back its work has still spent its allowance."""

    def broken_queue(issued) -> None:
        raise RuntimeError("the outbox is broken")

    monkeypatch.setattr(flow, "queue_sign_in_mail", broken_queue)
    with pytest.raises(RuntimeError, match="outbox is broken"):
        reader.ask_for_link("first@example.com")
    assert db.session.scalar(select(func.count()).select_from(LoginAttempt)) == 0
    monkeypatch.undo()

    assert reader.ask_for_link("second@example.com").status_code == 303

    assert max(counts().values()) == 2  # the IP's: the failed post and this one


@LIMITS_ON
@pytest.mark.settings(LOGIN_LIMIT_PER_IP="2 per 5 minutes")
def test_the_form_answers_again_once_the_window_has_ended(app, reader):
    """When the window's end has passed, the next post starts a new window at 1."""
    assert [reader.ask_for_link(f"r{n}@example.com").status_code for n in range(3)] == [
        303,
        303,
        429,
    ]

    end_every_window()

    assert reader.ask_for_link("again@example.com").status_code == 303
    assert sorted(counts().values())[-1] == 1


# --- The storage --------------------------------------------------------------------------


def test_a_count_is_kept_when_the_session_rolls_back(app, storage):
    """The increment is not part of the session's transaction: rolling that back
    (as a failed request does) removes the session's rows and keeps the count."""
    db.session.add(Reader(email="rolled-back@example.com"))

    assert storage.incr("rollback", 60) == 1
    db.session.flush()
    db.session.rollback()

    assert db.session.scalar(select(func.count()).select_from(Reader)) == 0
    assert storage.get("rollback") == 1


def test_a_window_counts_until_it_ends_then_starts_again(app, storage):
    """Hits add up within a window; after its end the key reads 0, and the next hit
    starts a new window of the full length."""
    assert [storage.incr("window", 60) for _ in range(3)] == [1, 2, 3]
    first_end = storage.get_expiry("window")
    assert time.time() + 59 < first_end <= time.time() + 60
    assert storage.get("window") == 3

    end_every_window()

    assert storage.get("window") == 0
    assert storage.get_expiry("window") <= time.time()
    assert storage.incr("window", 60, amount=2) == 2
    assert time.time() + 59 < storage.get_expiry("window") <= time.time() + 60


def test_a_one_second_window_ends_by_itself(app, storage):
    """The same with the clock: "2 per 1 second" lets a third hit through a second on."""
    assert [storage.incr("second", 1) for _ in range(3)] == [1, 2, 3]

    time.sleep(1.05)

    assert storage.incr("second", 1) == 1


def test_simultaneous_hits_on_one_key_are_all_counted(app, storage):
    """40 threads, released together, each hit one key 5 times: 200 hits, and each
    hit saw a different count, so no two read the same value and wrote it back."""
    threads, hits_each = 40, 5
    start = threading.Barrier(threads, timeout=30)

    def hit() -> list[int]:
        with app.app_context():
            start.wait()
            return [storage.incr("crowded", 60) for _ in range(hits_each)]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(hit) for _ in range(threads)]
        seen = [count for future in futures for count in future.result(timeout=120)]

    assert storage.get("crowded") == threads * hits_each
    assert sorted(seen) == list(range(1, threads * hits_each + 1))


def test_ended_windows_are_deleted_now_and_then(app, storage):
    """The first hit of a process deletes the rows of ended windows, then no more than
    once every ``PRUNE_EVERY`` seconds: the table does not keep every IP ever seen."""
    now = time.time()
    rows = [
        {"key": "ended", "hits": 3, "expires_at": now - 10},
        {"key": "running", "hits": 1, "expires_at": now + 60},
    ]
    with db.engine.begin() as connection:
        connection.execute(insert(RateLimitCounter), rows)

    storage.incr("new", 60)
    assert counts() == {"running": 1, "new": 1}

    with db.engine.begin() as connection:
        connection.execute(insert(RateLimitCounter), [{**rows[0], "key": "ended-later"}])
    storage.incr("new", 60)
    assert "ended-later" in counts()  # not due again for a minute
    assert storage.delete_expired() == 1
    assert counts() == {"running": 1, "new": 2}


def test_a_key_longer_than_the_column_is_counted_under_its_digest(app, storage):
    """A per-address key can pass the 255 characters of ``rate_limits.key`` (PostgreSQL
    would refuse it): it is stored shortened with its SHA-256, still one key each."""
    long_key = "LIMITER/auth-service/address:" + "x" * 300 + "@example.com/1/1/minute"
    other = long_key.replace("1/1/minute", "5/1/hour")

    assert storage.incr(long_key, 60) == 1
    assert storage.incr(long_key, 60) == 2
    assert storage.incr(other, 60) == 1

    assert storage.get(long_key) == 2
    assert all(len(key) <= 255 for key in counts())
    storage.clear(long_key)
    assert storage.get(long_key) == 0
    assert storage.get(other) == 1


def test_reset_and_check(app, storage):
    """``limiter.reset()`` empties the table (tests start with it); ``check`` is what
    Flask-Limiter asks before trusting a storage again."""
    storage.incr("one", 60)
    storage.incr("two", 60)

    assert storage.check() is True
    assert storage.reset() == 2
    assert counts() == {}


# --- Starting the service -------------------------------------------------------------------


def _start(tmp_path, **settings):
    """``create_app`` as production runs it (no TESTING), on a file nobody opens."""
    config = {
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/unused.sqlite3",
        "RATELIMIT_ENABLED": True,
        **settings,
    }
    return create_app(config)


def _per_process_warnings(caplog) -> list[str]:
    """The warnings that say each process counts alone."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "each process" in record.getMessage()
    ]


def test_memory_storage_in_production_is_loudly_warned_about(tmp_path, caplog):
    """``memory://`` set outside dev mode and tests: the service starts, and its log
    says that every process grants its own allowance, and what to set instead."""
    _start(tmp_path, RATELIMIT_STORAGE_URI="memory://")

    (warning,) = _per_process_warnings(caplog)
    assert "memory://" in warning
    assert "N times" in warning
    assert URI in warning and "redis://" in warning


@pytest.mark.parametrize(
    "settings",
    [
        {"RATELIMIT_STORAGE_URI": "memory://", "DEV_MODE": True},
        {"RATELIMIT_STORAGE_URI": "memory://", "TESTING": True},
        {"RATELIMIT_STORAGE_URI": "memory://", "RATELIMIT_ENABLED": False},
        {},  # the default: the database
    ],
    ids=["dev-mode", "testing", "limits-off", "default-storage"],
)
def test_no_warning_where_one_process_is_all_there_is(tmp_path, caplog, settings):
    """Dev mode and tests run one process; with limits off nothing is counted; the
    default storage is shared. None of them warns."""
    app = _start(tmp_path, **settings)

    assert _per_process_warnings(caplog) == []
    if not settings:
        assert app.config["RATELIMIT_STORAGE_URI"] == URI


def test_another_strategy_with_the_database_storage_refuses_to_start(tmp_path):
    """The table keeps fixed windows only. limits itself would refuse a moving window
    (``NotImplementedError``); the service says so first, with the fix."""
    with pytest.raises(ConfigurationError, match="fixed windows only.*redis://"):
        _start(tmp_path, RATELIMIT_STRATEGY="moving-window")
    with pytest.raises(NotImplementedError):
        MovingWindowRateLimiter(DatabaseStorage())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"RATELIMIT_STORAGE_URI": URI + "db.example:5432"}, "takes no host"),
        ({"SQLALCHEMY_DATABASE_URI": "sqlite://"}, "in-memory SQLite"),
    ],
    ids=["host-in-uri", "in-memory-sqlite"],
)
def test_a_database_storage_it_cannot_use_refuses_to_start(tmp_path, settings, message):
    """A host in the URI (the database is the app's own), or an in-memory SQLite (one
    connection: a count would commit the request's work) is refused at start."""
    with pytest.raises(ConfigurationError, match=message):
        _start(tmp_path, **settings)
