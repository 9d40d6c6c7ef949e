"""The daily edition: built from a day's articles, rendered once per language, queued
once per subscribed reader through the outbox.

Queueing is idempotent: every reader's copy carries a unique dedupe key
(``daily:2026-11-28:42``), so sending the same edition twice queues nothing more, and a
run that crashed half-way is finished by the next one with no reader served twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.utils import make_msgid
from zoneinfo import ZoneInfo

from flask import current_app, render_template
from flask_babel import force_locale, format_date
from flask_babel import gettext as _
from sqlalchemy import exists, insert, select
from sqlalchemy.exc import IntegrityError

from .. import storable
from ..auth.addresses import transport_address
from ..config import public_host
from ..extensions import db
from ..mail.outbox import wake_workers
from ..mail.rendering import PREFERENCES_URL, UNSUBSCRIBE_URL, public_url_for
from ..metrics import MAILS
from ..models import (
    NEWSLETTER_COPY,
    Article,
    Edition,
    Newsletter,
    NewsletterConsent,
    OutboxMessage,
    Reader,
    Suppression,
    utcnow,
)
from . import subscriptions
from .unsubscribe_mail import subject_for

BATCH_SIZE = 1000


class EditionError(ValueError):
    """An edition that cannot be sent, and why (unknown newsletter, no article)."""


@dataclass
class EditionReport:
    """What a send did (or, with ``dry_run``, would do)."""

    newsletter: str
    day: date
    articles: int = 0
    queued: int = 0
    already_queued: int = 0
    dry_run: bool = False


def site_zone() -> ZoneInfo:
    """The site's time zone: an edition's day is a day there."""
    return ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def today() -> date:
    """Today in the site's time zone: the default edition day."""
    return datetime.now(site_zone()).date()


def articles_of(day: date) -> list[Article]:
    """The articles published on ``day`` in the site's time zone, newest first.

    Raises :class:`EditionError` for a day at the ends of the calendar (0001-01-01,
    9999-12-31): the day's midnights in the site's zone, converted to UTC, would overflow.
    """
    try:
        storable.check_day(day)
    except storable.OutOfCalendar as error:
        raise EditionError(f"there is no edition of {day.isoformat()}: {error}") from None
    start = datetime.combine(day, time.min, tzinfo=site_zone())
    end = start + timedelta(days=1)
    return list(
        db.session.scalars(
            select(Article)
            .where(Article.published_at >= start, Article.published_at < end)
            .where(Article.published_at <= utcnow())
            .order_by(Article.published_at.desc())
        )
    )


def render_edition(letter: Newsletter, day: date, locale: str, articles: list[Article]):
    """Subject, text and HTML of an edition in one language, with link placeholders."""
    with force_locale(locale):
        context = {
            "newsletter": letter,
            "name": letter.name(locale),
            "day": day,
            "day_text": format_date(day, "full"),
            "articles": articles,
            "article_url": lambda article: public_url_for("articles.article", slug=article.slug),
            "image_url": _absolute_image,
            "preferences_url": PREFERENCES_URL,
            "unsubscribe_url": UNSUBSCRIBE_URL,
            "locale": locale,
            "site_name": current_app.config["SITE_NAME"],
            "front_page_url": public_url_for("articles.front_page"),
        }
        subject = _("%(name)s – %(day)s", name=letter.name(locale), day=context["day_text"])
        return (
            subject,
            render_template(f"mail/newsletter_{letter.slug}.txt", **context),
            render_template(f"mail/newsletter_{letter.slug}.html", **context),
        )


def _absolute_image(url: str) -> str:
    """An article image's address as a mail client must see it: absolute."""
    if url.startswith("/"):
        return current_app.config["PUBLIC_URL"] + url
    return url


def _edition(letter: Newsletter, day: date, locale: str, articles: list[Article]) -> Edition:
    """The stored edition for this day and language, rendered now if it is new."""
    found = db.session.scalar(
        select(Edition).where(
            Edition.newsletter_id == letter.id,
            Edition.edition_date == day,
            Edition.locale == locale,
        )
    )
    if found is not None:
        return found
    subject, text_body, html_body = render_edition(letter, day, locale, articles)
    edition = Edition(
        newsletter=letter,
        edition_date=day,
        locale=locale,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
    )
    db.session.add(edition)
    try:
        db.session.commit()
    except IntegrityError:  # another run rendered it a moment ago
        db.session.rollback()
        return _edition(letter, day, locale, articles)
    return edition


