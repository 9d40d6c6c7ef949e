"""Articles: import from JSON with sanitised bodies; find what a reader may read.

``import_articles`` upserts by slug. Bodies are cleaned with nh3 on the way in, and the
opening paragraph is kept apart: it is all a signed-out reader gets of a gated body.

The pages that only show an article read it through :func:`find_to_read`, from a shelf
each process keeps for ``ARTICLE_CACHE_SECONDS``: when a story sends tens of thousands
of readers to one article, the database is asked for it once per process and interval,
not once per reader. A change made through this process empties its shelf at once; the
other processes see it within the interval.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import nh3
from flask import current_app
from sqlalchemy import bindparam, select
from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update

from ..database import UPSERTS
from ..extensions import db
from ..models import Article, utcnow
from ..storable import OutOfCalendar, first_unstorable, moment_in_utc, shown_where

ALLOWED_TAGS = {
    "p",
    "h2",
    "h3",
    "h4",
    "blockquote",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "b",
    "i",
    "a",
    "br",
    "figure",
    "figcaption",
    "cite",
    "q",
    "abbr",
    "sub",
    "sup",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}}
FIRST_PARAGRAPH = re.compile(r"<p\b[^>]*>.*?</p>", re.DOTALL)
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ACCESS_LEVELS = {"public", "registered"}


class ArticleError(ValueError):
    """An article in an import file that cannot be stored, and why."""


@dataclass
class ImportReport:
    """What an import did."""

    created: int = 0
    updated: int = 0


def sanitise(body_html: str) -> str:
    """Keep the article markup, drop scripts, styles, handlers and foreign schemes."""
    return nh3.clean(
        body_html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def opening_of(clean_html: str) -> str:
    """The first paragraph of a sanitised body."""
    match = FIRST_PARAGRAPH.search(clean_html)
    return match.group(0) if match else ""


def _text(item: dict, key: str, limit: int, *, required: bool = False) -> str:
    """A string field of an imported article, checked for type and length."""
    value = item.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ArticleError(f"{key!r} must be a string")
    value = value.strip()  # NUL and lone surrogates were refused for the whole file
    if required and not value:
        raise ArticleError(f"{key!r} is required")
    if len(value) > limit:
        raise ArticleError(f"{key!r} is longer than {limit} characters")
    return value


def _image_url(url: str) -> str:
    """An image address that is a path on this site or an http(s) URL."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme in {"http", "https"} and parts.netloc:
        return url
    if not parts.scheme and not parts.netloc and url.startswith("/") and not url.startswith("//"):
        return url
    raise ArticleError("'image.url' must be an http(s) URL or a path starting with /")


def _published_at(value) -> datetime:
    """Parse ``published_at`` (ISO 8601); a time without zone is taken as UTC."""
    if not isinstance(value, str) or not value:
        raise ArticleError("'published_at' must be an ISO 8601 date and time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ArticleError(f"'published_at' is not ISO 8601: {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=utcnow().tzinfo)
    try:
        return moment_in_utc(moment)
    except OutOfCalendar as error:
        raise ArticleError(f"'published_at' is out of range: {error}") from None


def parse(item) -> dict:
    """Check one imported article and return the column values to store."""
    if not isinstance(item, dict):
        raise ArticleError("each article must be a JSON object")
    slug = _text(item, "slug", 200, required=True)
    if not SLUG.match(slug):
        raise ArticleError(f"'slug' must be lower-case letters, digits and dashes: {slug!r}")
    access = item.get("access", "registered")
    if not isinstance(access, str) or access not in ACCESS_LEVELS:
        raise ArticleError("'access' must be 'public' or 'registered'")
    image = item.get("image") or {}
    if not isinstance(image, dict):
        raise ArticleError("'image' must be an object")
    tags = item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ArticleError("'tags' must be a list of strings")
    body = sanitise(_text(item, "body_html", 500_000))
    return {
        "slug": slug,
        "title": _text(item, "title", 500, required=True),
        "kicker": _text(item, "kicker", 200),
        "standfirst": _text(item, "standfirst", 5000),
        "body_html": body,
        "opening_html": opening_of(body),
        "image_url": _image_url(_text(image, "url", 2048)),
        "image_caption": _text(image, "caption", 2000),
        "image_credit": _text(image, "credit", 500),
        # No alt given: the figure's caption describes the picture, so the image itself
        # stays silent rather than have screen readers say the caption twice.
        "image_alt": _text(image, "alt", 2000),
        "tags": [tag.strip()[:100] for tag in tags if tag.strip()][:20],
        "access": access,
        "published_at": _published_at(item.get("published_at")),
    }


def import_articles(items) -> ImportReport:
    """Upsert every article of ``items`` by slug, all or nothing, and commit.

    Raises :class:`ArticleError` naming the first bad article; nothing is stored then.
    """
    if not isinstance(items, list):
        raise ArticleError("the file must hold a JSON list of articles")
    _refuse_unstorable(items)
    parsed = []
    for position, item in enumerate(items, start=1):
        try:
            parsed.append(parse(item))
        except ArticleError as error:
            raise ArticleError(f"article {position}: {error}") from None
    report = ImportReport()
    for values in parsed:
        if upsert(values):
            report.created += 1
        else:
            report.updated += 1
    db.session.commit()
    return report


def upsert(values: dict) -> bool:
    """Store one parsed article by its slug, in the caller's transaction; ``True`` if it
    is new. The insert says whether it made the row: of two writers of one new slug at
    once, the second waits for the first's row, inserts nothing and updates it."""
    row = {**values, "updated_at": utcnow()}
    inserted = db.session.execute(
        UPSERTS[db.engine.dialect.name](Article)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["slug"])
        .returning(Article.id)
    ).first()
    if inserted is None:
        db.session.execute(sa_update(Article).where(Article.slug == values["slug"]).values(**row))
    db.session.expire_all()  # objects read before must see the statements' values
    _shelf().clear()
    return inserted is not None


