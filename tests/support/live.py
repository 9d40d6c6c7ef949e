"""A real server and real parallel requests, for the tests of concurrency rules.

A race test is only worth having if it fails every time the rule is broken. Two things
make that so here.

**A real server with real parallelism.** :func:`live_server` runs the app under gunicorn
with several worker processes, each with several threads, as production does: every
request is handled on its own thread with its own database connection, so on PostgreSQL
two requests really do hold row locks at the same time. SQLite lets one writer in at a
time and so hides most races; the tests run on both databases because ``database_url``
is parametrised.

**Requests released together, by construction rather than by luck.** Threads that each
open a connection and send a request start their work milliseconds apart: connecting,
sending and parsing take about as long as the work under test, so the requests overlap
only now and then and a race test passes most of the time even against broken code.
:func:`release_together` removes that spread. It opens one connection per request and
sends every request except its last byte: the server accepts them, parses what it can
and then waits, because none of them is complete. A GET waits in gunicorn's header
parser (the held-back byte is the final line feed of the headers), a POST waits in the
app where it reads the form (the held-back byte is the last byte of the body). No
request can reach its first database statement before its last byte arrives, whatever
the scheduling. Then one loop sends all the last bytes, one ``send`` of one byte per
socket on loopback: they all arrive within a fraction of a millisecond, far less than
one request's database work, so every request enters the critical section in the same
instant, on every run. The short settle before the release only lets the server reach
its waiting point; what makes the start simultaneous is the held-back byte, not a
sleep.

Each process takes no more connections than it has threads, so a volley of more than
eight requests spreads over both processes; requests beyond the 2 × 8 threads wait in
the listen queue and start as soon as a thread is free.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import io
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from support.network import free_port, stop_process
from support.settings import REPOSITORY, SECRET
from support.web import Mail

ROOT = REPOSITORY
WORKERS = 2  # this machine and CI have two cores: one process per core
THREADS = 8
START_TIMEOUT = 30  # seconds for gunicorn to answer /healthz
REPLY_TIMEOUT = 60  # seconds for every reply of one release
# Time for the server to accept the connections and reach its waiting point before the
# release. It is not what makes the requests simultaneous (see the module docstring).
SETTLE = 0.2
WEBHOOK_SECRET = "race-webhook-secret"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- The server --------------------------------------------------------------------


@dataclass
class LiveServer:
    """The app under gunicorn on a free port, and the database it uses."""

    host: str
    port: int
    process: subprocess.Popen
    log: Path
    database: Engine

    @property
    def url(self) -> str:
        """The base URL, as the mails' links have it (``PUBLIC_URL``)."""
        return f"http://{self.host}:{self.port}"

    def mails_to(self, address: str) -> list[Mail]:
        """The mails queued for ``address``, oldest first, read from the outbox table."""
        with self.database.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT to_address, subject, text_body, html_body FROM outbox_messages "
                    "WHERE to_address = :address ORDER BY id"
                ),
                {"address": address},
            ).all()
        return [Mail(*row) for row in rows]

    def scalar(self, sql: str, **parameters):
        """One value read from the database, in a transaction of its own."""
        with self.database.connect() as connection:
            return connection.execute(text(sql), parameters).scalar()

    def rows(self, sql: str, **parameters) -> list[tuple]:
        """Rows read from the database, in a transaction of its own."""
        with self.database.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), parameters)]

    def lock_waiters(self) -> int:
        """PostgreSQL only: how many transactions of this database wait for a lock now."""
        return self.scalar(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )

    def log_text(self) -> str:
        """What gunicorn and the app wrote: access lines, errors, tracebacks."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def service_environment(database_url: str, folder: Path, port: int, settings: dict) -> dict:
    """What an operator exports for the service: key, database, instance, public URL.

    Rate limits are off unless ``settings`` (``@pytest.mark.live_settings``) turn them
    on: most tests send many requests from one address on purpose.
    """
    instance = folder / "instance"
    instance.mkdir(exist_ok=True)
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTH_SERVICE_", "FLASK_")) and key != "PUBLIC_URL"
    }
    return {
        **inherited,
        "AUTH_SERVICE_SECRET_KEY": SECRET,
        "AUTH_SERVICE_SQLALCHEMY_DATABASE_URI": database_url,
        "AUTH_SERVICE_INSTANCE_PATH": str(instance),
        "AUTH_SERVICE_RATELIMIT_ENABLED": "false",
        "AUTH_SERVICE_MAIL_EVENTS_SECRET": WEBHOOK_SECRET,
        "AUTH_SERVICE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # gunicorn's control socket goes here, not in a home folder shared by every run.
        "XDG_RUNTIME_DIR": str(folder),
        **{f"AUTH_SERVICE_{key}": str(value) for key, value in settings.items()},
    }


def start_gunicorn(
    database_url: str, folder: Path, settings: dict | None = None, port: int | None = None
) -> LiveServer:
    """Start gunicorn with ``WORKERS`` processes of ``THREADS`` threads; wait for /healthz.

    ``port`` is a free one unless given: a test that must name the server's address in
    its settings before it starts (``PUBLIC_URL``) picks it first with ``free_port``.
    """
    port = port or free_port()
    log = folder / "gunicorn.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "auth_service:create_app()",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(WORKERS),
                "--threads",
                str(THREADS),
                "--worker-class",
                "gthread",
                # A process takes no more connections than it has threads: a volley
                # larger than that spreads over both processes instead of queueing in one.
                "--worker-connections",
                str(THREADS),
                "--graceful-timeout",
                "5",
                # Every request comes on its own connection ("Connection: close").
                "--keep-alive",
                "0",
                "--access-logfile",
                "-",
                # The worker's pid on every line: which processes took part in a race.
                "--access-logformat",
                'access pid=%(p)s "%(r)s" %(s)s %(M)sms',
                "--error-logfile",
                "-",
            ],
            env=service_environment(database_url, folder, port, settings or {}),
            # gunicorn imports the app from its working folder: the tree of these tests.
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return _healthy(LiveServer("127.0.0.1", port, process, log, create_engine(database_url)))


def start_serve(
    database_url: str,
    folder: Path,
    settings: dict | None = None,
    *,
    workers: int = WORKERS,
    environment: dict | None = None,
) -> LiveServer:
    """Start ``auth-service serve`` (production's command: JSON logs, metrics) with
    ``workers`` processes; wait for /healthz. Its stdout and stderr go to one log."""
    port = free_port()
    log = folder / "serve.log"
    command = Path(sys.executable).parent / "auth-service"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(command), "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            env={
                **service_environment(database_url, folder, port, settings or {}),
                **(environment or {}),
            },
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return _healthy(LiveServer("127.0.0.1", port, process, log, create_engine(database_url)))


def _healthy(server: LiveServer) -> LiveServer:
    """``server`` once it answers /healthz; stopped, and the error raised, if never."""
    try:
        _wait_for_health(server)
    except BaseException:
        stop_gunicorn(server)
        raise
    return server


def _wait_for_health(server: LiveServer) -> None:
    """Return once /healthz answers 200; fail with the log if gunicorn never does."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise AssertionError(
                f"gunicorn exited with status {server.process.returncode}:\n{server.log_text()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # not listening yet, or the app not loaded: wait
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"gunicorn did not answer in {START_TIMEOUT} s:\n{server.log_text()}"
            )
        time.sleep(0.1)


