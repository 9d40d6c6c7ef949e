"""Link and code verification with 1,000 and with 1,000,000 readers and attempts, on PostgreSQL.

Starts a PostgreSQL server of its own on 127.0.0.1 (Debian's binaries, as the tests do),
or uses the one ``--database-url`` names, and makes one database per size
(``--sizes``), migrated, then filled: as many readers, sign-in attempts (used, expired,
dead after wrong codes, a few still open, spread over 90 days) and sign-in mails in the
outbox as the size says, with the sessions, sign-in records, newsletter consents and
rate-limit counters such readers leave. Then VACUUM ANALYZE, as autovacuum would.

Then ``-n`` readers sign in by link and ``-n`` by code on each database, each from a
fresh browser through the service's own requests: ``POST /login``, the link and code
read from the outbox, then ``GET /login/verify?token=…`` or ``POST /login/code``. Each
request is timed alone, and the time it spent in SQL beside it. The sizes take turns,
in ``--rounds`` rounds, so that the ratio compares them under the same load (this
machine is shared and noisy). Rate limits are off for those (``RATELIMIT_ENABLED=False``);
a shorter pass with them on, at allowances nobody reaches, times the same requests with
the limits' own queries and the hourly mail ceiling's count.

Every SQL statement those requests send is captured; at the largest size each distinct
one is shown with ``EXPLAIN (ANALYZE, BUFFERS)`` on the parameters it last ran with
(``INSERT``: ``EXPLAIN`` only; nothing is kept: each runs in a transaction rolled back),
and a sequential scan of a big table, or an index scan that throws most rows away, is
flagged. It only prints figures.

    python bench/verify_scale.py
    python bench/verify_scale.py --sizes 1000,1000000 -n 300 --rounds 50
    python bench/verify_scale.py --database-url postgresql+psycopg://user@host/postgres

With ``--database-url`` the role must be allowed to create databases: it makes
``<database>_<size>`` beside the one named, and drops them at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from flask_migrate import upgrade  # noqa: E402
from mail_latency import percentile  # noqa: E402
from sqlalchemy import create_engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from auth_service import create_app  # noqa: E402
from auth_service.extensions import db  # noqa: E402
from auth_service.mail.outbox import REMOVED  # noqa: E402

SECRET = "bench-secret-key-that-is-long-enough-0123456789"
WARM_UP = 10  # sign-ins of each kind per app before the timed ones, not counted
BIG_TABLE = 10_000  # rows: a sequential scan of a table this big is flagged
THROWN_AWAY = 1_000  # rows an index scan reads and drops before it is flagged
# Allowances no bench reaches: the limits run their queries and never refuse.
GENEROUS_LIMITS = {
    "LOGIN_LIMIT_PER_ADDRESS_AND_NETWORK": "100000 per minute",
    "LOGIN_LIMIT_PER_ADDRESS": "100000 per minute",
    "LOGIN_LIMIT_RESENDS_PER_CHAIN": "100000 per day",
    "LOGIN_LIMIT_PER_IP": "1000000 per minute",
    "CHECK_LIMIT_PER_IP": "1000000 per minute",
}
LINK = "GET /login/verify"
CODE = "POST /login/code"
ASK = "POST /login"
TOKEN = re.compile(r"/login/verify\?token=([A-Za-z0-9_.\-]+)")
CODE_LINE = re.compile(r"^\s*(\d{6})\s*$", re.MULTILINE)
EXPLAINABLE = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")

# Rows numbered 1 to :last in an empty database. Times are naive UTC, as the service
# stores them; random() is seeded, so each run fills alike.
NOW = "(now() AT TIME ZONE 'UTC')"
SERIES = "generate_series(1, CAST(:last AS bigint)) AS n"
FILL = {
    "readers": f"""
        INSERT INTO readers (email, public_id, locale, created_at, last_sign_in_at, is_staff)
        SELECT 'reader' || n || '@example.com', substr(md5('public' || n), 1, 22),
               CASE WHEN n % 5 = 0 THEN 'en' ELSE 'fr' END,
               moment - interval '1 day' * age, moment - interval '1 day' * age * seen, false
        FROM (SELECT n, {NOW} AS moment, random() * 730 AS age, random() AS seen
              FROM {SERIES}) AS drawn""",
    # Six readers in ten signed in within the session lifetime (30 days); expired
    # sessions do not pile up: every sign-in deletes them.
    "reader_sessions": f"""
        INSERT INTO reader_sessions (key_hash, reader_id, created_at, user_agent, network)
        SELECT encode(sha256(convert_to('session' || id, 'UTF8')), 'hex'), id,
               {NOW} - random() * interval '29 days', 'Mozilla/5.0 (bench)', '192.0.2.0/24'
        FROM readers WHERE id % 5 < 3""",
    "sign_in_events": """
        INSERT INTO sign_in_events (reader_id, at, method, user_agent, network)
        SELECT id, last_sign_in_at, CASE WHEN id % 3 = 0 THEN 'code' ELSE 'link' END,
               'Mozilla/5.0 (bench)', '192.0.2.0/24'
        FROM readers""",
    # Three readers in ten consented to the daily newsletter; one of those withdrew.
    "newsletter_consents": """
        INSERT INTO newsletter_consents
            (reader_id, newsletter_id, consented_at, wording, source, withdrawn_at)
        SELECT id, (SELECT id FROM newsletters WHERE slug = 'daily'), created_at,
               'Send me the daily newsletter', '/',
               CASE WHEN id % 10 = 2 THEN last_sign_in_at END
        FROM readers WHERE id % 10 < 3""",
    # Seven in ten used within minutes, two left to expire, one dead after five wrong
    # codes; one in seven for an address that never became a reader. The few created
    # in the last quarter of an hour are still open.
    "login_attempts": f"""
        INSERT INTO login_attempts
            (id, email, token_hash, code_hash, tries_left, created_at, expires_at, used_at,
             next_url, locale, newsletter, newsletter_wording, chain_id)
        SELECT md5('attempt' || n),
               CASE WHEN n % 7 = 0 THEN 'nobody' || n || '@example.net'
                    ELSE 'reader' || (1 + n * 7919 % :last) || '@example.com' END,
               encode(sha256(convert_to('token' || n, 'UTF8')), 'hex'),
               encode(sha256(convert_to('code' || n, 'UTF8')), 'hex'),
               CASE WHEN n % 10 = 9 THEN 0 ELSE 5 - n % 3 END,
               created, created + interval '15 minutes',
               CASE WHEN n % 10 < 7 THEN created + spent * interval '10 minutes' END,
               '/', 'fr', n % 4 = 0, NULL, md5('attempt' || n)
        FROM (SELECT n, {NOW} - random() * interval '90 days' AS created, random() AS spent
              FROM {SERIES}) AS drawn""",
    # Their mails, delivered, the link and code already removed, as the worker leaves them.
    "outbox_messages": f"""
        INSERT INTO outbox_messages
            (message_id, to_address, subject, text_body, html_body, headers, kind,
             created_at, next_attempt_at, attempts, sent_at)
        SELECT '<bench.' || n || '@news.test>',
               'reader' || (1 + n * 7919 % :last) || '@example.com',
               'Your sign-in link for Le Quotidien', :removed, :removed, CAST('{{}}' AS json),
               'signin', created, created, 1, created + interval '2 seconds'
        FROM (SELECT n, {NOW} - random() * interval '90 days' AS created
              FROM {SERIES}) AS drawn""",
    # The windows of the last day: one counter for every twenty sign-ins.
    "rate_limits": """
        INSERT INTO rate_limits (key, hits, expires_at)
        SELECT 'auth-service/bench/' || n, 1, extract(epoch FROM now()) + random() * 86400
        FROM generate_series(1, CAST(:last AS bigint) / 20) AS n""",
}


def fill(engine, size: int) -> None:
    """Put ``size`` rows of each kind in an empty migrated database; VACUUM ANALYZE."""
    print(f"filling {size:,}:", end="", flush=True)
    with engine.begin() as connection:
        connection.execute(text("SELECT setseed(0.42)"))
        values = {"last": size, "removed": REMOVED}
        for table, statement in FILL.items():
            started = time.perf_counter()
            connection.execute(text(statement), values)
            print(f" {table} {time.perf_counter() - started:.1f} s,", end="", flush=True)
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM ANALYZE {', '.join(FILL)}"))
    print(f" vacuum analyze {time.perf_counter() - started:.1f} s")
    with engine.connect() as connection:
        counts = [
            f"{table} {connection.scalar(text(f'SELECT count(*) FROM {table}')):,}"
            for table in FILL
        ]
    print("  rows: " + ", ".join(counts))


class Recorder:
    """What the timed requests send to one database: every statement by its text (the
    requests that sent it, the parameters it last ran with), and for the request
    running now, its statements and the seconds they took."""

    def __init__(self):
        self.label: str | None = None
        self.count = 0
        self.sql = 0.0
        self.elapsed = 0.0
        self.sent_at = 0.0
        self.statements: dict[str, tuple[set[str], object]] = {}

    def listen(self, engine) -> None:
        """Follow every statement ``engine`` sends."""
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)

    def before(self, connection, cursor, statement, parameters, context, executemany):
        """SQLAlchemy's ``before_cursor_execute`` listener."""
        if self.label is None:
            return
        self.count += 1
        if executemany and parameters:
            parameters = parameters[0]
        labels, _ = self.statements.get(statement, (set(), None))
        self.statements[statement] = (labels | {self.label}, parameters)
        self.sent_at = time.perf_counter()

    def after(self, connection, cursor, statement, parameters, context, executemany):
        """SQLAlchemy's ``after_cursor_execute`` listener."""
        if self.label is not None:
            self.sql += time.perf_counter() - self.sent_at

    @contextmanager
    def request(self, label: str):
        """Record and time what runs inside as one request called ``label``."""
        self.label, self.count, self.sql = label, 0, 0.0
        started = time.perf_counter()
        try:
            yield
        finally:
            self.elapsed = time.perf_counter() - started
            self.label = None

    def taken(self) -> tuple[float, int, float]:
        """The last request's seconds, statements, and seconds in SQL."""
        return self.elapsed, self.count, self.sql


