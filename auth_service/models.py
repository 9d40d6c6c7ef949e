"""The tables: readers and their sessions, sign-in attempts and events, newsletters with
their consents, suppressions and editions, articles and their comments, the mail outbox,
rate-limit counters.

Models know nothing of the app or of HTTP; the rules that use them live in the feature
packages: ``auth`` (sign-in, sessions), ``account``, ``articles``, ``newsletter`` and
``mail`` (the outbox), ``comments``, and the counters in ``limit_storage``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false

from .extensions import db

# What readers see of a comment: everyone, only its author (more links than allowed:
# staff approve it first), or nobody but staff (hidden by staff).
COMMENT_VISIBLE = "visible"
COMMENT_HELD = "held"
COMMENT_HIDDEN = "hidden"
# The newsletter every reader is offered on the wall; it exists from the first migration.
DAILY_NEWSLETTER = "daily"
# What an outbox message is: a sign-in mail (its link and code are secrets) or a copy
# of a newsletter edition.
SIGN_IN_MAIL = "signin"
NEWSLETTER_COPY = "newsletter"


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime | None) -> str | None:
    """A stored UTC moment as ISO 8601 with ``Z`` (``2026-11-28T07:30:00Z``), or None."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and read back as aware UTC.

    SQLite has no time zones; storing naive UTC everywhere keeps comparisons made in SQL
    identical on SQLite and PostgreSQL.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """Convert an aware datetime to naive UTC before it reaches the database."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        """Mark a stored timestamp as UTC again."""
        return None if value is None else value.replace(tzinfo=UTC)


def new_public_id() -> str:
    """A reader's opaque identifier for links and tokens: random, never the row id."""
    return secrets.token_urlsafe(16)


class Reader(UserMixin, db.Model):
    """Someone who has signed in at least once with a confirmed address."""

    __tablename__ = "readers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # What preference and unsubscribe links carry: opaque, and it never changes, so a
    # link in last year's newsletter still works; the sequential id is never shown.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    locale: Mapped[str] = mapped_column(String(8), default="fr")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Newsroom staff may preview editions in the browser.
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The name shown on the reader's comments, chosen at their first one (never the
    # address); ``display_name_key`` is its folded form, unique, so that two readers
    # cannot go by names that differ only in capitals or spacing.
    display_name: Mapped[str | None] = mapped_column(String(40))
    display_name_key: Mapped[str | None] = mapped_column(String(160), unique=True, index=True)

    consents: Mapped[list[NewsletterConsent]] = relationship(
        back_populates="reader", cascade="all, delete-orphan", passive_deletes=True
    )
    sign_ins: Mapped[list[SignInEvent]] = relationship(
        back_populates="reader",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SignInEvent.at.desc()",
    )

    sessions: Mapped[list[ReaderSession]] = relationship(
        back_populates="reader", cascade="all, delete-orphan", passive_deletes=True
    )
    # Deleting a reader goes through ``account.personal_data``, which deletes their
    # comments or leaves a tombstone without author; nothing cascades from here.
    comments: Mapped[list[Comment]] = relationship(
        back_populates="author", passive_deletes=True, order_by="Comment.created_at"
    )

    # The key of the session this reader was loaded through (set by ``sessions``),
    # which the cookie carries. A plain attribute, not a column.
    session_key = None  # str | None

    def get_id(self) -> str | None:
        """Flask-Login's session key: the key of one server-side session, so that
        signing out ends that session wherever its cookie was copied."""
        return self.session_key


class ReaderSession(db.Model):
    """One signed-in browser: the session cookie carries its key, the table its hash.

    Signing out deletes the row, which ends that session on every copy of the cookie;
    the account page lists the rows as the reader's devices.
    """

    __tablename__ = "reader_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Also what the account page's "sign out" button names: it cannot be turned back
    # into the key, and unlike the row id it says nothing of how many sign-ins there are.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    # The session lasts PERMANENT_SESSION_LIFETIME from here; nothing is written while
    # it is used.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    network: Mapped[str] = mapped_column(String(64), default="")

    reader: Mapped[Reader] = relationship(back_populates="sessions")


