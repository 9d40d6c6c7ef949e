"""The daily edition at scale: queue it for 100,000 subscribers, deliver it to an SMTP sink.

For each database (a temporary SQLite file, and/or a private PostgreSQL server started
here from Debian's binaries on 127.0.0.1 and removed at the end), in a process of its own
so that its peak memory is its own:

1. setup, not timed: create the app, migrate, import four articles published yesterday,
   insert N readers with an open consent to the daily newsletter (and N/100 suppressed
   addresses of non-readers, so the suppression check has rows to look at) with bulk Core
   inserts; one reader in 1,000 has an accented address (SMTPUTF8);
2. queue, timed: ``queue_edition("daily", yesterday)``, then the same call again (it must
   queue nothing more);
3. deliver, timed: ``deliver_due()`` through the real ``SmtpTransport`` to an aiosmtpd
   sink that only counts. A sample by default, as delivery is much slower than
   queueing: the first 20,000 of the N queued copies (with all N due, as at the start
   of a real send), or what is delivered in 30 s if that comes first. ``claim_due`` is
   wrapped to claim nothing more after that, which ends ``deliver_due``'s loop; nothing
   else is touched. ``--deliver 0`` delivers every queued copy, with no time limit
   unless ``--deliver-seconds`` is given;
4. raw, timed: as many copies of one built message sent to the same sink on one bare
   ``smtplib`` connection: what the sink accepts when nothing else is done. The ratio of
   our rate to this one says whether the sink or our code sets the pace. Steps 3 and 4
   alternate in slices (``--rounds``, 5 by default), so that a machine that gets busier
   or quieter during the run weighs on both alike; the CPU time this process spends per
   copy is printed for both. With ``--dkim``, a 2048-bit RSA key is made in the run's
   temporary folder and a second app, configured alike plus ``DKIM_SELECTOR`` and
   ``DKIM_PRIVATE_KEY_FILE``, delivers too: each round, the unsigned app and the signed
   one each claim and send their own share of the same outbox (the same number of
   copies; which goes first alternates from round to round), then raw sends as many.
   Printed for both: copies/s, CPU per copy, the signed/unsigned ratio of each round and
   their median (``--profile`` profiles each app's first slice). The sink counts the
   messages whose first line is a ``DKIM-Signature`` header, and verifies the first one
   with dkimpy against the key's record: the signed slices must sign them all, the
   unsigned ones none;
5. memory: the same setup on a second, fresh database, and ``queue_edition`` once more
   under tracemalloc. Its peak counts Python's allocations only; tracemalloc makes the
   code it watches several times slower, which is why this pass comes last, on a
   database of its own, and is not the timed one.

The sink runs in a process of its own, as a real mail server would, so it does not
share the interpreter lock with the code it measures. Everything listens on 127.0.0.1.
``ru_maxrss`` is read after each phase: the process's high-water mark, never lowered, so
each figure includes the phases before it (setup included).

It only prints figures; nothing here is a pass or a fail.

    python bench/newsletter.py
    python bench/newsletter.py --database sqlite --subscribers 20000 --deliver 0
    python bench/newsletter.py --profile        # cProfile of the queue and delivery
    python bench/newsletter.py --dkim --rounds 12   # signed against unsigned delivery
    python bench/newsletter.py --dkim --sink-delay-ms 1   # ... to a relay 1 ms away
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import logging
import multiprocessing
import os
import pstats
import resource
import smtplib
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.network import free_port  # noqa: E402

SECRET = "bench-secret-key-that-is-long-enough-0123456789"
CHUNK = 5000  # rows per bulk insert during setup
RAW_SENDER = "bench@news.test"
DKIM_SELECTOR = "s2026"
DKIM_KEY_BITS = 2048  # the usual size; signing time grows with it
SIDES = {"": "unsigned", "signed_": "signed"}  # prefixes of the two apps' figures
VERDICTS = {-1: "none seen", 0: "FAILS", 1: "passes"}  # the sink's check of a signature
# What deliver_slice measures, summed per app.
SLICE_FIGURES = ("sent", "retried", "failed", "deliver_s", "deliver_cpu", "sink_ours", "sink_dkim")


def maxrss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux counts in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def say(text: str) -> None:
    """A progress line, at once."""
    print(text, flush=True)


# --- The SMTP sink, in a process of its own ---------------------------------------------


class CountingHandler:
    """An aiosmtpd handler that accepts everything and only counts: every message, and
    those whose first line is a ``DKIM-Signature`` header.

    With the signing key's DNS ``record``, the first signed message is also verified by
    dkimpy (1 in ``verified`` if it passes, 0 if not; -1 until then).
    """

    def __init__(self, counter, signed, verified, record: str | None, delay: float = 0.0):
        self.counter, self.signed, self.verified = counter, signed, verified
        self.record = record
        self.delay = delay  # seconds before each message's answer: a relay over a network

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Count one message and accept it (after ``delay``, idle meanwhile)."""
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.counter.get_lock():
            self.counter.value += 1
        if envelope.original_content.startswith(b"DKIM-Signature:"):
            with self.signed.get_lock():
                self.signed.value += 1
            if self.record and self.verified.value < 0:
                self.verified.value = int(self.verify(envelope.original_content))
        return "250 OK"

    def verify(self, content: bytes) -> bool:
        """Whether dkimpy finds ``content``'s signature good, the record as its DNS."""
        import dkim

        record = self.record.encode("ascii")
        return dkim.verify(content, dnsfunc=lambda _name, timeout=5: record)


