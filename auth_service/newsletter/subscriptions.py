"""Who receives which newsletter: consents, signed preference links, suppressions.

No request, no session, no commit: views and commands hand in readers and newsletters,
and commit what these functions wrote. A
subscription is an open consent row (``withdrawn_at IS NULL``); unsubscribing closes it,
subscribing again opens a new one with the wording shown that time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from datetime import UTC, datetime

from flask import current_app
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import ObjectDeletedError

from ..config import signing_keys
from ..database import UPSERTS
from ..extensions import db
from ..models import Newsletter, NewsletterConsent, Reader, Suppression, utcnow
from ..publisher import webhooks

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
    """Record consent to ``letter`` (once), with the wording shown and where."""
    record_consent(reader, letter, wording=wording, source=source)


def unsubscribe(reader: Reader, letter: Newsletter, *, now: datetime | None = None) -> bool:
    """Withdraw consent to ``letter``. Whether there was one to withdraw."""
    return _close(reader, letter, now or utcnow())


def choose(reader: Reader, chosen: set[str], *, wordings: dict[str, str], source: str) -> None:
    """Receive exactly the ``chosen`` newsletters (by slug), in one transaction.

    ``wordings`` holds, per slug, the label the reader ticked: it is their consent.
    Several consent rows change, so the reader's row is locked first: the order of
    sign-in and of account deletion (attempts, then the reader, then what hangs from
    it), which would otherwise deadlock with a deletion on PostgreSQL.
    """
    now = utcnow()
    lock_reader(reader)
    for letter, subscribed in subscriptions(reader):
        if letter.slug in chosen and not subscribed:
            record_consent(
                reader, letter, wording=wordings.get(letter.slug, letter.slug), source=source
            )
        elif letter.slug not in chosen and subscribed:
            _close(reader, letter, now)


def consent_wording(letter: Newsletter, locale: str) -> str:
    """The label of a newsletter's box, as the reader saw it: the consent they gave."""
    return _("Receive %(name)s", name=letter.name(locale))


def choose_ticked(reader: Reader, chosen: set[str], *, locale: str, source: str) -> None:
    """:func:`choose`, recording as consent the label of each box in ``locale``."""
    wordings = {letter.slug: consent_wording(letter, locale) for letter in all_newsletters()}
    choose(reader, chosen, wordings=wordings, source=source)


def lock_reader(reader: Reader) -> None:
    """Lock the reader's row until the transaction ends.

    A write that changes nothing (``SET id = id``): on PostgreSQL it takes the row's
    lock, on SQLite the database's write lock, so that what follows reads and writes
    rows that nobody deletes meanwhile. Raises ``ObjectDeletedError`` if the account was
    deleted already (the error pages answer it with a calm 410).
    """
    locked = db.session.execute(
        update(Reader)
        .where(Reader.id == reader.id)
        .values(id=Reader.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if locked != 1:
        raise ObjectDeletedError(inspect(reader))


def record_consent(
    reader: Reader,
    letter: Newsletter,
    *,
    wording: str,
    source: str,
    now: datetime | None = None,
) -> None:
    """Record consent to ``letter`` with the wording shown and where, unless one is open.

    The one way a consent is written (sign-in, account page, preferences link). A
    partial unique index allows one open consent per reader and newsletter: when two
    requests (a double click) record it at once, the second finds the first's row.
    """
    if open_consent(reader, letter) is not None:
        return
    try:
        with db.session.begin_nested():
            db.session.add(
                NewsletterConsent(
                    reader=reader,
                    newsletter=letter,
                    consented_at=now or utcnow(),
                    wording=wording,
                    source=source[:2048],
                )
            )
            db.session.flush()
            webhooks.subscribed(reader, letter)
    except IntegrityError:
        pass  # a parallel request recorded the same consent a moment ago


def _close(reader: Reader, letter: Newsletter, now: datetime) -> bool:
    """Withdraw the open consent, if any; whether there was one."""
    consent = open_consent(reader, letter)
    if consent is not None:
        consent.withdrawn_at = now
        webhooks.unsubscribed(reader, letter)
    return consent is not None


# --- Signed links that work without signing in ----------------------------------------


def _serializer() -> URLSafeSerializer:
    """No expiry: a link in last year's newsletter must still unsubscribe."""
    return _serializer_for(tuple(signing_keys(current_app)))


@functools.lru_cache(maxsize=8)
def _serializer_for(keys: tuple[str, ...]) -> URLSafeSerializer:
    """One serializer per set of keys: an edition signs a token for every reader."""
    return URLSafeSerializer(list(keys), salt=PREFERENCES_SALT)


def token_for_public_id(public_id: str) -> str:
    """The signed token of a reader's preference and unsubscribe links.

    The payload is the reader's opaque public id: random, so it tells nothing of how
    many readers there are or in what order they came, and it dies with the account
    (the same address signing up again gets a new one).
    """
    return _serializer().dumps({"p": public_id})


def reader_from_token(token: str) -> Reader | None:
    """The reader a preference token was made for, or ``None`` if it is not genuine."""
    try:
        payload = _serializer().loads(token[:512])
    except BadSignature:
        return None
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("p"), str) and len(payload["p"]) <= 32:
        return db.session.scalar(select(Reader).where(Reader.public_id == payload["p"]))
    if isinstance(payload.get("r"), int) and isinstance(payload.get("f"), str):
        return _reader_from_legacy_token(payload["r"], payload["f"])
    return None


def _reader_from_legacy_token(reader_id: int, fingerprint: str) -> Reader | None:
    """A token of the first editions, which named the row id: they are still in
    readers' mailboxes and must still unsubscribe. No new token takes this form."""
    if not -(2**31) <= reader_id < 2**31:  # PostgreSQL's integer
        return None
    reader = db.session.get(Reader, reader_id)
    if reader is None:
        return None
    stamp = reader.created_at.astimezone(UTC).replace(tzinfo=None).isoformat()
    expected = hashlib.sha256(f"{reader.email}\n{stamp}".encode()).hexdigest()[:20]
    return reader if hmac.compare_digest(fingerprint.encode(), expected.encode()) else None


# --- Suppression ----------------------------------------------------------------------


def record_mail_event(address: str, event: str, reported_at: datetime) -> None:
    """Mark ``address`` suppressed after a bounce or a complaint.

    One statement that inserts or updates, so two reports of one new address arriving
    at once cannot both try to insert it.
    """
    statement = UPSERTS[db.engine.dialect.name](Suppression).values(
        email=address, event=event, reported_at=reported_at, recorded_at=utcnow()
    )
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=[Suppression.email],
            set_={"event": statement.excluded.event, "reported_at": statement.excluded.reported_at},
        )
    )


def suppression_of(reader: Reader) -> Suppression | None:
    """Why mail to this reader is suppressed, if it is."""
    return db.session.scalar(select(Suppression).where(Suppression.email == reader.email))


def clear_suppression(reader: Reader) -> None:
    """The reader says their address works again (the caller commits)."""
    db.session.execute(delete(Suppression).where(Suppression.email == reader.email))