class LoginAttempt(db.Model):
    """One "send me a link" request: a link and a code for one address.

    Only hashes of the link's random part and of the code are kept.
    """

    __tablename__ = "login_attempts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    tries_left: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_url: Mapped[str] = mapped_column(String(2048), default="/")
    locale: Mapped[str] = mapped_column(String(8), default="fr")
    newsletter: Mapped[bool] = mapped_column(Boolean, default=False)
    # The opt-in sentence exactly as the reader saw it, kept for the consent record.
    newsletter_wording: Mapped[str | None] = mapped_column(Text)
    # The first attempt of a run of "send again" (its own id for a first request): the
    # run has its own allowance of mails, which nobody else's requests can spend.
    chain_id: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_login_attempts_email_open", "email", "used_at"),)


class Newsletter(db.Model):
    """A newsletter readers can subscribe to; the daily front page is the first."""

    __tablename__ = "newsletters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name_fr: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    description_fr: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    cadence: Mapped[str] = mapped_column(String(32), default="daily")  # a cadence, not a slug
    default_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)

    def name(self, locale: str) -> str:
        """The newsletter's name in the reader's language."""
        return self.name_en if locale == "en" else self.name_fr


class NewsletterConsent(db.Model):
    """A reader's recorded consent to one newsletter, with the wording they saw."""

    __tablename__ = "newsletter_consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id"))
    consented_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    wording: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(2048), default="")
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    reader: Mapped[Reader] = relationship(back_populates="consents")
    newsletter: Mapped[Newsletter] = relationship()

    __table_args__ = (
        # One open consent per reader and newsletter: two requests recording the same
        # consent at once cannot both add a row (a reader would get two copies).
        Index(
            "uq_newsletter_consents_open",
            "reader_id",
            "newsletter_id",
            unique=True,
            postgresql_where=text("withdrawn_at IS NULL"),
            sqlite_where=text("withdrawn_at IS NULL"),
        ),
    )


class SignInEvent(db.Model):
    """One successful sign-in, for the reader's "recent sign-ins" list."""

    __tablename__ = "sign_in_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    method: Mapped[str] = mapped_column(String(16))  # "link" or "code"
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    # Truncated to /24 (IPv4) or /48 (IPv6): enough to recognise a place, not a person.
    network: Mapped[str] = mapped_column(String(64), default="")

    reader: Mapped[Reader] = relationship(back_populates="sign_ins")


class Article(db.Model):
    """A published article; ``access`` decides whether its body is behind the wall."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    kicker: Mapped[str] = mapped_column(String(200), default="")
    standfirst: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    # The sanitised first paragraph: all a signed-out reader gets of a gated body.
    opening_html: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str] = mapped_column(String(2048), default="")
    image_caption: Mapped[str] = mapped_column(Text, default="")
    image_credit: Mapped[str] = mapped_column(String(500), default="")
    image_alt: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    access: Mapped[str] = mapped_column(String(16), default="registered")
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def is_gated_for(self, reader) -> bool:
        """Whether this reader must sign in to read the whole body."""
        if self.access == "public":
            return False
        return reader is None or not reader.is_authenticated


class Suppression(db.Model):
    """An address the mail provider reported as bouncing or complaining: no more newsletters.

    The reader sees it on their account page and can clear it.
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    event: Mapped[str] = mapped_column(String(32))  # "bounce" or "complaint"
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("email", name="uq_suppressions_email"),)


class Edition(db.Model):
    """One newsletter's edition for one day in one language, rendered once for everyone.

    Each reader's copy is an outbox row that points here and carries only what is
    personal (the preferences and unsubscribe links), so 100,000 copies stay small.
    """

    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id"))
    edition_date: Mapped[date] = mapped_column(Date)
    locale: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(500))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    newsletter: Mapped[Newsletter] = relationship()

    __table_args__ = (
        UniqueConstraint(
            "newsletter_id", "edition_date", "locale", name="uq_editions_newsletter_date_locale"
        ),
    )


