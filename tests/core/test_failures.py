"""Parts failing under the running service (gunicorn, both databases): what the reader
sees, what the log says, and that the service recovers by itself."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from support.live import Browser, start_serve, stop_gunicorn
from support.postgres import PostgresServer, migrate, needs_postgresql, start_postgres
from support.redis_server import start_redis, stop_redis
from support.settings import SECRET
from support.web import assert_calm_page, csrf_token, in_english, text_of

from auth_service import create_app
from auth_service.extensions import db


def test_with_redis_down_limits_fail_open_per_process_and_come_back(database_url, tmp_path):
    """The documented choice (docs/operations.md): fail open, logged, then recover."""
    url, server = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1])
    settings = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": url,
        "LOGIN_LIMIT_PER_IP": "1000 per minute",
    }
    service = start_serve(database_url, tmp_path, settings)
    try:
        assert Browser(service).ask_for_link("avant@example.com")  # counted in Redis
        stop_redis(server)
        during = Browser(service)
        reply = during.post(
            "/login", {"email": "pendant@example.com", "csrf_token": during.csrf_token()}
        )
        assert reply.status == 303, reply.body[:300]  # the reader is not stopped
        # The per-address limit still holds, per process, in memory.
        replies = []
        for _ in range(4):
            again = Browser(service)
            form = {"email": "pendant@example.com", "csrf_token": again.csrf_token()}
            replies.append(again.post("/login", form).status)
        assert 429 in replies
        assert "Rate limit storage unreachable - falling back to in-memory storage" in (
            service.log_text()
        )
        url, server = start_redis(tmp_path, port=port)  # Redis is back, empty
        client = redis.Redis.from_url(url)
        # Each process looks at Redis again after a back-off that doubles with each
        # failed look (Flask-Limiter: 1, 2, 4... seconds, at most 32).
        deadline = time.monotonic() + 40
        sent = 0
        while not client.keys("*") and time.monotonic() < deadline:
            Browser(service).ask_for_link(f"apres{sent}@example.com")
            sent += 1
            time.sleep(0.2)
        assert client.keys("*"), "the limits never went back to Redis"
        client.close()
    finally:
        stop_gunicorn(service)
        stop_redis(server)


def read_only(url: str) -> str:
    """The same database, opened so that every write fails as on a read-only disk or a
    PostgreSQL standby."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    return f"{url}?options=-c%20default_transaction_read_only%3Don"


def test_a_read_only_database_gives_a_clear_page_and_writes_nothing(database_url, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": read_only(database_url),
            "RATELIMIT_ENABLED": False,
            "PUBLIC_URL": "http://news.test",
        }
    )
    with app.app_context():
        client = in_english(app.test_client())
        assert client.get("/").status_code == 200  # reading still works
        form = {"email": "lea@example.com", "csrf_token": csrf_token(client)}
        answer = client.post("/login", data=form)
        assert_calm_page(answer, 503)
        assert "try again" in text_of(answer).lower()
        db.engine.dispose()
    writable = create_engine(database_url)
    with writable.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM login_attempts")).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM outbox_messages")).scalar() == 0
    writable.dispose()