def delete(slug: str) -> bool:
    """Delete the article with ``slug`` (published or not); ``False`` if there is none."""
    _shelf().clear()
    return bool(db.session.execute(sa_delete(Article).where(Article.slug == slug)).rowcount)


def _refuse_unstorable(items: list) -> None:
    """Raise :class:`ArticleError` naming the first article and field holding text the
    database cannot store (a NUL character, a lone surrogate such as JSON's ``\\ud800``).

    Refused rather than cleaned: a title with a NUL in it is a broken export, and the
    publisher should see it.
    """
    where = first_unstorable(items)
    if where is None:
        return
    field = shown_where(where[1:]) or "the article"
    raise ArticleError(
        f"article {where[0] + 1}: {field!r} holds a character the database cannot store "
        "(a NUL character or a lone surrogate such as \\ud800)"
    )


def published(limit: int = 50) -> list[Article]:
    """Published articles for the front page, newest first."""
    return list(
        db.session.scalars(
            select(Article)
            .where(Article.published_at <= utcnow())
            .order_by(Article.published_at.desc())
            .limit(limit)
        )
    )


def find(slug: str) -> Article | None:
    """The published article with this slug, if any."""
    if len(slug) > 200 or not SLUG.match(slug):
        return None  # not a slug we could have stored: no need to ask the database
    return db.session.scalar(_PUBLISHED_BY_SLUG, {"slug": slug, "now": utcnow()})


def find_to_read(slug: str) -> Article | None:
    """:func:`find`, for a page that only shows the article: from this process's shelf
    when it was read less than ``ARTICLE_CACHE_SECONDS`` ago (an article taken off or
    put back under embargo meanwhile is not shown).

    The article may be shared with other requests: read it; never change it or attach
    it to another object (use :func:`find` for that).
    """
    shelf = _shelf()
    if not shelf.seconds:
        return find(slug)
    now = time.monotonic()
    kept = shelf.get(slug, now)
    if kept is not None and kept.published_at <= utcnow():
        return kept
    found = find(slug)
    if found is not None:
        db.session.expunge(found)  # every column is loaded: it reads without a session
        shelf.put(slug, found, now)
    return found


class Shelf:
    """Articles found lately, each for ``seconds``, at most ``size`` of them (the least
    recently read go first); shared by the threads of one process."""

    def __init__(self, seconds: float, size: int = 256):
        self.seconds = seconds
        self.size = size
        self._items: OrderedDict[str, tuple[float, Article]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, slug: str, now: float) -> Article | None:
        """The article kept for ``slug``, unless it is older than ``seconds``."""
        with self._lock:
            kept = self._items.get(slug)
            if kept is None or now - kept[0] >= self.seconds:
                return None
            self._items.move_to_end(slug)
            return kept[1]

    def put(self, slug: str, article: Article, now: float) -> None:
        """Keep ``article`` from ``now``, making room if the shelf is full."""
        with self._lock:
            self._items[slug] = (now, article)
            self._items.move_to_end(slug)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every article: one of them changed."""
        with self._lock:
            self._items.clear()


def init_app(app) -> None:
    """Give ``app`` its shelf of articles (``ARTICLE_CACHE_SECONDS``; 0: none)."""
    app.extensions["article_shelf"] = Shelf(app.config["ARTICLE_CACHE_SECONDS"])


def _shelf() -> Shelf:
    return current_app.extensions["article_shelf"]


# Built once (building it cost as much as running it): the article page's first query.
_PUBLISHED_BY_SLUG = select(Article).where(
    Article.slug == bindparam("slug"), Article.published_at <= bindparam("now")
)
