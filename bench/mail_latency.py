"""How long a reader waits for the sign-in mail: from the POST to the SMTP server's "250".

Starts an aiosmtpd sink on 127.0.0.1, builds the app on a fresh SQLite database (or the
PostgreSQL one given with ``--database-url``), and for each worker mode signs in N
readers one after the other, timing each mail from the moment the form is posted to the
moment the sink accepts it:

(a) the in-process worker, woken by the request's commit (``auth-service demo``);
(b) a separate worker (``auth-service worker``), LISTENing for NOTIFY on PostgreSQL and
    waiting on its doorbell (a datagram socket) on SQLite, here run in a thread.

It only prints figures; nothing here is a pass or a fail.

    python bench/mail_latency.py
    python bench/mail_latency.py -n 100
    python bench/mail_latency.py --database-url postgresql+psycopg://user@host/db
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.network import free_port

from auth_service import create_app
from auth_service.extensions import db
from auth_service.mail.worker import Worker

ARRIVAL_TIMEOUT = 10.0  # seconds to wait for one mail before counting it lost


class Sink:
    """An aiosmtpd handler that notes when each recipient's mail was accepted."""

    def __init__(self):
        self.arrived: dict[str, float] = {}
        self.condition = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Accept a message and note the time, per recipient."""
        now = time.perf_counter()
        with self.condition:
            for address in envelope.rcpt_tos:
                self.arrived.setdefault(address, now)
            self.condition.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, address: str, timeout: float) -> float | None:
        """When the mail to ``address`` arrived, or ``None`` if it did not in time."""
        with self.condition:
            self.condition.wait_for(lambda: address in self.arrived, timeout)
            return self.arrived.get(address)


def build_app(database_url: str, smtp_port: int, poll_interval: float | None):
    """The service, configured for the benchmark, on a migrated database."""
    from flask_migrate import upgrade

    config = {
        "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_port,
        "PUBLIC_URL": "http://news.test",
        "RATELIMIT_ENABLED": False,
        "WTF_CSRF_ENABLED": False,
    }
    if poll_interval is not None:
        config["OUTBOX_POLL_INTERVAL"] = poll_interval
    app = create_app(config)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    return app


def measure(app, sink: Sink, *, label: str, count: int, in_process: bool) -> dict:
    """Sign in ``count`` readers with one worker running; time each mail."""
    worker = Worker(app, in_process=in_process)
    thread = worker.start_thread()
    client = app.test_client()
    run = f"{int(time.time() * 1000)}-{'inproc' if in_process else 'separate'}"
    latencies, posts, lost = [], [], 0
    try:
        for number in range(count + 1):  # the first one warms up and is not counted
            address = f"bench-{run}-{number}@example.com"
            started = time.perf_counter()
            response = client.post("/login", data={"email": address, "next": "/"})
            answered = time.perf_counter()
            if response.status_code != 303:
                raise SystemExit(f"POST /login answered {response.status_code} for {address}")
            arrived = sink.wait_for(address, ARRIVAL_TIMEOUT)
            if number == 0:
                continue
            posts.append(answered - started)
            if arrived is None:
                lost += 1
            else:
                latencies.append(arrived - started)
    finally:
        worker.stop()
        thread.join(40)
        app.extensions.pop("outbox_wakeup", None)
    return {
        "label": label,
        "count": count,
        "lost": lost,
        "stopped": not thread.is_alive(),
        "posts": posts,
        "latencies": latencies,
    }


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def print_table(results: list[dict], database: str) -> None:
    """The figures, in milliseconds."""
    print(f"\nSign-in mail latency, POST /login -> SMTP 250, database: {database}")
    header = (
        f"{'worker':<34} {'n':>4} {'POST med':>9} {'median':>8} {'p95':>8} {'p99':>8} "
        f"{'max':>8}  lost"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        values = result["latencies"]
        if values:
            figures = [
                statistics.median(result["posts"]),
                statistics.median(values),
                percentile(values, 0.95),
                percentile(values, 0.99),
                max(values),
            ]
            cells = " ".join(f"{value * 1000:>8.1f}" for value in figures)
            cells = " " + cells
        else:
            cells = f"{'-':>9} {'-':>8} {'-':>8} {'-':>8} {'-':>8}"
        note = "" if result["stopped"] else "  (worker did not stop within 40 s)"
        print(f"{result['label']:<34} {result['count']:>4}{cells}  {result['lost']:>4}{note}")
    print("times in ms; POST med = how long the reader's request itself took")


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run both modes, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", "--count", type=int, default=100, help="sign-ins per worker mode (default: 100)"
    )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL of a PostgreSQL database to use (it is "
        "migrated; default: a temporary SQLite file)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="OUTBOX_POLL_INTERVAL for the separate worker on SQLite (default: the service's own)",
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    with tempfile.TemporaryDirectory(prefix="mail-latency-") as folder:
        database_url = options.database_url or f"sqlite:///{folder}/bench.sqlite3"
        app = build_app(database_url, controller.port, options.poll_interval)
        dialect = database_url.split(":", 1)[0]
        separate = "LISTEN/NOTIFY" if dialect.startswith("postgresql") else "woken by its doorbell"
        began = time.perf_counter()
        try:
            results = [
                measure(
                    app,
                    sink,
                    label="(a) in-process, woken on commit",
                    count=options.count,
                    in_process=True,
                ),
                measure(
                    app,
                    sink,
                    label=f"(b) separate, {separate}",
                    count=options.count,
                    in_process=False,
                ),
            ]
        finally:
            controller.stop()
            with app.app_context():
                db.engine.dispose()
    print_table(results, dialect)
    print(f"total run time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