def _serve_sink(port: int, counters: tuple, record: str | None, delay: float, ready, stop) -> None:
    """The sink process: listen on 127.0.0.1:``port`` until told to stop."""
    from aiosmtpd.controller import Controller

    logging.basicConfig(level=logging.ERROR)
    handler = CountingHandler(*counters, record, delay)
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Sink:
    """Start and stop the sink process; read how many messages it accepted, and signed.

    ``record``: the DNS record of the DKIM key, to verify the first signed message.
    """

    def __init__(self, context, record: str | None = None, delay: float = 0.0):
        self.port = free_port()
        self.counter, self.signed = context.Value("q", 0), context.Value("q", 0)
        self.verified = context.Value("b", -1)
        self.ready, self.stop_event = context.Event(), context.Event()
        self.process = context.Process(
            target=_serve_sink,
            args=(
                self.port,
                (self.counter, self.signed, self.verified),
                record,
                delay,
                self.ready,
                self.stop_event,
            ),
            name="smtp-sink",
            daemon=True,
        )

    def __enter__(self) -> Sink:
        self.process.start()
        if not self.ready.wait(30):
            self.process.kill()
            raise SystemExit("the SMTP sink did not start within 30 s")
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    @property
    def accepted(self) -> int:
        """Messages accepted so far."""
        return self.counter.value

    @property
    def accepted_signed(self) -> int:
        """Messages accepted so far with a ``DKIM-Signature`` header first."""
        return self.signed.value


# --- A private PostgreSQL server --------------------------------------------------------


@contextmanager
def private_postgres():
    """A PostgreSQL server of our own on 127.0.0.1 (the tests' way to start one), removed
    after.

    PostgreSQL's default settings (fsync and synchronous commit on), unlike the test
    suite's server: the delivery commits once per message and that cost is real.
    """
    if not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        raise SystemExit(
            "PostgreSQL is not installed (apt-get install postgresql); "
            "or run with --database sqlite"
        )
    from sqlalchemy import create_engine, text
    from support.postgres import start_postgres

    server = start_postgres("bench", fsync=True)
    try:
        admin = create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("CREATE DATABASE bench_trace"))
            version = connection.execute(text("SHOW server_version")).scalar()
        admin.dispose()
        yield (
            {"main": server.url("bench"), "trace": server.url("bench_trace")},
            f"PostgreSQL {version.split()[0]}",
        )
    finally:
        server.remove()


# --- One database, in a process of its own ----------------------------------------------