@needs_postgresql  # only a server can cut a connection in the middle of a request
def test_a_connection_cut_as_a_request_ends_keeps_the_answer_and_heals(postgres_url, caplog):
    """The server goes away after the view has read (a restart, a failover): the
    request's last rollback fails. The answer, already made, still reaches the reader
    (not gunicorn's bare 500), and the next request gets a fresh connection."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": postgres_url,
            "RATELIMIT_ENABLED": False,
            "PUBLIC_URL": "http://news.test",
        }
    )

    @app.get("/read-then-cut")
    def read_then_cut():
        own = db.session.execute(text("SELECT pg_backend_pid()")).scalar()  # in a transaction
        other = create_engine(postgres_url)
        with other.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": own})
        other.dispose()
        return "read"

    client = in_english(app.test_client())
    answer = client.get("/read-then-cut")
    assert (answer.status_code, answer.text) == (200, "read")
    assert "The database went away while a request ended" in caplog.text
    assert client.get("/read-then-cut").text == "read"  # a new connection, cut in turn
    assert client.get("/").status_code == 200
    with app.app_context():
        db.engine.dispose()


def errors_in(log: str) -> str:
    """What in the server's JSON log says why a request failed: the 500s' access
    lines and every error but the expected "Database unavailable", tracebacks whole."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:  # gunicorn's own plain lines
                found.append(line)
            continue
        if not isinstance(record, dict):
            continue
        failed = record.get("status") == 500
        unexpected = record.get("level") in ("ERROR", "CRITICAL") and not str(
            record.get("message", "")
        ).startswith("Database unavailable")
        if failed or unexpected:
            found.append(json.dumps(record, indent=1))
    return "\n".join(found)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test alone, migrated: it will be restarted."""
    server = start_postgres()
    try:
        migrate(server.url())
        yield server
    finally:
        server.remove()


@needs_postgresql  # a server of its own, restarted
def test_postgresql_restarted_under_load_gives_503s_then_recovers_alone(own_postgres, tmp_path):
    """Requests in flight while PostgreSQL restarts get the calm 503 page (never a 500),
    the service needs no restart, and no attempt is left without its mail."""
    service = start_serve(own_postgres.url(), tmp_path)
    counted: list[Counter] = [Counter() for _ in range(4)]  # one per thread: no lost count
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(number: int) -> None:
        browser = Browser(service)
        statuses = counted[number]
        sent = 0
        try:
            while not stop.is_set():
                try:
                    token = browser.csrf_token()
                except AssertionError:  # the form page itself was a 503
                    statuses["503 (form)"] += 1
                    time.sleep(0.05)
                    continue
                form = {"email": f"charge{number}-{sent}@example.com", "csrf_token": token}
                statuses[browser.post("/login", form).status] += 1
                sent += 1
        except BaseException as error:  # reported below, not lost with the thread
            errors.append(error)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(len(counted))]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        own_postgres.stop("fast")  # in-flight transactions are cut off
        time.sleep(1.0)
        own_postgres.start()
        time.sleep(2.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "a reader hung"
        assert errors == []
        statuses = sum(counted, Counter())
        if statuses[500]:
            print(errors_in(service.log_text()))  # whole, in the captured output
        assert statuses[500] == 0, statuses
        assert statuses[503] + statuses["503 (form)"] > 0, statuses  # it was felt
        assert set(statuses) <= {303, 503, "503 (form)"}, statuses
        # Recovered by itself: the same processes sign readers up again.
        browser = Browser(service)
        form = {"email": "apres@example.com", "csrf_token": browser.csrf_token()}
        assert browser.post("/login", form).status == 303
        assert service.process.poll() is None
        assert "Database unavailable" in service.log_text()
        # Nothing half-written: every attempt has its mail, and every mail its attempt.
        attempts = service.scalar("SELECT count(*) FROM login_attempts")
        mails = service.scalar("SELECT count(*) FROM outbox_messages")
        assert attempts == mails
        # A 503 may come after its commit (the answer needed the database once more):
        # then the mail is queued all the same, and the reader can ask again.
        assert statuses[303] + 1 <= attempts <= statuses[303] + 1 + statuses[503]
    finally:
        stop.set()
        stop_gunicorn(service)


# --- A full disk ---------------------------------------------------------------------


@contextmanager
def small_disk(size: str = "16m") -> Iterator[Path]:
    """A real file system of ``size`` (a tmpfs mounted for the test: CI runs as root),
    so that the database's writes meet the kernel's own "No space left on device"."""
    folder = Path(tempfile.mkdtemp(prefix="auth-service-small-disk-"))
    folder.chmod(0o755)  # PostgreSQL's user must reach its tablespace in it
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"cannot mount a small disk (run as root): {mounted.stderr}"
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
        folder.rmdir()


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file; the file, to free them again."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(descriptor, b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    finally:
        os.close(descriptor)
    assert shutil.disk_usage(disk).free == 0
    return filler


def sign_up_on_a_full_disk_then_after(url: str, disk: Path) -> None:
    """POST /login while ``disk`` is full: the calm 503 and nothing written; then, with
    the space back, the same process signs the reader up: nothing to restart."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": url,
            "RATELIMIT_ENABLED": False,
            "PUBLIC_URL": "http://news.test",
        }
    )
    client = in_english(app.test_client())
    form = {"email": "lea@example.com", "csrf_token": csrf_token(client)}
    filler = fill(disk)

    answer = client.post("/login", data=form)

    assert_calm_page(answer, 503)
    assert "try again" in text_of(answer).lower()
    filler.unlink()
    assert client.post("/login", data=form).status_code == 303
    with app.app_context():
        attempts = db.session.scalar(text("SELECT count(*) FROM login_attempts"))
        mails = db.session.scalar(text("SELECT count(*) FROM outbox_messages"))
        db.session.remove()
        db.engine.dispose()
    assert (attempts, mails) == (1, 1)  # the refused one left neither half behind


def test_a_full_disk_under_sqlite_gives_a_clear_page_writes_nothing_and_passes():
    with small_disk() as disk:
        url = f"sqlite:///{disk}/auth.sqlite3"
        migrate(url)
        sign_up_on_a_full_disk_then_after(url, disk)


@needs_postgresql  # a server of its own, with a tablespace on the small disk
def test_a_full_disk_under_postgresql_gives_a_clear_page_writes_nothing_and_passes():
    server = start_postgres()
    try:
        migrate(server.url())
        with small_disk() as disk:
            space = disk / "tablespace"
            space.mkdir(mode=0o700)
            shutil.chown(space, "postgres")
            admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                # The sign-up's first write, an attempt, must take a new page on this disk.
                connection.execute(text(f"CREATE TABLESPACE small LOCATION '{space}'"))
                connection.execute(text("ALTER TABLE login_attempts SET TABLESPACE small"))
                indexes = connection.execute(
                    text("SELECT indexname FROM pg_indexes WHERE tablename = 'login_attempts'")
                ).scalars()
                for index in list(indexes):
                    connection.execute(text(f"ALTER INDEX {index} SET TABLESPACE small"))
            admin.dispose()
            sign_up_on_a_full_disk_then_after(server.url(), disk)
    finally:
        server.remove()