def stop_gunicorn(server: LiveServer) -> None:
    """Stop gunicorn and close the test's connections.

    Every request has been answered by then, so gunicorn's quick shutdown (SIGINT) loses
    nothing and saves the graceful one's second.
    """
    stop_process(server.process, signal.SIGINT)
    # The database fixture empties PostgreSQL next: no connection of ours may hold it.
    server.database.dispose()


@pytest.fixture
def live_server(database_url, tmp_path, request) -> Iterator[LiveServer]:
    """The app under gunicorn on the test's database; its log is shown if the test fails."""
    failed_before = request.session.testsfailed
    marker = request.node.get_closest_marker("live_settings")
    server = start_gunicorn(database_url, tmp_path, marker.kwargs if marker else None)
    yield server
    stop_gunicorn(server)
    if request.session.testsfailed > failed_before:
        # pytest shows what a teardown prints under the report of the failed test.
        print(f"--- gunicorn log ({server.log}) ---\n{server.log_text()}")


# --- Browsers -----------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP response: status, headers, body as text."""

    status: int
    headers: http.client.HTTPMessage
    body: str


@dataclass
class Prepared:
    """The bytes of one request, written by hand, and the browser that sends it."""

    browser: Browser
    request: urllib.request.Request
    data: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand redirects back to the test instead of following them."""

    def redirect_request(self, *args, **kwargs):
        """Follow nothing."""
        return None


@dataclass
class Browser:
    """An HTTP client with its own cookie jar: the session, the attempt cookie, the rest.

    Pages are asked for in English so that tests can read them.
    """

    server: LiveServer
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self):
        """Build an opener that keeps cookies and follows no redirect."""
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect
        )

    def _request(
        self, method: str, path: str, form: dict | None, json_body: object = None
    ) -> urllib.request.Request:
        """A request of this browser, with its body if it sends a form or JSON."""
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        if json_body is not None:
            body = json.dumps(json_body).encode()
        request = urllib.request.Request(self.server.url + path, data=body, method=method)
        request.add_header("Accept-Language", "en")
        if json_body is not None:
            request.add_header("Content-Type", "application/json")
        elif body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        return request

    def get(self, path: str) -> Reply:
        """GET ``path`` now, on its own."""
        return self._send(self._request("GET", path, None))

    def post(self, path: str, form: dict) -> Reply:
        """POST ``form`` to ``path`` now, on its own."""
        return self._send(self._request("POST", path, form))

    def _send(self, request: urllib.request.Request) -> Reply:
        """Send one request with this browser's cookies; keep the cookies it sets."""
        try:
            with self.opener.open(request, timeout=REPLY_TIMEOUT) as response:
                return Reply(response.status, response.headers, response.read().decode())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, error.headers, error.read().decode())

    def post_json(self, path: str, body: object) -> Reply:
        """POST ``body`` as JSON to ``path`` now, from the service's own pages (Origin)."""
        request = self._request("POST", path, None, body)
        request.add_header("Origin", self.server.url)
        return self._send(request)

    def csrf_token(self, path: str = "/login") -> str:
        """The CSRF token a page of this browser's session hands to its forms."""
        page = self.get(path)
        match = CSRF_FIELD.search(page.body)
        assert match, f"no CSRF field on {path} ({page.status})"
        return match.group(1)

    def ask_for_link(self, address: str) -> Mail:
        """Ask for a sign-in link for ``address`` and return the mail it queued."""
        before = len(self.server.mails_to(address))
        reply = self.post("/login", {"email": address, "csrf_token": self.csrf_token()})
        assert reply.status == 303, (reply.status, reply.body[:500])
        mails = self.server.mails_to(address)
        assert len(mails) == before + 1, "no mail was queued"
        return mails[-1]

    def sign_in(self, address: str) -> None:
        """Ask for a link and open it in this browser: signed in, with a session."""
        mail = self.ask_for_link(address)
        reply = self.get(f"/login/verify?token={mail.token}")
        assert reply.status == 303, (reply.status, reply.body[:500])

    def is_signed_in(self) -> bool:
        """Whether the account page opens (a signed-out browser is sent to /login)."""
        reply = self.get("/account")
        assert reply.status in (200, 302, 303), reply.status
        return reply.status == 200

    def prepare(
        self,
        method: str,
        path: str,
        form: dict | None = None,
        *,
        json_body: object = None,
        headers: dict[str, str] | None = None,
    ) -> Prepared:
        """Write one request by hand: HTTP/1.1, this browser's cookies, one per connection."""
        request = self._request(method, path, form, json_body)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        self.jar.add_cookie_header(request)
        body = request.data or b""
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.server.host}:{self.server.port}",
            "User-Agent: race-test",
            "Connection: close",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in request.header_items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return Prepared(self, request, head + body)