def bench_articles(day: date, zone: ZoneInfo) -> list[dict]:
    """The demo articles, moved to ``day`` (keeping their time of day)."""
    from auth_service.cli import demo_articles

    articles = []
    for number, article in enumerate(demo_articles()):
        moment = datetime.fromisoformat(article["published_at"]).astimezone(zone)
        moved = datetime.combine(day, moment.timetz())
        articles.append(
            {
                **article,
                "slug": f"bench-{number}-{article['slug']}"[:200],
                "published_at": moved.isoformat(),
            }
        )
    return articles


def address_of(number: int) -> str:
    """Reader ``number``'s address: one in 1,000 has an accented local part."""
    if number % 1000 == 0:
        return f"lecteur.{number}.é@exemple.fr"
    return f"reader{number:06d}@example.com"


def create_subscribers(count: int) -> None:
    """``count`` readers subscribed to the daily edition, plus ``count // 100``
    suppressed addresses of people who are not readers: bulk Core inserts, one commit.
    """
    from sqlalchemy import insert, select, text

    from auth_service.extensions import db
    from auth_service.models import Newsletter, NewsletterConsent, Reader, Suppression, utcnow

    letter_id = db.session.scalar(select(Newsletter.id).where(Newsletter.slug == "daily"))
    now = utcnow()
    wording = "Recevoir gratuitement chaque matin la Une du Jour."
    for first in range(1, count + 1, CHUNK):
        numbers = range(first, min(first + CHUNK, count + 1))
        db.session.execute(
            insert(Reader.__table__),
            [
                {
                    "id": number,
                    "email": address_of(number),
                    "alternative_id": f"bench-{number}",
                    "locale": "en" if number % 5 == 0 else "fr",
                    "created_at": now,
                    "last_sign_in_at": now,
                    "is_staff": False,
                }
                for number in numbers
            ],
        )
        db.session.execute(
            insert(NewsletterConsent.__table__),
            [
                {
                    "reader_id": number,
                    "newsletter_id": letter_id,
                    "consented_at": now,
                    "wording": wording,
                    "source": "http://news.test/login",
                    "withdrawn_at": None,
                }
                for number in numbers
            ],
        )
    suppressed = [
        {
            "email": f"bounced{number}@example.net",
            "event": "bounce",
            "reported_at": now,
            "recorded_at": now,
        }
        for number in range(count // 100)
    ]
    if suppressed:  # none under 100 readers, and an empty insert is an error
        db.session.execute(insert(Suppression.__table__), suppressed)
    if db.session.get_bind().dialect.name == "postgresql":
        for table in ("readers", "newsletter_consents", "suppressions"):
            db.session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {table}))"
                )
            )
        db.session.commit()
        db.session.execute(text("ANALYZE"))
    db.session.commit()


@contextmanager
def claims_capped(count: int, seconds: float):
    """Make ``deliver_due`` stop once ``count`` messages are claimed or ``seconds`` passed.

    ``deliver_due`` loops until ``claim_due`` finds nothing. The real ``claim_due`` is
    called each time, asked for no more than are still wanted; once enough are claimed,
    or the time is up, it returns nothing and the loop ends with every claimed message
    delivered. Nothing else of the delivery path is touched.
    """
    from auth_service.mail import worker

    real = worker.claim_due
    left = count
    deadline = time.perf_counter() + seconds

    def capped(limit, *, now=None):
        nonlocal left
        if left <= 0 or time.perf_counter() > deadline:
            return []
        claimed = real(min(limit, left), now=now)
        left -= len(claimed)
        return claimed

    worker.claim_due = capped
    try:
        yield
    finally:
        worker.claim_due = real


@contextmanager
def profiled(enabled: bool, title: str, sink: list):
    """Run the block under cProfile when ``enabled``; keep the top lines in ``sink``."""
    if not enabled:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            stats.sort_stats(order).print_stats(18)
            lines = out.getvalue().splitlines()
            start = next(i for i, line in enumerate(lines) if "ncalls" in line)
            sink.append(f"--- {title}, by {order} ---\n" + "\n".join(lines[start - 2 :]))


