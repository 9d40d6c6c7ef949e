"""Routes of the newsletter. A signed token in the link stands for the reader."""

from __future__ import annotations

import hmac
from datetime import date, datetime

from flask import Blueprint, abort, current_app, make_response, render_template, request
from flask_babel import gettext as _
from flask_login import current_user

from ..auth.addresses import InvalidAddress, normalise_address
from ..errors import error_response, json_error, render_error
from ..extensions import csrf, db
from ..i18n import current_language
from ..mail.rendering import LINK_MARKERS, personalise
from ..security import private_page, reads_json, token_page
from ..storable import FIRST_DAY, LAST_DAY, OutOfCalendar, check_day, moment_in_utc
from . import editions, subscriptions

bp = Blueprint("newsletter", __name__)


def _reader_and_letter():
    """The reader of the token and the newsletter named in ``n``, or a 400 page."""
    reader = subscriptions.reader_from_token(request.args.get("token", ""))
    letter = subscriptions.newsletter(request.args.get("n", "daily")[:64])
    if reader is None or letter is None:
        page = render_error(
            400,
            title=_("This link is not valid"),
            message=_(
                "Copy the whole link from the newsletter, or sign in to manage "
                "your newsletters from your account."
            ),
        )
        abort(make_response(*page))
    return reader, letter


@bp.get("/newsletter/unsubscribe")
def unsubscribe():
    """A button, not an action: mail scanners open links and must not unsubscribe anyone."""
    token_page()
    reader, letter = _reader_and_letter()
    subscribed = subscriptions.open_consent(reader, letter) is not None
    return render_template(
        "newsletter/unsubscribe.html", letter=letter, subscribed=subscribed, done=False
    )


@bp.post("/newsletter/unsubscribe")
@csrf.exempt  # RFC 8058: the mail client posts with no cookie and no form token
def unsubscribe_now():
    """Unsubscribe at once: the one-click POST of a mail client, or the page's button."""
    token_page()
    reader, letter = _reader_and_letter()
    subscriptions.unsubscribe(reader, letter)
    db.session.commit()
    if request.form.get("List-Unsubscribe") == "One-Click" and not request.form.get("page"):
        return _("You are unsubscribed."), 200, {"Content-Type": "text/plain; charset=utf-8"}
    return render_template(
        "newsletter/unsubscribe.html", letter=letter, subscribed=False, done=True
    )


@bp.post("/newsletter/resubscribe")
@csrf.exempt  # the token is the reader's proof, as for unsubscribing
def resubscribe():
    """One click back, from the page that confirmed the unsubscription."""
    token_page()
    reader, letter = _reader_and_letter()
    subscriptions.subscribe(
        reader, letter, wording=_("Oops, subscribe me again"), source=request.path
    )
    db.session.commit()
    return render_template(
        "newsletter/unsubscribe.html", letter=letter, subscribed=True, done=False, resubscribed=True
    )


@bp.route("/newsletter/preferences", methods=["GET", "POST"])
def preferences():
    """Every newsletter with a box: change them without signing in."""
    token_page()
    reader = subscriptions.reader_from_token(request.args.get("token", ""))
    if reader is None:
        return render_error(400, title=_("This link is not valid"))
    saved = False
    if request.method == "POST":
        chosen = set(request.form.getlist("newsletter"))
        subscriptions.choose_ticked(reader, chosen, locale=current_language(), source=request.path)
        db.session.commit()
        saved = True
    return render_template(
        "newsletter/preferences.html",
        choices=subscriptions.subscriptions(reader),
        saved=saved,
        token=request.args.get("token", ""),
    )


