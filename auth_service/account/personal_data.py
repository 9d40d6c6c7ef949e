"""What a reader owns: their data as JSON, and deleting all of it."""

from __future__ import annotations

from sqlalchemy import delete, select

from ..auth import sessions, signin
from ..auth.addresses import transport_address
from ..comments import discussion
from ..extensions import db
from ..models import (
    LoginAttempt,
    NewsletterConsent,
    OutboxMessage,
    Reader,
    ReaderSession,
    SignInEvent,
    Suppression,
    iso_utc,
)
from ..newsletter import subscriptions
from ..publisher import webhooks


def recent_sign_ins(reader: Reader, limit: int = 10) -> list[SignInEvent]:
    """The reader's latest sign-ins, newest first."""
    return list(
        db.session.scalars(
            select(SignInEvent)
            .where(SignInEvent.reader_id == reader.id)
            .order_by(SignInEvent.at.desc())
            .limit(limit)
        )
    )


def export(reader: Reader) -> dict:
    """Everything the service keeps about ``reader``, as JSON-ready data."""
    return {
        "email": reader.email,
        "created_at": iso_utc(reader.created_at),
        "last_sign_in_at": iso_utc(reader.last_sign_in_at),
        "language": reader.locale,
        "display_name": reader.display_name,
        "newsletter_consents": [
            {
                "newsletter": consent.newsletter.slug,
                "consented_at": iso_utc(consent.consented_at),
                "wording": consent.wording,
                "source": consent.source,
                "withdrawn_at": iso_utc(consent.withdrawn_at),
            }
            for consent in reader.consents
        ],
        "sign_ins": [
            {
                "at": iso_utc(event.at),
                "method": event.method,
                "user_agent": event.user_agent,
                "network": event.network,
            }
            for event in reader.sign_ins
        ],
        "mail_problem": _mail_problem(subscriptions.suppression_of(reader)),
        "sessions": [
            {
                "signed_in_at": iso_utc(device.created_at),
                "user_agent": device.user_agent,
                "network": device.network,
            }
            for device in sessions.live_sessions(reader)
        ],
        "comments": discussion.export_of(reader),
        "comment_reports": discussion.reports_of(reader),
    }


def _mail_problem(found: Suppression | None) -> dict | None:
    """The bounce or complaint recorded for the reader's address, as exported."""
    if found is None:
        return None
    return {"event": found.event, "reported_at": iso_utc(found.reported_at)}


def delete_reader(reader: Reader) -> None:
    """Delete ``reader`` and everything kept about their address (the caller commits).

    Every row that hangs from the reader (consents, sign-ins, sessions, comments and
    reports) is deleted here, in the lock order of sign-in; ``ON DELETE CASCADE`` on
    those tables (SET NULL on comments) is only a second guard. A comment others replied
    to stays as a tombstone with no author and no text
    (``comments.discussion.forget_author``).
    Sign-in attempts, a recorded bounce and mail still in the outbox name the
    address rather than the reader, so they go too.
    """
    address = reader.email
    # Sign-in's lock order: the address's attempts first, then the reader, then what
    # hangs from it (consents, sessions...).
    signin.lock_attempts_of_address(address)
    subscriptions.lock_reader(reader)
    db.session.execute(delete(LoginAttempt).where(LoginAttempt.email == address))
    db.session.execute(delete(Suppression).where(Suppression.email == address))
    db.session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.to_address.in_({address, transport_address(address)})
        )
    )
    db.session.execute(delete(NewsletterConsent).where(NewsletterConsent.reader_id == reader.id))
    db.session.execute(delete(SignInEvent).where(SignInEvent.reader_id == reader.id))
    db.session.execute(delete(ReaderSession).where(ReaderSession.reader_id == reader.id))
    discussion.forget_author(reader)
    webhooks.reader_deleted(reader)  # the publisher's CRM forgets them too
    db.session.delete(reader)


BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
)
SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def describe_device(user_agent: str) -> str:
    """A rough name for a browser and system, e.g. "Firefox on Windows"."""
    browser = next((name for mark, name in BROWSERS if mark in user_agent), "")
    system = next((name for mark, name in SYSTEMS if mark in user_agent), "")
    if browser and system:
        return f"{browser} – {system}"
    return browser or system or "?"