# --- Releasing requests together -------------------------------------------------------


class Volley:
    """Requests on their own connections, sent but for their last byte, to go together.

    Creating a volley connects and sends everything but the last byte of each request,
    then lets the server reach its waiting point (``SETTLE``); :meth:`release` sends
    every last byte in one loop; :meth:`replies` reads the answers. See the module
    docstring for why the requests then start together on every run.
    """

    def __init__(self, prepared: list[Prepared]):
        """Connect and send all of each request but its last byte."""
        self.prepared = prepared
        self.sockets: list[socket.socket] = []
        try:
            for item in prepared:
                server = item.browser.server
                connection = socket.create_connection(
                    (server.host, server.port), timeout=REPLY_TIMEOUT
                )
                # The last byte must leave at once, not wait behind Nagle's algorithm.
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sockets.append(connection)
                connection.sendall(item.data[:-1])
        except BaseException:
            self.close()
            raise
        time.sleep(SETTLE)

    def __enter__(self) -> Volley:
        """Use as a context manager: the connections are closed on the way out."""
        return self

    def __exit__(self, *exc_info) -> None:
        """Close every connection."""
        self.close()

    def close(self) -> None:
        """Close every connection (closing twice is harmless)."""
        for connection in self.sockets:
            connection.close()

    def release(self) -> None:
        """Send every last byte, one ``send`` per connection, as close together as can be."""
        for connection, item in zip(self.sockets, self.prepared, strict=True):
            connection.send(item.data[-1:])

    def answered(self) -> bool:
        """Whether an answer has begun to arrive on any connection (without waiting)."""
        with selectors.DefaultSelector() as selector:
            for connection in self.sockets:
                selector.register(connection, selectors.EVENT_READ)
            return bool(selector.select(0))

    def replies(self) -> list[Reply]:
        """Read every answer, in the order of the requests; browsers keep their cookies."""
        raw = _read_all(self.sockets)
        replies = []
        for item, data in zip(self.prepared, raw, strict=True):
            response = _parse(data)
            item.browser.jar.extract_cookies(response, item.request)
            replies.append(Reply(response.status, response.msg, response.read().decode()))
        return replies