@bp.get("/newsletter/<slug>/preview")
def preview(slug: str):
    """An edition as a subscriber would see it, for newsroom staff."""
    # Let in by a header or a staff session, neither of which a shared cache varies on:
    # a stored copy would show the edition before it is sent to anyone asking the URL.
    private_page()
    key = current_app.config["NEWSLETTER_PREVIEW_KEY"]
    given = request.headers.get("X-API-Key", "")
    staff = current_user.is_authenticated and current_user.is_staff
    if not staff and not (key and hmac.compare_digest(given.encode(), key.encode())):
        abort(403)
    letter = subscriptions.newsletter(slug[:64])
    if letter is None:
        abort(404)
    raw_day = request.args.get("date", "")
    try:
        day = check_day(date.fromisoformat(raw_day)) if raw_day else editions.today()
    except OutOfCalendar:
        return error_response(
            400,
            message=_(
                "There is no edition of that date: it must lie between %(first)s and %(last)s.",
                first=FIRST_DAY.isoformat(),
                last=LAST_DAY.isoformat(),
            ),
        )
    except ValueError:
        return error_response(400, message=_("The date must look like 2026-11-28."))
    articles = editions.articles_of(day)
    locale = request.args.get("lang")
    if locale not in current_app.config["LANGUAGES"]:
        locale = current_app.config["BABEL_DEFAULT_LOCALE"]
    _subject, _text, html = editions.render_edition(letter, day, locale, articles)
    return personalise(html, dict.fromkeys(LINK_MARKERS, "#"))


@bp.post("/webhooks/mail-events")
@csrf.exempt  # a server-to-server call, authenticated by the shared secret
@reads_json
def mail_events():
    """Bounces and complaints from the mail provider: those addresses get no newsletter.

    Body: ``{"address": "...", "event": "bounce" | "complaint", "time": ISO 8601}``, or a
    list of those. Header ``X-Webhook-Secret`` must equal ``MAIL_EVENTS_SECRET``.
    """
    secret = current_app.config["MAIL_EVENTS_SECRET"]
    given = request.headers.get("X-Webhook-Secret", "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return json_error(403, "bad_secret", "bad or missing X-Webhook-Secret")
    # Parsed, and checked for depth and unstorable text, by the guard of security.py.
    body = request.get_json(silent=True)
    events = body if isinstance(body, list) else [body]
    parsed, rejected = [], []
    for position, event in enumerate(events):
        try:
            parsed.append(_parse_event(event))
        except ValueError as error:
            rejected.append({"index": position, "error": str(error)})
    if rejected:
        return json_error(422, "nothing_recorded", "nothing recorded", rejected=rejected)
    for address, kind, moment in parsed:
        subscriptions.record_mail_event(address, kind, moment)
    db.session.commit()
    return {"recorded": len(parsed)}, 200


# Longer than any ISO 8601 time ("2026-11-28T07:00:00.000000+05:30" is 32 characters).
MAX_TIME_LENGTH = 64


def _parse_event(event) -> tuple[str, str, datetime]:
    """Check one webhook event: (normalised address, event, time in UTC).

    Each field must have its JSON type: a number or a list is refused by name, never
    turned into a string that might parse (or take seconds to print).
    """
    if not isinstance(event, dict):
        raise ValueError(
            "each event must be a JSON object (the body: one event, or a list of them)"
        )
    kind = event.get("event")
    if not isinstance(kind, str) or kind not in subscriptions.MAIL_EVENTS:
        raise ValueError("'event' must be 'bounce' or 'complaint'")
    address = event.get("address")
    if not isinstance(address, str):
        raise ValueError("'address' must be a string: an email address")
    try:
        address = normalise_address(address[:400])
    except InvalidAddress:
        raise ValueError("'address' is not an email address") from None
    return address, kind, _event_time(event.get("time"))


def _event_time(value) -> datetime:
    """An event's ``time``: ISO 8601 with a time zone, within the calendar we store."""
    if not isinstance(value, str) or len(value) > MAX_TIME_LENGTH:
        raise ValueError("'time' must be an ISO 8601 string, e.g. 2026-11-28T07:00:00Z")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("'time' must be ISO 8601, e.g. 2026-11-28T07:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("'time' must carry a time zone")
    try:
        return moment_in_utc(moment)
    except OutOfCalendar as error:
        raise ValueError(f"'time' is out of range: {error}") from None
