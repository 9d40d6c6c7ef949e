"""The mail outbox: queue a message in the caller's transaction and wake the worker.

A request never waits for SMTP. It writes an :class:`OutboxMessage` next to whatever
else it changes, commits, and the worker (:mod:`.worker`) is woken after the commit:
by ``NOTIFY`` on PostgreSQL, by :mod:`.doorbell` on SQLite.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from ..extensions import db
from ..metrics import MAILS
from ..models import SIGN_IN_MAIL, OutboxMessage
from . import doorbell
from .rendering import RenderedMail

NOTIFY_CHANNEL = "auth_service_outbox"
# Mails that carry a secret (a sign-in link and code): their bodies are kept only until
# they are delivered or given up, so the database never holds a usable link for long.
SECRET_KINDS = {SIGN_IN_MAIL}
REMOVED = "[removed once handled: this mail held a sign-in link]"
SECRETS_REMOVED = {"text_body": REMOVED, "html_body": REMOVED}
# The worker reads and writes the table with Core statements: no ORM bookkeeping per mail.
OUTBOX = OutboxMessage.__table__


def queue(mail: RenderedMail, *, kind: str) -> OutboxMessage:
    """Add ``mail`` to the outbox in the current transaction; the caller commits."""
    message = OutboxMessage(
        message_id=mail.message_id,
        to_address=mail.to_address,
        subject=mail.subject,
        text_body=mail.text_body,
        html_body=mail.html_body,
        headers=mail.headers,
        kind=kind,
    )
    db.session.add(message)
    wake_workers()
    MAILS.labels("queued").inc()
    return message


def wake_workers() -> None:
    """Have the worker(s) look at the outbox once the current transaction commits."""
    db.session.info["outbox_queued"] = True
    if db.session.get_bind().dialect.name == "postgresql":
        # Delivered by PostgreSQL only if and when this transaction commits.
        db.session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


def init_app(app) -> None:
    """Listen to every session's commits and rollbacks, to wake the worker after mail
    was queued (once per process: the listeners belong to SQLAlchemy's Session class)."""
    for name, listener in (
        ("after_commit", _wake_after_commit),
        ("after_rollback", _forget_after_rollback),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def _wake_after_commit(session: Session) -> None:
    """Wake the worker once a transaction that queued mail has committed: an in-process
    one by its event, a separate one on SQLite by its doorbell (on PostgreSQL the
    transaction's ``NOTIFY`` has just been delivered)."""
    if session.info.pop("outbox_queued", False):
        wakeup = current_app.extensions.get("outbox_wakeup")
        if wakeup is not None:
            wakeup.set()
        database = sqlite_file(session.get_bind().url)
        if database:
            doorbell.ring(database)


def sqlite_file(url) -> str | None:
    """The file of a SQLite database URL; ``None`` for any other database, or memory."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def _forget_after_rollback(session: Session) -> None:
    """A rolled-back transaction queued nothing."""
    session.info.pop("outbox_queued", None)