def build_app(url: str, *, limits: bool):
    """The service on ``url``, with rate limits on at generous allowances, or off.

    Flask-Limiter keeps its settings on the one shared extension: apps that serve
    requests side by side must be built with the same ``limits``.
    """
    config = {
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": url,
        "PUBLIC_URL": "http://news.test",
        "RATELIMIT_ENABLED": limits,
        "WTF_CSRF_ENABLED": False,
        "TESTING": True,
    }
    return create_app({**config, **(GENEROUS_LIMITS if limits else {})})


class Side:
    """One size's database, seen by the service (an app) and by the bench (an engine)."""

    def __init__(self, size: int, url: str, limits: bool, recorder: Recorder):
        self.size, self.recorder = size, recorder
        self.app = build_app(url, limits=limits)
        with self.app.app_context():
            self.app_engine = db.engine
        recorder.listen(self.app_engine)
        self.engine = create_engine(url)
        self.draw = random.Random(size * 2 + limits)
        self.timings: dict[str, list[tuple[float, int, float]]] = {LINK: [], CODE: [], ASK: []}
        self.asked = 0

    def newest_mail(self) -> tuple[str, str]:
        """The token and the code of the newest mail in the outbox."""
        with self.engine.connect() as connection:
            body = connection.scalar(
                text("SELECT text_body FROM outbox_messages ORDER BY id DESC LIMIT 1")
            )
        return TOKEN.search(body).group(1), CODE_LINE.search(body).group(1)

    def sign_in(self, by: str, *, counted: bool = True) -> None:
        """A reader drawn among those filled asks for a link from a fresh browser, then
        opens it (``LINK``) or types its code (``CODE``) there; every third asks for
        the newsletter too."""
        address = f"reader{self.draw.randint(1, self.size)}@example.com"
        self.asked += 1
        asked = {"email": address, "next": "/"}
        if self.asked % 3 == 0:
            asked["newsletter"] = "y"
        browser = self.app.test_client()
        with self.recorder.request(ASK):
            answer = browser.post("/login", data=asked)
        check(answer, ASK, address)
        timings = {ASK: self.recorder.taken()}
        token, code = self.newest_mail()
        with self.recorder.request(by):
            if by == LINK:
                answer = browser.get(f"/login/verify?token={token}")
            else:
                answer = browser.post("/login/code", data={"code": code})
        check(answer, by, address)
        timings[by] = self.recorder.taken()
        for label, taken in timings.items() if counted else ():
            self.timings[label].append(taken)

    def close(self) -> None:
        """Stop following the app's statements; close both engines' connections."""
        event.remove(self.app_engine, "before_cursor_execute", self.recorder.before)
        event.remove(self.app_engine, "after_cursor_execute", self.recorder.after)
        self.app_engine.dispose()
        self.engine.dispose()