def build_app(url: str, smtp_port: int, dkim_key_file: str | None = None):
    """The service, configured for the bench, on ``url``; signing with the key in
    ``dkim_key_file``, if given."""
    from auth_service import create_app

    signing = {"DKIM_SELECTOR": DKIM_SELECTOR, "DKIM_PRIVATE_KEY_FILE": dkim_key_file}
    return create_app(
        {
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": url,
            "PUBLIC_URL": "http://news.test",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_port,
            "RATELIMIT_ENABLED": False,
            **(signing if dkim_key_file else {}),
        }
    )


def write_dkim_key(folder: Path) -> str:
    """A new unencrypted PEM RSA key of ``DKIM_KEY_BITS`` in ``folder``; its path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=DKIM_KEY_BITS)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def set_up(app, count: int) -> date:
    """Migrate, import yesterday's articles, add the subscribers; the edition's day."""
    from flask_migrate import upgrade

    from auth_service.articles.store import import_articles

    upgrade(directory=app.extensions["migrate"].directory)
    zone = ZoneInfo(app.config["BABEL_DEFAULT_TIMEZONE"])
    day = datetime.now(zone).date() - timedelta(days=1)
    import_articles(bench_articles(day, zone))
    create_subscribers(count)
    return day


def deliver_slice(transport, sink, count: int, seconds: float, profiling) -> dict:
    """Deliver the next ``count`` due copies with ``deliver_due``; time and CPU it."""
    from auth_service.mail.worker import deliver_due

    before, signed = sink.accepted, sink.accepted_signed
    with claims_capped(count, seconds), profiling:
        started, cpu = time.perf_counter(), time.process_time()
        delivery = deliver_due(transport)
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    return {
        "sent": delivery.sent,
        "retried": delivery.retried,
        "failed": delivery.failed,
        "deliver_s": elapsed,
        "deliver_cpu": used,
        "sink_ours": sink.accepted - before,
        "sink_dkim": sink.accepted_signed - signed,
    }


def raw_slice(sink, data: bytes, count: int) -> dict:
    """Send ``count`` copies of one built message on one bare connection; time and CPU it."""
    before = sink.accepted
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as host:
        host.ehlo()
        started, cpu = time.perf_counter(), time.process_time()
        for number in range(count):
            host.sendmail(
                RAW_SENDER, [f"raw{number}@example.com"], data, mail_options=["BODY=8BITMIME"]
            )
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    return {"raw_s": elapsed, "raw_cpu": used, "sink_raw": sink.accepted - before}


def deliver_rounds(apps: dict, transport, sink, data: bytes, wanted: int, run: dict):
    """Deliver ``wanted`` due copies in ``--rounds`` alternating slices; the totals, and
    each round's copies/s per app.

    ``apps`` maps a prefix of the figures' names (a key of ``SIDES``) to an app: the
    unsigned one, and with ``--dkim`` the signed one. In each round every app, in an app
    context of its own, claims and sends its share of the same outbox, the same number
    of copies (which app goes first alternates from round to round); then raw sends as
    many. ``run`` holds the options, the database's label and the profiles' list.
    """
    options = run["options"]
    names = [side + name for side in apps for name in SLICE_FIGURES]
    totals = Counter(dict.fromkeys([*names, "raw_s", "raw_cpu", "sink_raw"], 0))
    per_round: list[dict] = []
    rounds = options["rounds"]
    for number in range(rounds):
        left = wanted - sum(totals[side + "sent"] for side in apps)
        share = -(-left // (len(apps) * (rounds - number)))  # rounded up: the last takes all
        if share <= 0:
            break
        count, rates, cut_short = share, {}, False
        for side in list(apps)[:: -1 if number % 2 else 1]:
            budget = options["deliver_seconds"] - max(totals[other + "deliver_s"] for other in apps)
            title = "deliver_due" if len(apps) == 1 else f"deliver_due, {SIDES[side]}"
            with apps[side].app_context():
                ours = deliver_slice(
                    transport,
                    sink,
                    count,
                    budget,
                    profiled(
                        options["profile"] and number == 0,
                        f"{run['label']}: {title}, first slice",
                        run["profiles"],
                    ),
                )
            totals.update({side + key: value for key, value in ours.items()})
            rates[side] = rate(ours["sent"], ours["deliver_s"])
            cut_short |= ours["sent"] < count
            count = ours["sent"]
        totals.update(raw_slice(sink, data, count))
        per_round.append(rates)
        if cut_short:
            break  # the time budget (--deliver-seconds) ran out
    return totals, per_round


def run_database(urls: dict, label: str, options: dict, results) -> None:
    """Set up, queue and deliver on one database; send the figures to ``results``.

    ``urls["main"]`` is timed; ``urls["trace"]``, a second empty database, is where the
    traced queueing runs last, so that neither its slowness nor its memory shows in the
    timed figures and the timed run sees a table nobody has emptied.
    """
    logging.basicConfig(level=logging.ERROR)
    from sqlalchemy import func, select

    from auth_service.extensions import db
    from auth_service.mail.dkim import load_key, public_record
    from auth_service.mail.rendering import build_message
    from auth_service.mail.transports import SmtpTransport, transport_for
    from auth_service.models import OutboxMessage
    from auth_service.newsletter.editions import queue_edition

    count = options["subscribers"]
    profiles: list[str] = []
    figures: dict = {"label": label, "subscribers": count}
    context = multiprocessing.get_context("spawn")
    record = public_record(load_key(Path(options["dkim_key_file"]))) if options["dkim"] else None
    with Sink(context, record, options["sink_delay_ms"] / 1000) as sink:
        app = build_app(urls["main"], sink.port)
        with app.app_context():
            # --- setup, not timed
            began = time.perf_counter()
            day = set_up(app, count)
            figures["setup_s"] = time.perf_counter() - began
            figures["rss_setup_mb"] = maxrss_mb()
            say(f"[{label}] setup: {count:,} subscribers in {figures['setup_s']:.1f} s")

            # --- queue, timed
            gc.collect()
            with profiled(options["profile"], f"{label}: queue_edition", profiles):
                started = time.perf_counter()
                report = queue_edition("daily", day)
                figures["queue_s"] = time.perf_counter() - started
            figures["queued"] = report.queued
            figures["rss_queue_mb"] = maxrss_mb()
            say(f"[{label}] queue: {report.queued:,} in {figures['queue_s']:.1f} s")
            started = time.perf_counter()
            again = queue_edition("daily", day)
            figures["requeue_s"] = time.perf_counter() - started
            figures["requeued"] = again.queued
            figures["already"] = again.already_queued
            in_outbox = db.session.scalar(select(func.count()).select_from(OutboxMessage))
            figures["outbox_rows"] = in_outbox

            # --- deliver through deliver_due(), and raw sends, in alternating slices
            wanted = (
                report.queued if options["deliver"] == 0 else min(options["deliver"], report.queued)
            )
            transport = transport_for(app)
            assert isinstance(transport, SmtpTransport), transport
            sample = db.session.scalar(
                select(OutboxMessage)
                .where(OutboxMessage.to_address.like("reader%"))
                .order_by(OutboxMessage.id)
                .limit(1)
            )
            data = build_message(sample).as_bytes()
            figures["message_bytes"] = len(data)
            db.session.commit()
            apps = {"": app}
            if options["dkim"]:
                apps["signed_"] = build_app(urls["main"], sink.port, options["dkim_key_file"])
            run = {"options": options, "label": label, "profiles": profiles}
            totals, per_round = deliver_rounds(apps, transport, sink, data, wanted, run)
            figures.update(totals, wanted=wanted, per_round=per_round)
            figures["dkim_verified"] = sink.verified.value
            figures["rss_deliver_mb"] = maxrss_mb()
            signed = (
                f"; signed: {totals['signed_sent']:,} in {totals['signed_deliver_s']:.1f} s"
                if options["dkim"]
                else ""
            )
            say(
                f"[{label}] deliver: {totals['sent']:,} in {totals['deliver_s']:.1f} s{signed}; "
                f"raw: {totals['sink_raw']:,} in {totals['raw_s']:.1f} s"
            )
            for other in list(apps.values())[1:]:
                with other.app_context():
                    db.engine.dispose()
            db.session.remove()
            db.engine.dispose()

        # --- queue again, traced for memory, on a database of its own
        if options["tracemalloc"]:
            traced_app = build_app(urls["trace"], sink.port)
            with traced_app.app_context():
                say(f"[{label}] setting up a second database for the traced queueing")
                day = set_up(traced_app, count)
                gc.collect()
                tracemalloc.start()
                started = time.perf_counter()
                traced = queue_edition("daily", day)
                figures["traced_queue_s"] = time.perf_counter() - started
                figures["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                figures["rss_traced_mb"] = maxrss_mb()
                say(
                    f"[{label}] queue with tracemalloc: {traced.queued:,} in "
                    f"{figures['traced_queue_s']:.1f} s, peak "
                    f"{figures['tracemalloc_peak_mb']:.1f} MiB"
                )
                db.session.remove()
                db.engine.dispose()
    figures["profiles"] = profiles
    results.put(figures)


def run_isolated(urls: dict, label: str, options: dict) -> dict:
    """Run one database's bench in a fresh process; return its figures."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(
        target=run_database, args=(urls, label, options, results), name=f"bench-{label}"
    )
    process.start()
    try:
        while True:
            try:
                return results.get(timeout=1)
            except Exception:  # queue.Empty: still working, or dead
                if not process.is_alive():
                    raise SystemExit(
                        f"the {label} run ended without figures (exit code {process.exitcode})"
                    ) from None
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()


