"""Who receives which newsletter: consents, signed preference links, suppressions.

No request, no session: views and commands hand in readers and newsletters. A
subscription is an open consent row (``withdrawn_at IS NULL``); unsubscribing closes it,
subscribing again opens a new one with the wording shown that time.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, select

from .config import signing_keys
from .extensions import db
from .models import Newsletter, NewsletterConsent, Reader, Suppression, utcnow

PREFERENCES_SALT = "auth-service.newsletter-preferences"
MAIL_EVENTS = {"bounce", "complaint"}


def all_newsletters() -> list[Newsletter]:
    """Every newsletter, in a stable order."""
    return list(db.session.scalars(select(Newsletter).order_by(Newsletter.id)))


def newsletter(slug: str) -> Newsletter | None:
    """The newsletter with this slug, if any."""
    return db.session.scalar(select(Newsletter).where(Newsletter.slug == slug))


def open_consent(reader: Reader, letter: Newsletter) -> NewsletterConsent | None:
    """The reader's current consent to ``letter``, if they are subscribed."""
    return db.session.scalar(
        select(NewsletterConsent).where(
            NewsletterConsent.reader_id == reader.id,
            NewsletterConsent.newsletter_id == letter.id,
            NewsletterConsent.withdrawn_at.is_(None),
        )
    )


def subscriptions(reader: Reader) -> list[tuple[Newsletter, bool]]:
    """Every newsletter with whether ``reader`` receives it."""
    subscribed = set(
        db.session.scalars(
            select(NewsletterConsent.newsletter_id).where(
                NewsletterConsent.reader_id == reader.id,
                NewsletterConsent.withdrawn_at.is_(None),
            )
        )
    )
    return [(letter, letter.id in subscribed) for letter in all_newsletters()]


def subscribe(reader: Reader, letter: Newsletter, *, wording: str, source: str) -> None:
    """Record consent to ``letter`` (once), with the wording shown and where; commit."""
    _open(reader, letter, wording=wording, source=source)
    db.session.commit()


def unsubscribe(reader: Reader, letter: Newsletter, *, now: datetime | None = None) -> bool:
    """Withdraw consent to ``letter``; commit. Whether there was one to withdraw."""
    withdrawn = _close(reader, letter, now or utcnow())
    db.session.commit()
    return withdrawn


def choose(reader: Reader, chosen: set[str], *, wordings: dict[str, str], source: str) -> None:
    """Receive exactly the ``chosen`` newsletters (by slug); one commit for all.

    ``wordings`` holds, per slug, the label the reader ticked: it is their consent.
    """
    now = utcnow()
    for letter, subscribed in subscriptions(reader):
        if letter.slug in chosen and not subscribed:
            _open(reader, letter, wording=wordings.get(letter.slug, letter.slug), source=source)
        elif letter.slug not in chosen and subscribed:
            _close(reader, letter, now)
    db.session.commit()


def _open(reader: Reader, letter: Newsletter, *, wording: str, source: str) -> None:
    """Add a consent row unless one is open."""
    if open_consent(reader, letter) is None:
        db.session.add(
            NewsletterConsent(
                reader=reader, newsletter=letter, wording=wording, source=source[:2048]
            )
        )


def _close(reader: Reader, letter: Newsletter, now: datetime) -> bool:
    """Withdraw the open consent, if any; whether there was one."""
    consent = open_consent(reader, letter)
    if consent is not None:
        consent.withdrawn_at = now
    return consent is not None


# --- Signed links that work without signing in ----------------------------------------


def _serializer() -> URLSafeSerializer:
    """No expiry: a link in last year's newsletter must still unsubscribe."""
    return _serializer_for(tuple(signing_keys(current_app)))


@functools.lru_cache(maxsize=8)
def _serializer_for(keys: tuple[str, ...]) -> URLSafeSerializer:
    """One serializer per set of keys: an edition signs a token for every reader."""
    return URLSafeSerializer(list(keys), salt=PREFERENCES_SALT)


def _fingerprint(email: str, created_at: datetime) -> str:
    """A digest of the account: a link dies with the account it was made for, even if
    the same address signs up again and (SQLite reuses ids) gets the same id."""
    stamp = created_at.astimezone(UTC).replace(tzinfo=None).isoformat()
    return hashlib.sha256(f"{email}\n{stamp}".encode()).hexdigest()[:20]


def preferences_token(reader: Reader) -> str:
    """The signed token of a reader's preference and unsubscribe links."""
    return token_for_id(reader.id, reader.email, reader.created_at)


def token_for_id(reader_id: int, email: str, created_at: datetime) -> str:
    """:func:`preferences_token` from a reader's columns, for bulk sends."""
    return _serializer().dumps({"r": reader_id, "f": _fingerprint(email, created_at)})


def reader_from_token(token: str) -> Reader | None:
    """The reader a preference token was made for, or ``None`` if it is not genuine."""
    try:
        payload = _serializer().loads(token[:512])
    except BadSignature:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("r"), int):
        return None
    reader = db.session.get(Reader, payload["r"])
    if reader is None or payload.get("f") != _fingerprint(reader.email, reader.created_at):
        return None
    return reader


# --- Suppression ----------------------------------------------------------------------


def record_mail_event(address: str, event: str, reported_at: datetime) -> None:
    """Mark ``address`` suppressed after a bounce or a complaint; commit."""
    existing = db.session.scalar(select(Suppression).where(Suppression.email == address))
    if existing is None:
        db.session.add(Suppression(email=address, event=event, reported_at=reported_at))
    else:
        existing.event, existing.reported_at = event, reported_at
    db.session.commit()


def suppression_of(reader: Reader) -> Suppression | None:
    """Why mail to this reader is suppressed, if it is."""
    return db.session.scalar(select(Suppression).where(Suppression.email == reader.email))


def clear_suppression(reader: Reader) -> None:
    """The reader says their address works again; commit."""
    db.session.execute(delete(Suppression).where(Suppression.email == reader.email))
    db.session.commit()