def release_together(prepared: list[Prepared]) -> list[Reply]:
    """Send every request at the same instant; return the replies in the same order."""
    with Volley(prepared) as volley:
        volley.release()
        return volley.replies()


def _read_all(sockets: list[socket.socket]) -> list[bytes]:
    """Read every connection to its end at once, so that no server thread waits on us."""
    received = {connection: bytearray() for connection in sockets}
    selector = selectors.DefaultSelector()
    for connection in sockets:
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    deadline = time.monotonic() + REPLY_TIMEOUT
    try:
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                missing = len(selector.get_map())
                raise AssertionError(f"{missing} replies did not end in {REPLY_TIMEOUT} s")
            for key, _ in selector.select(left):
                chunk = key.fileobj.recv(65536)
                if chunk:
                    received[key.fileobj] += chunk
                else:  # "Connection: close": the reply is complete
                    selector.unregister(key.fileobj)
                    # Close at once, as a browser does: gunicorn waits for our side to
                    # close each connection before it takes the next one.
                    key.fileobj.close()
    finally:
        selector.close()
    return [bytes(received[connection]) for connection in sockets]


class _Recorded:
    """Bytes received on a socket, read back by ``http.client`` as if from the socket."""

    def __init__(self, data: bytes):
        """Keep the bytes."""
        self.data = data

    def makefile(self, mode: str):
        """The bytes as a file."""
        return io.BytesIO(self.data)


def _parse(data: bytes) -> http.client.HTTPResponse:
    """An HTTP response parsed from the bytes of a closed connection."""
    assert data, "the server closed a connection without replying"
    response = http.client.HTTPResponse(_Recorded(data))  # type: ignore[arg-type]
    response.begin()
    return response


def wait_until(condition, what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it is true; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s")
        time.sleep(0.01)