# --- The report -------------------------------------------------------------------------


def rate(count: int, seconds: float) -> float:
    """Per second, guarded."""
    return count / seconds if seconds > 0 else float("nan")


def delivered_per_s(r: dict, side: str = "") -> float:
    """Copies/s of one app's delivery (``side``: a prefix of ``SIDES``), all rounds."""
    return rate(r[side + "sent"], r[side + "deliver_s"])


def cpu_ms_per_copy(r: dict, side: str = "") -> float:
    """This process's CPU time per copy delivered by one app, in ms."""
    return 1000 * r[side + "deliver_cpu"] / max(r[side + "sent"], 1)


def paired_rates(r: dict) -> list[tuple[float, float]]:
    """Each round's copies/s, unsigned and signed, where both apps delivered."""
    return [
        (rates[""], rates["signed_"])
        for rates in r["per_round"]
        if len(rates) == 2 and rates[""] > 0
    ]


def median_signed_ratio(r: dict) -> float:
    """The median over the rounds of signed copies/s over unsigned copies/s."""
    ratios = [signed / unsigned for unsigned, signed in paired_rates(r)]
    return statistics.median(ratios) if ratios else float("nan")


def print_table(results: list[dict], options: dict, total: float) -> None:
    """The figures, one column per database."""
    labels = [result["label"] for result in results]
    width = max(22, *(len(label) + 2 for label in labels))
    lines: list[tuple[str, list[str]]] = []

    def row(name: str, cell) -> None:
        lines.append((name, [cell(result) for result in results]))

    row("subscribers", lambda r: f"{r['subscribers']:,}")
    row("setup (not timed), s", lambda r: f"{r['setup_s']:.1f}")
    row("queued", lambda r: f"{r['queued']:,}")
    row("queue time, s", lambda r: f"{r['queue_s']:.2f}")
    row("queued / s", lambda r: f"{rate(r['queued'], r['queue_s']):,.0f}")
    row(
        "per 100,000 (target 30 s)",
        lambda r: (
            f"{r['queue_s'] * 100_000 / r['queued']:.1f} s, "
            + ("met" if r["queue_s"] * 100_000 / r["queued"] < 30 else "MISSED")
        ),
    )
    row("send again: queued", lambda r: f"{r['requeued']:,} ({r['already']:,} already)")
    row("send again, s", lambda r: f"{r['requeue_s']:.2f}")
    row("outbox rows", lambda r: f"{r['outbox_rows']:,}")
    delivery_rows(row, "")
    row("sink raw accept / s", lambda r: f"{rate(r['sink_raw'], r['raw_s']):,.0f}")
    row(
        "ours / raw",
        lambda r: f"{delivered_per_s(r) / rate(r['sink_raw'], r['raw_s']):.2f}",
    )
    row(
        "raw sender's CPU per copy, ms",
        lambda r: f"{1000 * r['raw_cpu'] / max(r['sink_raw'], 1):.2f}",
    )
    if options["dkim"]:
        delivery_rows(row, "signed_")
        row("signed / unsigned, median", lambda r: f"{median_signed_ratio(r):.2f}")
        row(
            "signed / unsigned, all",
            lambda r: f"{delivered_per_s(r, 'signed_') / delivered_per_s(r):.2f}",
        )
        row(
            "DKIM-signed, signed/unsigned",
            lambda r: f"{r['signed_sink_dkim']:,} / {r['sink_dkim']:,}",
        )
        row("first signature (dkimpy)", lambda r: VERDICTS[r["dkim_verified"]])
    row("message size, bytes", lambda r: f"{r['message_bytes']:,}")
    if options["tracemalloc"]:
        row("tracemalloc peak, queue, MiB", lambda r: f"{r['tracemalloc_peak_mb']:.1f}")
        row("(traced queue time, s)", lambda r: f"{r['traced_queue_s']:.2f}")
    row("ru_maxrss after setup, MiB", lambda r: f"{r['rss_setup_mb']:.0f}")
    row("ru_maxrss after queue, MiB", lambda r: f"{r['rss_queue_mb']:.0f}")
    row("ru_maxrss after deliver, MiB", lambda r: f"{r['rss_deliver_mb']:.0f}")
    if options["tracemalloc"]:
        row("ru_maxrss after traced, MiB", lambda r: f"{r['rss_traced_mb']:.0f}")

    name_width = max(len(name) for name, _ in lines) + 2
    print(
        f"\nNewsletter edition bench: queue for {options['subscribers']:,} subscribers, "
        f"deliver to a local SMTP sink"
    )
    header = f"{'':<{name_width}}" + "".join(f"{label:>{width}}" for label in labels)
    print(header)
    print("-" * len(header))
    for name, cells in lines:
        print(f"{name:<{name_width}}" + "".join(f"{cell:>{width}}" for cell in cells))
    for r in results:
        delivered = r["sent"] + r.get("signed_sent", 0)
        if delivered < r["queued"]:
            why = (
                f"the {options['deliver_seconds']:g} s budget (--deliver-seconds) ran out"
                if delivered < r["wanted"]
                else f"--deliver {options['deliver']}"
            )
            print(
                f"{r['label']}: delivery is a sample, the first {delivered:,} of the "
                f"{r['queued']:,} queued copies, all of them due as at the start of a real "
                f"send; it stopped because {why}. --deliver 0 delivers them all."
            )
    print(
        f"Delivery: deliver_due() through SmtpTransport (batches of OUTBOX_BATCH_SIZE, a "
        f"new SMTP connection every MAIL_MESSAGES_PER_CONNECTION messages, both 100 by "
        f"default); raw: as many copies of one built "
        f"message on one bare smtplib connection to the same sink (a separate process); "
        f"the two alternate in {options['rounds']} slices so that both see the same "
        f"machine. ours/raw near 1 means the sink sets the pace. CPU: this process's "
        f"user+system time (every thread) per copy."
    )
    if options["sink_delay_ms"]:
        print(
            f"The sink answered each message {options['sink_delay_ms']:g} ms late, idle "
            "meanwhile (--sink-delay-ms), as a relay on another machine would."
        )
    if options["dkim"]:
        print_signed_rounds(results)
    print(
        "Memory: tracemalloc peak = Python allocations during queue_edition, run again "
        "under tracemalloc on a second fresh database (tracemalloc slows it, hence the "
        "separate pass); ru_maxrss = the process's high-water mark after each phase, "
        "earlier phases included."
    )
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; total run time {total:.0f} s")
    for result in results:
        for text in result["profiles"]:
            print()
            print(text)


