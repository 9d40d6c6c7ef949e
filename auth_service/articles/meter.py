"""Metering: a few registered articles a signed-out browser may read before the wall.

``PAYWALL_FREE_ARTICLES`` articles per ``PAYWALL_METER_DAYS`` days (0: the wall from the
first one). The count lives in a cookie the server signs and the page's scripts cannot
read (HttpOnly): the ids of the articles read, and the day the period started. Each
article counts once, so reading it again costs nothing. Like every meter kept by the
browser, it is a courtesy, not a lock: a reader who clears cookies starts again. A
cookie that is tampered with, stale or malformed reads as an empty meter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..config import signing_keys
from ..models import Article, utcnow
from ..security import cookie_attributes

METER_SALT = "auth-service.meter"
DAY = 24 * 3600


@dataclass
class Meter:
    """A browser's meter for one request, and what the current article cost."""

    allowance: int  # free articles per period
    period_days: int
    read: list[int] = field(default_factory=list)  # article ids, oldest first
    started: int = 0  # the period's first day, in days since the epoch
    changed: bool = False

    @property
    def left(self) -> int:
        """Free articles this browser may still open in this period."""
        return max(self.allowance - len(self.read), 0)

    def admits(self, article: Article) -> bool:
        """Whether the meter lets this browser read ``article``'s gated body, counting
        it if it is new; an article read before in the period is free again."""
        if article.id in self.read:
            return True
        if self.left == 0:
            return False
        if request.method == "HEAD":
            return True  # a HEAD shows nothing: it may not spend the reader's articles
        if not self.read:
            self.started = _today()
        self.read.append(article.id)
        self.changed = True
        return True

    def as_json(self) -> dict:
        """What the wall tells the reader (and the API its client)."""
        return {"free_articles": self.allowance, "left": self.left, "period_days": self.period_days}


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(signing_keys(current_app), salt=METER_SALT)


def _today() -> int:
    return int(utcnow().timestamp() // DAY)


def read_meter() -> Meter:
    """This browser's meter, from its cookie; a fresh one once the period has run out."""
    config = current_app.config
    meter = Meter(config["PAYWALL_FREE_ARTICLES"], config["PAYWALL_METER_DAYS"])
    value = request.cookies.get(config["METER_COOKIE_NAME"])
    if not value or meter.allowance == 0:
        return meter
    try:
        payload = _serializer().loads(value, max_age=meter.period_days * DAY)
    except BadSignature:
        return meter
    if not isinstance(payload, dict):
        return meter
    started, read = payload.get("s"), payload.get("r")
    if not isinstance(started, int) or not isinstance(read, list):
        return meter
    if started + meter.period_days <= _today():
        return meter  # a new period
    meter.started = started
    meter.read = [item for item in read if isinstance(item, int)][: meter.allowance]
    return meter


def write_meter(response, meter: Meter) -> None:
    """Store the meter if this request counted an article; it lasts until the period ends."""
    if not meter.changed:
        return
    ends_in = (meter.started + meter.period_days) * DAY - int(utcnow().timestamp())
    response.set_cookie(
        current_app.config["METER_COOKIE_NAME"],
        _serializer().dumps({"s": meter.started, "r": meter.read}),
        max_age=max(ends_in, 60),
        **cookie_attributes("/"),
    )


@dataclass(frozen=True)
class Access:
    """Whether this request may read an article's gated body, and why."""

    entitled: bool
    gated: bool  # the article is behind the wall for signed-out readers
    meter: Meter


def access_to(article: Article, reader) -> Access:
    """The one rule of who reads a body, for the article page and the API alike:
    everyone for a public article, a signed-in reader always, a signed-out browser
    while its meter has articles left (this one is then counted)."""
    meter = read_meter()
    gated = article.is_gated_for(None)
    if not article.is_gated_for(reader):
        return Access(True, gated, meter)
    return Access(meter.admits(article), gated, meter)