def check(answer, label: str, address: str) -> None:
    """Stop the bench at an answer that is not the redirect of a success."""
    if answer.status_code != 303:
        raise SystemExit(f"{label} answered {answer.status_code} for {address}")


def measure(urls: dict, recorders: dict, count: int, rounds: int, limits: bool) -> dict:
    """``count`` sign-ins by link and ``count`` by code on each database, after a
    warm-up, the databases taking turns in ``rounds`` rounds (in turn forwards and
    backwards, so that neither always goes first). The timings of each size."""
    sides = [Side(size, url, limits, recorders[size]) for size, url in urls.items()]
    try:
        for side in sides:
            for number in range(2 * WARM_UP):
                side.sign_in(LINK if number % 2 == 0 else CODE, counted=False)
        for round_number in range(rounds):
            turn = count // rounds + (round_number < count % rounds)
            for side in sides if round_number % 2 == 0 else reversed(sides):
                for number in range(2 * turn):
                    side.sign_in(LINK if number % 2 == 0 else CODE)
    finally:
        for side in sides:
            side.close()
    return {side.size: side.timings for side in sides}


def print_figures(figures: dict, sizes: list[int]) -> None:
    """p50 and p95 of each request at each size, and the largest size against the smallest."""
    print("\nms per request, each alone (sql: the part spent in cursor.execute); PostgreSQL")
    header = (
        f"{'request':<30} {'size':>10} {'n':>5} {'p50':>7} {'p95':>7} {'sql p50':>8} {'stmts':>6}"
    )
    print(header)
    print("-" * len(header))
    for limits in (False, True):
        for label in (LINK, CODE, ASK):
            name = f"{label}{' (limits on)' if limits else ''}"
            for size in sizes:
                timings = figures[limits][size][label]
                seconds = [elapsed for elapsed, _, _ in timings]
                statements = statistics.median(number for _, number, _ in timings)
                sql = percentile([spent for _, _, spent in timings], 0.5)
                p50, p95 = percentile(seconds, 0.5), percentile(seconds, 0.95)
                print(
                    f"{name:<30} {size:>10,} {len(seconds):>5} {p50 * 1000:>7.2f} "
                    f"{p95 * 1000:>7.2f} {sql * 1000:>8.2f} {statements:>6g}"
                )
                name = ""
            print_ratio(figures[limits], sizes, label)


