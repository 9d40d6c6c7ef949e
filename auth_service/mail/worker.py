"""The mail worker: claims due messages, sends them on one connection, marks each sent.

It marks each message sent as soon as SMTP accepted it, so a clean run never sends twice
and an SMTP outage only delays mail. Failures are retried with backoff, then given up.
"""

from __future__ import annotations

import logging
import smtplib
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import Table, bindparam, func, or_, select, update

from ..extensions import db
from ..metrics import MAILS
from ..models import WebhookEvent, utcnow
from ..publisher import webhooks
from .copies import EditionCopies
from .doorbell import Doorbell, ring
from .outbox import NOTIFY_CHANNEL, OUTBOX, SECRET_KINDS, SECRETS_REMOVED, sqlite_file
from .rendering import QueuedMessage
from .transports import MESSAGE_REFUSALS, is_permanent, transport_for

log = logging.getLogger(__name__)

# A claim lasts OUTBOX_CLAIM_SECONDS, or longer with a long MAIL_TIMEOUT: long enough
# that no message is still being sent when it runs out (see claim_length and _send).
# The blocking steps of sending one message (MAIL, RCPT, DATA, content, the answer):
# each may take up to MAIL_TIMEOUT.
SEND_STEPS = 5
CLAIM_SLACK = 5  # seconds kept in hand for our own work and clocks
MINIMUM_WAIT = 0.05  # seconds: never poll the database in a tight loop
# The publisher's webhook events: a queue with the outbox's columns, delivered by a
# thread of the worker of its own.
EVENTS = WebhookEvent.__table__
WEBHOOK_POLL = 1.0  # seconds between looks at the webhook queue when nothing is due