def _subscribers_after(letter: Newsletter, last_id: int, limit: int):
    """The next subscribed, unsuppressed readers after ``last_id``."""
    return db.session.execute(
        select(Reader.id, Reader.public_id, Reader.email, Reader.locale)
        .join(NewsletterConsent, NewsletterConsent.reader_id == Reader.id)
        .where(
            NewsletterConsent.newsletter_id == letter.id,
            NewsletterConsent.withdrawn_at.is_(None),
            Reader.id > last_id,
            ~exists().where(Suppression.email == Reader.email),
        )
        .order_by(Reader.id)
        .limit(limit)
    ).all()


def queue_edition(
    slug: str, day: date, *, dry_run: bool = False, batch_size: int = BATCH_SIZE
) -> EditionReport:
    """Queue one copy of the edition per subscribed reader, in committed batches."""
    letter = subscriptions.newsletter(slug)
    if letter is None:
        raise EditionError(f"there is no newsletter {slug!r}")
    articles = articles_of(day)
    report = EditionReport(slug, day, articles=len(articles), dry_run=dry_run)
    if not articles:
        raise EditionError(f"no article was published on {day.isoformat()}")
    editions = {}
    if not dry_run:
        editions = {
            locale: _edition(letter, day, locale, articles)
            for locale in current_app.config["LANGUAGES"]
        }
    copies = _CopyMaker(letter)
    last_id = 0
    while batch := _subscribers_after(letter, last_id, batch_size):
        last_id = batch[-1].id
        keys = {row.id: f"{slug}:{day.isoformat()}:{row.id}" for row in batch}
        if dry_run:
            queued = len(batch) - len(_already_queued(keys))
        else:
            queued = _queue_batch(batch, keys, copies, editions)
        report.queued += queued
        report.already_queued += len(batch) - queued
    return report


def _already_queued(keys: dict[int, str]) -> set[str]:
    """Which of these copies are in the outbox already."""
    return set(
        db.session.scalars(
            select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(keys.values()))
        )
    )


def _queue_batch(batch, keys: dict[int, str], copies, editions) -> int:
    """Insert the copies of this batch that are not queued yet; commit; how many.

    Another run of the same edition may insert some of them at the same moment: the
    unique key then refuses ours, and the batch is simply looked at again.
    """
    for _attempt in range(3):
        done = _already_queued(keys)
        rows = [
            copies.copy_of(row, editions, keys[row.id]) for row in batch if keys[row.id] not in done
        ]
        if not rows:
            return 0
        try:
            db.session.execute(insert(OutboxMessage), rows)
            MAILS.labels("queued").inc(len(rows))
            wake_workers()
            db.session.commit()
            return len(rows)
        except IntegrityError:
            db.session.rollback()
    raise EditionError("another run keeps queueing the same copies; try again")


class _CopyMaker:
    """Builds each reader's copy: their links, the list headers, the outbox row."""

    def __init__(self, letter: Newsletter):
        config = current_app.config
        self.letter = letter
        self.languages = config["LANGUAGES"]
        self.default = config["BABEL_DEFAULT_LOCALE"]
        self.domain = public_host(current_app)
        self.unsubscribe_base = public_url_for("newsletter.unsubscribe")
        self.preferences_base = public_url_for("newsletter.preferences")
        self.mailto = config["MAIL_UNSUBSCRIBE_ADDRESS"] or f"unsubscribe@{self.domain}"
        self.list_id = f"{letter.name_fr} <{letter.slug}.{self.domain}>"
        self.now = utcnow()

    def copy_of(self, row, editions: dict[str, Edition], key: str) -> dict:
        """The outbox row of one reader's copy."""
        locale = row.locale if row.locale in self.languages else self.default
        edition = editions[locale]
        token = subscriptions.token_for_public_id(row.public_id)
        unsubscribe = f"{self.unsubscribe_base}?n={self.letter.slug}&token={token}"
        return {
            "message_id": make_msgid(domain=self.domain),
            "to_address": row.email if row.email.isascii() else transport_address(row.email),
            "subject": edition.subject,
            "text_body": "",
            "html_body": "",
            "headers": {
                "List-Id": self.list_id,
                "List-Unsubscribe": f"<{unsubscribe}>, <mailto:{self.mailto}?subject="
                f"{subject_for(self.letter.slug, token)}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Content-Language": locale,
                "Precedence": "bulk",
            },
            "kind": NEWSLETTER_COPY,
            "created_at": self.now,
            "next_attempt_at": self.now,
            "attempts": 0,
            "edition_id": edition.id,
            "personal": {
                "preferences": f"{self.preferences_base}?token={token}",
                "unsubscribe": unsubscribe,
            },
            "dedupe_key": key,
        }
