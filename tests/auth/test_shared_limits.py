"""The rate limits hold across processes when they share one Redis.

Production runs several app processes (gunicorn workers, or several machines); a bot
that spreads its requests over them must meet the same counters. Flask-Limiter keeps
them in ``RATELIMIT_STORAGE_URI``: with ``redis://`` every process reads and writes the
same counters. These tests start Debian's ``redis-server`` on 127.0.0.1, two real
server processes of the app on one shared SQLite database, and HTTP clients with their
own cookie jars, then send one bot's requests to both processes in turn.

The control test runs the same sequence with ``memory://`` storage (each process its
own counters) and is not limited at the same point: the sharing comes from Redis.
Without Redis, the default storage keeps the counters in the service's database (the
``rate_limits`` table): the same sequence on the shared SQLite file is limited at the
same point as with Redis.
These tests do not use the ``app`` fixture; they run once, not once per database.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from support.network import free_port
from support.redis_server import redis_url, shared_redis
from support.settings import REPOSITORY, SECRET

# The Redis fixtures, imported so that pytest finds them in this module.
__all__ = ["redis_url", "shared_redis"]
ROOT = REPOSITORY
START_TIMEOUT = 30  # seconds for a process to answer


def _wait_until(check, what: str, process: subprocess.Popen) -> None:
    """Call ``check`` until it succeeds, for at most ``START_TIMEOUT`` seconds."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with status {process.returncode}")
        try:
            check()
            return
        except Exception:  # not listening yet: any connection error means "wait"
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not answer in {START_TIMEOUT} s") from None
            time.sleep(0.1)


# --- The app, twice ------------------------------------------------------------------


@dataclass
class Server:
    """One running app process."""

    name: str
    url: str
    process: subprocess.Popen
    log: Path


@pytest.fixture
def database(tmp_path) -> Path:
    """One SQLite file, migrated with the project's command, for every process."""
    path = tmp_path / "shared.sqlite3"
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "auth_service", "db", "upgrade"],
        env=_environment(tmp_path, path, storage="memory://"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return path


def _environment(tmp_path: Path, database: Path, *, storage: str | None, **settings: str) -> dict:
    """What an operator exports for every process: one key, one database, one storage
    (``None``: the default, the service's database)."""
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTH_SERVICE_", "FLASK_")) and key != "PUBLIC_URL"
    }
    chosen = {} if storage is None else {"AUTH_SERVICE_RATELIMIT_STORAGE_URI": storage}
    return {
        **inherited,
        "AUTH_SERVICE_SECRET_KEY": SECRET,
        "AUTH_SERVICE_SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
        "AUTH_SERVICE_INSTANCE_PATH": str(instance),
        "AUTH_SERVICE_RATELIMIT_ENABLED": "true",
        **chosen,
        **{f"AUTH_SERVICE_{key}": value for key, value in settings.items()},
    }


@pytest.fixture
def start_pair(tmp_path, database):
    """Start two app processes, A and B, with the same settings; stop them after."""
    started: list[Server] = []

    def start(*, storage: str | None, **settings: str) -> tuple[Server, Server]:
        environment = _environment(tmp_path, database, storage=storage, **settings)
        for name in ("A", "B"):
            started.append(_serve(name, environment, tmp_path))
        return started[-2], started[-1]

    yield start
    for server in started:
        server.process.terminate()
    for server in started:
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def _serve(name: str, environment: dict, tmp_path: Path) -> Server:
    """``flask run`` on a free port of 127.0.0.1; return once it answers /healthz."""
    port = free_port()
    log = tmp_path / f"server-{name}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "auth_service",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-reload",
            ],
            env=environment,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_until(
        lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).close(),
        f"app process {name} on port {port}",
        process,
    )
    return Server(name, url, process, log)


# --- A client with its own cookies ---------------------------------------------------