@dataclass
class DeliveryReport:
    """What one pass over the outbox did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0


def _due(now: datetime, table: Table = OUTBOX):
    """The SQL condition of a message (or webhook event) the worker may pick up now."""
    return (
        table.c.sent_at.is_(None),
        table.c.failed_at.is_(None),
        table.c.next_attempt_at <= now,
        or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
    )


def claim_due(
    limit: int, *, now: datetime | None = None, table: Table = OUTBOX, also=()
) -> list[int]:
    """Claim up to ``limit`` due messages for this worker and return their ids.

    ``table`` is the outbox, or any queue with its columns (``sent_at``, ``failed_at``,
    ``next_attempt_at``, ``claimed_until``): the publisher's webhook events, whose
    ordering rule comes in ``also`` (more SQL conditions a row must meet).

    One statement. PostgreSQL skips rows another worker is claiming at this moment, and
    the chosen ids are materialised first: a ``WHERE id IN (... LIMIT n)`` there may run
    its subquery more than once and claim more than ``n``. SQLite lets one writer in at
    a time. Either way no message is claimed twice.
    """
    now = now or utcnow()
    due = (
        select(table.c.id)
        .where(*_due(now, table), *also)
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    claimed = db.session.scalars(
        update(table)
        .where(table.c.id == due.c.id)
        .values(claimed_until=now + claim_length())
        .returning(table.c.id)
    ).all()
    db.session.commit()
    return sorted(claimed)


def claim_length() -> timedelta:
    """How long a claim holds: room for slow sends (:func:`_send` stops in time)."""
    shortest = timedelta(seconds=current_app.config["OUTBOX_CLAIM_SECONDS"])
    return max(shortest, 2 * _slowest_send())


def _slowest_send() -> timedelta:
    """The longest one message may take to send before a step times out."""
    return timedelta(seconds=SEND_STEPS * current_app.config["MAIL_TIMEOUT"])


def backoff(attempts: int) -> timedelta:
    """How long to wait before try number ``attempts + 1``: doubling, capped."""
    config = current_app.config
    seconds = config["OUTBOX_BACKOFF_BASE"] * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, config["OUTBOX_BACKOFF_MAX"]))


def _record_failure(message: QueuedMessage, error: Exception, *, permanent: bool) -> str:
    """Schedule a retry, or give up for good; commit at once and return which.

    A sign-in mail given up loses its bodies here: the database never keeps its link.
    """
    now = utcnow()
    values = {
        "attempts": message.attempts + 1,
        "last_error": f"{type(error).__name__}: {error}"[:2000],
        "claimed_until": None,
    }
    if permanent or values["attempts"] >= current_app.config["OUTBOX_MAX_ATTEMPTS"]:
        values["failed_at"] = now
        if message.kind in SECRET_KINDS:
            values.update(SECRETS_REMOVED)
    else:
        values["next_attempt_at"] = now + backoff(values["attempts"])
    db.session.execute(update(OUTBOX).where(OUTBOX.c.id == message.id).values(**values))
    db.session.commit()
    if "failed_at" in values:
        log.error("Outbox: giving up on message %s: %s", message.id, values["last_error"])
        return "failed"
    log.warning(
        "Outbox: message %s not sent (%s); retry at %s",
        message.id,
        values["last_error"],
        values["next_attempt_at"].isoformat(),
    )
    return "retried"


def deliver_due(transport=None, *, limit: int | None = None) -> DeliveryReport:
    """Deliver every message that is due now, in batches, and report what happened.

    A connection carries batches up to ``MAIL_MESSAGES_PER_CONNECTION`` messages, then
    the next one opens; if one breaks, the messages in hand wait for a retry.
    """
    transport = transport or transport_for(current_app)
    limit = limit or current_app.config["OUTBOX_BATCH_SIZE"]
    per_connection = max(current_app.config["MAIL_MESSAGES_PER_CONNECTION"], 1)
    report = DeliveryReport()
    marks = SentMarks(db.engine)
    copies = EditionCopies()  # each newsletter edition built once for the whole pass
    try:
        while batch := _claim_batch(min(limit, per_connection)):
            try:
                with transport.connection(copies) as connection:
                    room = per_connection
                    while batch and batch.pending:
                        room -= len(batch.pending)
                        _send(connection, batch, marks, report)
                        # The last message's mark first: claiming before it is written
                        # could take that message again.
                        marks.settle()
                        batch = _claim_batch(min(limit, room)) if room > 0 else None
            except Exception as error:
                # The server went away or refused us for now: nothing is lost, try later.
                if not isinstance(error, (OSError, smtplib.SMTPException)):
                    log.exception("Outbox: delivery stopped half-way")
                db.session.rollback()
                marks.settle()
                for message in batch.pending if batch else []:
                    _count(report, _record_failure(message, error, permanent=False))
    finally:
        marks.close()
    return report


@dataclass
class _Batch:
    """Claimed messages still to handle, and when the claim was made."""

    claimed_at: datetime
    pending: list[QueuedMessage]


def _claim_batch(size: int) -> _Batch | None:
    """Claim and read up to ``size`` due messages; ``None`` if nothing was due."""
    claimed_at = utcnow()
    claimed = claim_due(size, now=claimed_at)
    return _Batch(claimed_at, _load(claimed)) if claimed else None


def _load(claimed: list[int]) -> list[QueuedMessage]:
    """The claimed messages as plain rows, in the order they fell due.

    Rows rather than ORM objects: each send commits, and a commit would expire objects
    and cost one SELECT per message to load them again. A message deleted meanwhile
    (with its reader's account) is simply not there.
    """
    rows = db.session.execute(
        select(OUTBOX)
        .where(OUTBOX.c.id.in_(claimed))
        .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
    ).all()
    db.session.commit()
    return list(rows)


def _send(connection, batch: _Batch, marks: SentMarks, report: DeliveryReport) -> None:
    """Send a batch's messages in turn, taking each off ``batch.pending`` once handled.

    A refused message is recorded and the next one goes on; a broken connection
    propagates with the message in hand still pending, so none is left claimed with
    its error unrecorded.
    """
    pending = batch.pending
    # Start no message that the slowest send could carry past the end of the claim:
    # another worker could then take it too. The rest go back to the queue.
    stop_at = batch.claimed_at + claim_length() - _slowest_send() - timedelta(seconds=CLAIM_SLACK)
    while pending:
        if utcnow() > stop_at:
            marks.settle()
            log.info("Outbox: claim running out; %s messages back to the queue", len(pending))
            _release([message.id for message in pending])
            pending.clear()
            return
        message, error, permanent = pending[0], None, False
        try:
            following = pending[1] if len(pending) > 1 else None
            connection.send(message, meanwhile=marks.settle, following=following)
        except MESSAGE_REFUSALS as refused:
            error, permanent = refused, is_permanent(refused)
        except (OSError, smtplib.SMTPException, MarkingFailed):
            raise
        except Exception as broken:
            # This message cannot be built or sent (a bug, a bad header): keep it for a
            # later try and go on with the others.
            log.exception("Outbox: message %s could not be sent", message.id)
            error = broken
        pending.pop(0)
        if error is None:
            marks.add(message)
            _count(report, "sent")
        else:
            _count(report, _record_failure(message, error, permanent=permanent))


class MarkingFailed(Exception):
    """A message went out but could not be marked sent: the database is in trouble."""


# Marking a message sent: prepared once, run for every message.
_SENT = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(sent_at=bindparam("when"), attempts=bindparam("tries"), claimed_until=None)
)
_SENT_SECRET = _SENT.values(**SECRETS_REMOVED)


class SentMarks:
    """Marks messages sent while the server reads the next message's first command.

    Writing a mark takes a round trip to the database, as long as a good part of an SMTP
    exchange; made in line it would slow delivery by as much. Instead the mark of a
    message waits until the next one's MAIL FROM is on its way and is written while the
    server answers (see ``transports._Meanwhile``), or at the end of the pass. It is always
    written before that next message's content is sent, so, as when marking in line, at
    most one message is ever accepted by the server and not yet marked sent: a worker
    killed at any moment sends at most that one again.
    """

    def __init__(self, engine):
        self._engine = engine
        self._waiting: tuple | None = None
        self._connection = None  # opened on the first mark

    def add(self, message: QueuedMessage) -> None:
        """Mark ``message`` sent at the next :meth:`settle`; settle the previous one first."""
        self.settle()
        statement = _SENT_SECRET if message.kind in SECRET_KINDS else _SENT
        self._waiting = (
            statement,
            {"row_id": message.id, "when": utcnow(), "tries": message.attempts + 1},
        )

    def settle(self) -> None:
        """Write the waiting mark, if any; raise :class:`MarkingFailed` if that fails."""
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        try:
            # One UPDATE of one row, committed by itself: one round trip, no BEGIN/COMMIT.
            if self._connection is None:
                self._connection = self._open()
            self._connection.execute(*waiting)
            self._connection.commit()
        except Exception as error:
            log.exception("Outbox: a message was sent but not marked sent; it may go twice")
            if self._connection is not None:
                self._connection.invalidate()
                self._connection.close()
                self._connection = None
            raise MarkingFailed(str(error)) from error

    def _open(self):
        """The connection marks are written on: each statement commits by itself."""
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if connection.dialect.name == "postgresql":
            # A mark's commit does not wait for the disk: that wait alone is longer than
            # the server's answer the mark hides behind. A killed worker loses nothing
            # by it; only a crash of PostgreSQL itself may lose the marks of its last
            # fraction of a second (three wal_writer_delay at most), and those few
            # messages would go out a second time.
            connection.exec_driver_sql("SET synchronous_commit TO OFF")
        return connection

    def close(self) -> None:
        """Write the waiting mark, if any, and give the connection back as it was."""
        try:
            self.settle()
        finally:
            connection, self._connection = self._connection, None
            if connection is not None:
                try:
                    if connection.dialect.name == "postgresql":
                        connection.exec_driver_sql("RESET synchronous_commit")
                except Exception:
                    connection.invalidate()  # never back in the pool with that setting
                connection.close()


def _release(message_ids: list[int]) -> None:
    """Give claimed messages back to the queue, untouched."""
    db.session.execute(
        update(OUTBOX).where(OUTBOX.c.id.in_(message_ids)).values(claimed_until=None)
    )
    db.session.commit()


def _count(report: DeliveryReport, outcome: str) -> None:
    """Add one outcome (sent, retried, failed) to the report and to the metrics."""
    setattr(report, outcome, getattr(report, outcome) + 1)
    MAILS.labels(outcome).inc()


def seconds_until_next_due(*, now: datetime | None = None, table: Table = OUTBOX) -> float | None:
    """Seconds until a waiting message (or webhook event, with ``table``) may be picked
    up, or ``None`` if nothing waits.

    A message claimed by another worker (or by one that crashed) is due when its claim
    runs out, not before: counting it as due now would make an idle worker spin.
    """
    now = now or utcnow()
    waiting = (table.c.sent_at.is_(None), table.c.failed_at.is_(None))
    unclaimed = db.session.scalar(
        select(func.min(table.c.next_attempt_at)).where(
            *waiting, or_(table.c.claimed_until.is_(None), table.c.claimed_until < now)
        )
    )
    claim_ends = db.session.scalar(
        select(func.min(table.c.claimed_until)).where(*waiting, table.c.claimed_until >= now)
    )
    db.session.commit()
    moments = [moment for moment in (unclaimed, claim_ends) if moment is not None]
    if not moments:
        return None
    return max((min(moments) - now).total_seconds(), MINIMUM_WAIT)


class Worker:
    """Delivers the outbox until stopped, woken as soon as mail is queued.

    In the same process as the web app it is woken by an event set after commit; as a
    separate process it listens for ``NOTIFY`` on PostgreSQL and waits on its doorbell
    (:mod:`.doorbell`) on SQLite, still looking every ``OUTBOX_POLL_INTERVAL`` seconds
    there, in case a ring cannot reach it.
    """

    def __init__(self, app: Flask, *, in_process: bool = False):
        self.app = app
        self.stopping = threading.Event()
        self.wakeup = threading.Event()
        self.transport = transport_for(app)
        self.in_process = in_process
        if in_process:
            app.extensions["outbox_wakeup"] = self.wakeup
        self._listener = None
        self._doorbell: Doorbell | None = None

    def run(self) -> None:
        """Deliver, then wait for a wake-up or the next retry, until :meth:`stop`.

        The publisher's webhook events go out from a thread of their own
        (:meth:`_run_webhooks`): a slow or silent receiver never holds up sign-in mail.
        """
        webhook_thread = None
        if self.app.config["PUBLISHER_WEBHOOK_URL"]:
            webhook_thread = threading.Thread(
                target=self._run_webhooks, name="webhook-worker", daemon=True
            )
            webhook_thread.start()
        with self.app.app_context():
            database = sqlite_file(db.engine.url)
            if database and not self.in_process:
                self._doorbell = Doorbell(database)
            try:
                while not self.stopping.is_set():
                    self.wakeup.clear()
                    if not self.in_process:
                        # Listen before looking, so no NOTIFY falls between the two.
                        self._listener_or_none()
                    try:
                        deliver_due(self.transport)
                        wait = seconds_until_next_due()
                    except Exception:
                        # The database may be restarting; keep the worker alive.
                        log.exception("Outbox: delivery pass failed")
                        db.session.rollback()
                        wait = 5.0
                    self._wait(wait)
            finally:
                self._close_listener()
                if self._doorbell is not None:
                    self._doorbell.close()
                db.session.remove()
                if webhook_thread is not None:
                    webhook_thread.join(timeout=1)

    def _run_webhooks(self) -> None:
        """Deliver webhook events until :meth:`stop`, looking again at least every
        second (queued events also set ``wakeup``, which the mail loop clears)."""
        with self.app.app_context():
            try:
                while not self.stopping.is_set():
                    try:
                        webhooks.deliver_due()
                        wait = seconds_until_next_due(table=EVENTS)
                    except Exception:
                        log.exception("Webhooks: delivery pass failed")
                        db.session.rollback()
                        wait = 5.0
                    self.stopping.wait(min(wait or WEBHOOK_POLL, WEBHOOK_POLL))
            finally:
                db.session.remove()

    def _wait(self, due_in: float | None) -> None:
        """Sleep until woken, until a retry is due, or one poll interval."""
        listener = None if self.in_process else self._listener_or_none()
        poll = self.app.config["OUTBOX_POLL_INTERVAL"]
        if self.in_process or listener is not None:
            poll = 30.0  # the after-commit event or PostgreSQL's NOTIFY wakes us
        timeout = poll if due_in is None else min(poll, due_in)
        if self._doorbell is not None and self._doorbell.bound:
            self._doorbell.wait(timeout)  # stop() rings it too
            return
        if listener is None:
            self.wakeup.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        try:
            # In slices of a second, so that stop() is honoured quickly.
            while not self.wakeup.is_set() and (left := deadline - time.monotonic()) > 0:
                if any(True for _ in listener.notifies(timeout=min(left, 1.0), stop_after=1)):
                    return
        except Exception:
            log.exception("Outbox: lost the PostgreSQL listener; reconnecting")
            self._close_listener()
            self.wakeup.wait(1.0)

    def _listener_or_none(self):
        """The PostgreSQL connection listening for queued mail, opened on first use.

        ``None`` on SQLite, or while PostgreSQL cannot be reached (we poll meanwhile).
        """
        if self._listener is not None or db.engine.dialect.name != "postgresql":
            return self._listener
        import psycopg

        url = db.engine.url.set(drivername="postgresql")
        try:
            connection = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error:
            log.exception("Outbox: cannot LISTEN; polling until PostgreSQL is back")
            return None
        self._listener = connection
        return connection

    def _close_listener(self) -> None:
        """Close the listening connection, if any."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def stop(self) -> None:
        """Ask the loop to end after its current pass."""
        self.stopping.set()
        self.wakeup.set()
        if self._doorbell is not None:
            ring(self._doorbell.database)  # it may be waiting on the socket

    def start_thread(self) -> threading.Thread:
        """Run the worker in a daemon thread, for the demo and tests."""
        thread = threading.Thread(target=self.run, name="outbox-worker", daemon=True)
        thread.start()
        return thread