class OutboxMessage(db.Model):
    """A rendered mail waiting for the worker, written in the sender's transaction."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    kind: Mapped[str] = mapped_column(String(32), default=SIGN_IN_MAIL)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A worker that picked the message up holds it until then, so two workers never
    # send the same message; a crashed worker's claim simply runs out.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A newsletter copy: the shared edition, the reader's own links, and a key that
    # makes queueing the same edition twice impossible ("daily:2026-11-28:42").
    edition_id: Mapped[int | None] = mapped_column(
        ForeignKey("editions.id", name="fk_outbox_edition")
    )
    personal: Mapped[dict | None] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        # The waiting messages only, in the order the worker claims them.
        Index(
            "ix_outbox_waiting",
            "next_attempt_at",
            "id",
            postgresql_where=text("sent_at IS NULL AND failed_at IS NULL"),
            sqlite_where=text("sent_at IS NULL AND failed_at IS NULL"),
        ),
        # The service-wide hourly ceiling counts recent sign-in mails.
        Index("ix_outbox_kind_created", "kind", "created_at"),
        UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
    )


class RateLimitCounter(db.Model):
    """One fixed-window rate-limit counter, shared by every process of the service.

    The default storage of Flask-Limiter's counters (``limit_storage``): with no Redis,
    several web processes still count one allowance together.
    """

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    # Seconds since the epoch, as Flask-Limiter reads a window's end.
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class SigningKey(db.Model):
    """A key pair that signs entitlement tokens (ES256); the newest unretired one signs.

    The private key stays here: it is never logged, exported or shown (``keys list``
    shows ids and dates). A retired key's public half stays published until the last
    token it signed has expired, then the row goes.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<SigningKey {self.kid}>"  # never the key itself


class ApiKey(db.Model):
    """A publisher's key for the article API (``Authorization: Bearer …``).

    Only a SHA-256 of the key is kept: it is shown once, when made. A revoked key stays,
    so that the changes it made still name it.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ArticleChange(db.Model):
    """One change of an article through the API: which key, when, what."""

    __tablename__ = "article_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(16))  # "created", "updated", "deleted"
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookEvent(db.Model):
    """An event for the publisher's webhook, queued in the transaction of its change.

    Delivered by the mail worker as mail is: claimed, sent, marked; retried with backoff
    while the receiver fails. ``event_id`` is its ``webhook-id``: the same on every try,
    so that a receiver can drop a repeat.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_waiting", "next_attempt_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    # The reader's public id: one reader's events go out in the order they happened.
    reader_key: Mapped[str] = mapped_column(String(32), index=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class Comment(db.Model):
    """A reader's comment on an article, or a reply to one (one level deep).

    The body is plain text as the reader wrote it (normalised); it is escaped and its
    links made clickable when shown (``comments.text``). A deleted comment that others
    replied to stays as a tombstone: no author, no body, ``deleted_at`` set, so that the
    replies keep their place.
    """

    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What URLs and anchors carry: the sequential id says how many comments there are.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    # None only on a tombstone.
    reader_id: Mapped[int | None] = mapped_column(
        ForeignKey("readers.id", ondelete="SET NULL"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=COMMENT_VISIBLE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    author: Mapped[Reader | None] = relationship(back_populates="comments")
    article: Mapped[Article] = relationship()
    parent: Mapped[Comment | None] = relationship(remote_side=[id])

    __table_args__ = (
        # The article page: one article's threads (or one thread's replies) by status,
        # in order of posting.
        Index("ix_comments_listing", "article_id", "parent_id", "status", "created_at"),
    )


class CommentReport(db.Model):
    """One reader's report of one comment, for the moderation page."""

    __tablename__ = "comment_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comment_id: Mapped[int] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("comment_id", "reader_id", name="uq_comment_reports_comment_reader"),
    )