def print_ratio(figures: dict, sizes: list[int], label: str) -> None:
    """The largest size's p50 and p95 over the smallest's (the issue's target: under 1.2)."""
    if len(sizes) < 2:
        return
    small, large = (figures[size][label] for size in (sizes[0], sizes[-1]))
    ratios = [
        percentile([timing[which] for timing in large], q)
        / percentile([timing[which] for timing in small], q)
        for which, q in ((0, 0.5), (0, 0.95), (2, 0.5))
    ]
    verdict = "under 1.2" if max(ratios[:2]) < 1.2 else "NOT under 1.2"
    print(
        f"{'':<30} {sizes[-1]:,}/{sizes[0]:,}: p50 {ratios[0]:.2f}, p95 {ratios[1]:.2f}"
        f" ({verdict}); sql p50 {ratios[2]:.2f}"
    )


def explain(engine, statement: str, parameters) -> list[str]:
    """The plan of one statement, run (but for an INSERT) in a transaction rolled back."""
    analyse = not statement.lstrip().upper().startswith("INSERT")
    options = "ANALYZE, BUFFERS" if analyse else "COSTS"
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(f"EXPLAIN ({options}) {statement}", parameters)
        return [line for (line,) in cursor.fetchall()]
    except Exception as error:  # a plan that cannot be had is shown, not fatal
        return [f"(no plan: {type(error).__name__}: {error})"]
    finally:
        connection.rollback()
        connection.close()


def flags_of(plan: list[str], rows: dict[str, float]) -> list[str]:
    """What in a plan reads a big table without an index, or reads rows to drop them."""
    flags = []
    for line in plan:
        scanned = re.search(r"Seq Scan on (\w+)", line)
        if scanned and rows.get(scanned.group(1), 0) >= BIG_TABLE:
            table = scanned.group(1)
            flags.append(f"Seq Scan on {table} ({rows[table]:,.0f} rows)")
        dropped = re.search(r"Rows Removed by Filter: (\d+)", line)
        if dropped and int(dropped.group(1)) >= THROWN_AWAY:
            flags.append(f"{int(dropped.group(1)):,} rows read and removed by a filter")
    return flags