class Browser:
    """An HTTP client with its own cookie jar that does not follow redirects."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), self._NoRedirect
        )

    def request(self, server: Server, path: str, data: dict | None = None):
        """Return (status, headers, body) of one request to ``server``."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(server.url + path, data=body)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read().decode()

    def ask_for_link(self, server: Server, email: str):
        """Fetch the sign-in form from ``server`` and post ``email`` to it."""
        _, _, page = self.request(server, "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return self.request(server, "/login", {"email": email, "csrf_token": token})


def outbox_rows(database: Path) -> list[str]:
    """The addresses of the mails queued in the shared database, oldest first."""
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT to_address FROM outbox_messages ORDER BY id").fetchall()
    finally:
        connection.close()
    return [address for (address,) in rows]


def limit_keys(client: redis.Redis) -> list[bytes]:
    """Flask-Limiter's counters in Redis (RATELIMIT_KEY_PREFIX is "auth-service")."""
    return list(client.scan_iter(match="*auth-service*", count=1000))


# --- The limits, shared ----------------------------------------------------------------


def test_one_address_gets_one_link_a_minute_across_two_processes(
    start_pair, shared_redis, redis_url, database
):
    """Defence: the per-address limit ("1 per minute") counted in the shared Redis.

    A bot asks process A, then another bot (other cookies) asks process B, for the same
    inbox: B refuses with 429, and the inbox gets one mail.
    """
    a, b = start_pair(storage=redis_url)
    first, second = Browser(), Browser()

    status, _, _ = first.ask_for_link(a, "victim@example.com")
    assert status == 303
    status, headers, page = second.ask_for_link(b, "Victim@Example.com")

    assert status == 429, f"process B did not see process A's count ({a.log}, {b.log})"
    assert int(headers["Retry-After"]) > 0
    assert "victim@example.com" not in page.lower()  # no hint about the address
    assert outbox_rows(database) == ["victim@example.com"]
    assert limit_keys(shared_redis), "the counters are not in Redis"


def test_one_ip_meets_the_same_counter_on_both_processes(
    start_pair, shared_redis, redis_url, database
):
    """Defence: the per-IP limit on ``POST /login`` counted in the shared Redis.

    With "3 per 5 minutes", one client alternates A, B, A, B with four different
    addresses: the fourth post, at B, is the fourth of the IP and is refused.
    """
    a, b = start_pair(storage=redis_url, LOGIN_LIMIT_PER_IP="3 per 5 minutes")
    bot = Browser()

    statuses = [
        bot.ask_for_link(server, f"reader{number}@example.com")[0]
        for number, server in enumerate([a, b, a, b], start=1)
    ]

    assert statuses == [303, 303, 303, 429]
    assert outbox_rows(database) == [f"reader{number}@example.com" for number in (1, 2, 3)]
    assert limit_keys(shared_redis), "the counters are not in Redis"


def test_without_redis_each_process_counts_alone(start_pair, shared_redis, database):
    """Control: the same sequence with ``memory://`` storage is not limited at the
    fourth post, since each process has seen only two; each process still limits its
    own (A refuses its fourth). So the sharing above is Redis's doing."""
    a, b = start_pair(storage="memory://", LOGIN_LIMIT_PER_IP="3 per 5 minutes")
    bot = Browser()

    statuses = [
        bot.ask_for_link(server, f"reader{number}@example.com")[0]
        for number, server in enumerate([a, b, a, b, a, a], start=1)
    ]

    assert statuses == [303, 303, 303, 303, 303, 429]
    assert len(outbox_rows(database)) == 5
    assert limit_keys(shared_redis) == [], "memory:// storage wrote to Redis"
    for server in (a, b):  # and each process said so at start
        assert "each process of the service counts rate limits alone" in server.log.read_text()


def test_without_redis_one_address_gets_a_link_from_each_process(
    start_pair, shared_redis, database
):
    """Control of the per-address test: with ``memory://`` storage, process B has not
    seen process A's link, so the same inbox gets a second mail within the minute."""
    a, b = start_pair(storage="memory://")

    assert Browser().ask_for_link(a, "victim@example.com")[0] == 303
    assert Browser().ask_for_link(b, "Victim@Example.com")[0] == 303

    assert outbox_rows(database) == ["victim@example.com", "victim@example.com"]
    assert limit_keys(shared_redis) == [], "memory:// storage wrote to Redis"


def limit_rows(database: Path) -> dict[str, int]:
    """The counters of the default storage in the shared database: key to hits."""
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT key, hits FROM rate_limits").fetchall()
    finally:
        connection.close()
    return dict(rows)


def test_one_ip_meets_the_same_counter_in_the_shared_database(start_pair, database):
    """Defence: with no storage set, the per-IP limit is counted in the service's own
    database, which both processes share: the A, B, A, B sequence of the Redis test is
    refused at the fourth post, at B, where ``memory://`` let it through."""
    a, b = start_pair(storage=None, LOGIN_LIMIT_PER_IP="3 per 5 minutes")
    bot = Browser()

    statuses = [
        bot.ask_for_link(server, f"reader{number}@example.com")[0]
        for number, server in enumerate([a, b, a, b], start=1)
    ]

    assert statuses == [303, 303, 303, 429], f"see {a.log} and {b.log}"
    assert outbox_rows(database) == [f"reader{number}@example.com" for number in (1, 2, 3)]
    assert 4 in limit_rows(database).values(), "the IP's counter is not in rate_limits"
    for server in (a, b):
        assert "each process" not in server.log.read_text()  # no memory:// warning