def delivery_rows(row, prefix: str) -> None:
    """The delivery figures of one app: ``prefix`` "" for the unsigned, "signed_" for
    the signing one (``SIDES``)."""
    label = "" if not prefix else f"{SIDES[prefix]}: "
    row(f"{label}delivered", lambda r: f"{r[prefix + 'sent']:,} of {r['queued']:,}")
    row(f"{label}accepted by the sink", lambda r: f"{r[prefix + 'sink_ours']:,}")
    row(
        f"{label}retried / failed",
        lambda r: f"{r[prefix + 'retried']} / {r[prefix + 'failed']}",
    )
    row(f"{label}delivery time, s", lambda r: f"{r[prefix + 'deliver_s']:.2f}")
    row(f"{label}delivered / s", lambda r: f"{delivered_per_s(r, prefix):,.0f}")
    row(f"{label}our CPU per copy, ms", lambda r: f"{cpu_ms_per_copy(r, prefix):.2f}")


def print_signed_rounds(results: list[dict]) -> None:
    """With ``--dkim``: each round's copies/s, unsigned and signed, and what was compared."""
    for r in results:
        rounds = ", ".join(
            f"{unsigned:,.0f} -> {signed:,.0f} ({signed / unsigned:.2f})"
            for unsigned, signed in paired_rates(r)
        )
        print(f"{r['label']}, copies/s per round, unsigned -> signed (ratio): {rounds}")
    print(
        f"Signed: a second app, configured alike plus DKIM_SELECTOR and "
        f"DKIM_PRIVATE_KEY_FILE (a {DKIM_KEY_BITS}-bit RSA key made for this run), "
        f"delivers from the same outbox in the same rounds, as many copies as the unsigned "
        f"app; the two take turns to go first. The rows without 'signed' are the unsigned "
        f"app's. DKIM-signed: messages the sink received with a DKIM-Signature header "
        f"first, from the signed / the unsigned app; dkimpy verifies the first of them."
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run each database in turn, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--subscribers",
        type=int,
        default=100_000,
        help="subscribed readers to queue the edition for (default: 100000)",
    )
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="where to run (default: both); PostgreSQL is a private server "
        "started on 127.0.0.1 and removed at the end",
    )
    parser.add_argument(
        "--deliver",
        type=int,
        default=20_000,
        help="how many queued copies to deliver (default: 20000, to keep the "
        "run short; 0 delivers every queued copy)",
    )
    parser.add_argument(
        "--deliver-seconds",
        type=float,
        default=None,
        help="stop claiming more after this long, so the run stays short "
        "however slow delivery is (default: 30, none with --deliver 0); "
        "the table says how many were delivered",
    )
    parser.add_argument(
        "--no-tracemalloc",
        dest="tracemalloc",
        action="store_false",
        help="skip the traced queueing pass (and its memory figure)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="how many alternating slices of our delivery and raw sends (default: 5)",
    )
    parser.add_argument(
        "--dkim",
        action="store_true",
        help=f"also deliver with DKIM signing (a {DKIM_KEY_BITS}-bit RSA key made for the run), "
        "in slices alternating with unsigned delivery, and compare the two",
    )
    parser.add_argument(
        "--sink-delay-ms",
        type=float,
        default=0.0,
        help="the sink answers each message this many ms late, idle meanwhile, as a relay "
        "on another machine would (default: 0, a sink on this machine's cores)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the timed queue and delivery under cProfile (slower) and print the top functions",
    )
    options = parser.parse_args(argv)
    if options.subscribers < 1 or options.deliver < 0 or options.rounds < 1:
        parser.error("--subscribers and --rounds must be positive, --deliver not negative")
    if options.deliver_seconds is None:
        options.deliver_seconds = float("inf") if options.deliver == 0 else 30.0
    settings = vars(options)
    names = ["sqlite", "postgresql"] if options.database == "both" else [options.database]
    began = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-newsletter-") as folder:
        settings["dkim_key_file"] = write_dkim_key(Path(folder)) if options.dkim else None
        for name in names:
            if name == "sqlite":
                import sqlite3

                urls = {
                    "main": f"sqlite:///{folder}/bench.sqlite3",
                    "trace": f"sqlite:///{folder}/trace.sqlite3",
                }
                results.append(run_isolated(urls, f"SQLite {sqlite3.sqlite_version}", settings))
            else:
                with private_postgres() as (urls, label):
                    results.append(run_isolated(urls, label, settings))
    print_table(results, settings, time.perf_counter() - began)


if __name__ == "__main__":
    main()