def print_plans(url: str, statements: dict, size: int) -> list[tuple[int, str, list[str]]]:
    """Every distinct statement with its plan at ``size``; the flagged ones."""
    print(f"\nplans at {size:,}: every distinct statement the requests above sent")
    engine = create_engine(url)
    with engine.connect() as connection:
        query = text("SELECT relname, reltuples FROM pg_class WHERE relkind = 'r'")
        rows = dict(connection.execute(query).all())
    flagged = []
    explainable = [
        (statement, labels, parameters)
        for statement, (labels, parameters) in statements.items()
        if statement.lstrip().upper().startswith(EXPLAINABLE)
    ]
    for number, (statement, labels, parameters) in enumerate(explainable, start=1):
        shown = " ".join(statement.split())
        print(f"\n[{number}] {', '.join(sorted(labels))}")
        print(f"    {shown if len(shown) <= 400 else shown[:400] + ' …'}")
        plan = explain(engine, statement, parameters)
        print("\n".join(f"      {line}" for line in plan))
        flags = flags_of(plan, rows)
        for flag in flags:
            print(f"    !! {flag}")
        if flags:
            flagged.append((number, shown, flags))
    engine.dispose()
    return flagged


def create_databases(admin_url: str, sizes: list[int]) -> dict[int, str]:
    """A new database per size on the server of ``admin_url``, migrated; their URLs."""
    base = make_url(admin_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    urls = {}
    with admin.connect() as connection:
        for size in sizes:
            name = f"{base.database}_{size}"
            connection.execute(text(f'CREATE DATABASE "{name}"'))
            urls[size] = base.set(database=name).render_as_string(hide_password=False)
    admin.dispose()
    for url in urls.values():
        app = build_app(url, limits=False)
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
            db.engine.dispose()
    return urls


def drop_databases(admin_url: str, urls: dict[int, str]) -> None:
    """Drop the databases :func:`create_databases` made."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for url in urls.values():
            connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}"'))
    admin.dispose()


def run(urls: dict[int, str], count: int, rounds: int) -> None:
    """Fill, measure side by side, explain at the largest size; print it all."""
    sizes = sorted(urls)
    for size, url in urls.items():
        engine = create_engine(url)
        fill(engine, size)
        engine.dispose()
    recorders = {size: Recorder() for size in sizes}
    figures = {
        False: measure(urls, recorders, count, rounds, limits=False),
        True: measure(urls, recorders, max(20, count // 5), rounds, limits=True),
    }
    print_figures(figures, sizes)
    print(f"(load average of this machine, {os.cpu_count()} cores: {os.getloadavg()[0]:.1f})")
    flagged = print_plans(urls[sizes[-1]], recorders[sizes[-1]].statements, sizes[-1])
    print(f"\nat {sizes[-1]:,}: ", end="")
    if not flagged:
        print("every statement above reads through an index (or a table of a few rows)")
    for number, shown, flags in flagged:
        print(f"\n  [{number}] {'; '.join(flags)}\n      {shown[:200]}")


def start_server():
    """Debian's PostgreSQL on 127.0.0.1 in a folder of its own, as the tests start it."""
    from support.postgres import start_postgres

    server = start_postgres("verify_scale")
    return server, server.url("verify_scale")


def main() -> None:
    """Parse the options, start a server unless one is given, run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,1000000", help="readers and attempts")
    parser.add_argument("-n", "--count", type=int, default=300, help="sign-ins of each kind")
    parser.add_argument("--rounds", type=int, default=50, help="turns the sizes take")
    parser.add_argument("--database-url", help="a PostgreSQL server to make the databases on")
    options = parser.parse_args()
    sizes = sorted({int(size) for size in options.sizes.replace("_", "").split(",")})
    logging.disable(logging.INFO)  # Alembic's and the service's notes: figures only
    instance = tempfile.TemporaryDirectory(prefix="bench-verify-")
    os.environ["AUTH_SERVICE_INSTANCE_PATH"] = instance.name
    server, admin_url = (None, options.database_url) if options.database_url else start_server()
    began = time.perf_counter()
    urls = {}
    try:
        urls = create_databases(admin_url, sizes)
        run(urls, options.count, options.rounds)
    finally:
        if server is not None:
            server.remove()
        elif urls:
            drop_databases(admin_url, urls)
        instance.cleanup()
    print(f"\ntotal run time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
