"""Routes of the JSON API. Each reads JSON, calls the rules the HTML views call, answers JSON.

Errors are ``{"error": {"code", "message"}}`` (``errors.json_error``), the message in
the reader's language (``Accept-Language``, as for pages).
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, make_response, request
from flask_babel import gettext as _
from flask_login import current_user

from ..articles import meter, store
from ..auth import addresses, flow, link_request, signin, social
from ..auth.browser import remembered_attempts, safe_next, sign_out_this_browser
from ..auth.forms import ADDRESS_ERRORS, FORMAT_HINT, NEWSLETTER_WORDING, REFUSALS
from ..auth.limits import (
    per_address,
    per_address_and_network,
    per_ip_checks,
    per_ip_posts,
    resends_per_chain,
)
from ..entitlement import tokens
from ..errors import json_error
from ..extensions import db
from ..mail.rendering import public_url_for
from ..metrics import count_sign_in
from ..models import DAILY_NEWSLETTER, iso_utc
from ..newsletter import subscriptions
from ..security import private_page, reads_json
from . import cors
from .openapi import document

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# The publisher's routes (publisher.py): a key opens them, not a cookie and an Origin.
KEY_ENDPOINTS = {"api.put_article", "api.delete_article"}

MAX_CODE_LENGTH = 64


class ApiError(Exception):
    """A request the API refuses: its status, code, message and any details."""

    def __init__(self, status: int, code: str, message, **details):
        super().__init__(code)
        self.status, self.code, self.message, self.details = status, code, message, details


@bp.errorhandler(ApiError)
def _refused(error: ApiError):
    return json_error(error.status, error.code, error.message, **error.details)


@bp.before_request
def _only_allowed_origins_change_anything():
    """A request that may change something must come from an allowed page, as JSON.

    This stands in for the forms' CSRF token: a page elsewhere cannot make the reader's
    browser send it (a cross-site form cannot send JSON, and fetch says its Origin).
    """
    if request.method not in cors.CHANGING_METHODS or request.endpoint in KEY_ENDPOINTS:
        return None
    if not cors.allowed_origin(request.headers.get("Origin")):
        raise ApiError(
            403,
            "origin_not_allowed",
            _("This request must come from a page of this site or of an allowed site."),
        )
    if not request.is_json:
        raise ApiError(415, "json_required", _("Send the request as JSON (application/json)."))
    return None


def not_an_object() -> ApiError:
    """The refusal of a body that is not a JSON object."""
    return ApiError(400, "invalid_json", _("The body must be a JSON object."))


def json_object() -> dict:
    """The JSON object sent (the input guard has refused unstorable text already)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise not_an_object()
    return body


def field_refused(error: link_request.InvalidField) -> ApiError:
    """The 422 naming the member of the body that is wrong."""
    return ApiError(422, "invalid_field", error.message, field=error.field)


def _invalid_email(message) -> ApiError:
    return ApiError(422, "invalid_email", message, hint=FORMAT_HINT)


@bp.post("/login")
@per_ip_posts
@per_address_and_network
@per_address
@resends_per_chain
@reads_json
def login():
    """Mail a link and code to the address: 202, and the attempt cookie.

    The answer is the same whether the address has an account or not.
    """
    private_page()
    try:
        wanted = link_request.of_request()  # read as the address limits read it
    except link_request.NotAnObject:
        raise not_an_object() from None
    except link_request.InvalidField as error:
        raise field_refused(error) from None
    if not wanted.email:
        raise _invalid_email(ADDRESS_ERRORS["empty"])
    try:
        address = addresses.normalise_address(wanted.email)
    except addresses.InvalidAddress as error:
        raise _invalid_email(ADDRESS_ERRORS[error.reason]) from None
    asked = flow.ask_for_link(
        address,
        next_url=wanted.next_url,
        newsletter=DAILY_NEWSLETTER in wanted.newsletters,
        honeypot=wanted.website,
        as_typed=wanted.as_typed,
    )
    if asked.outcome == "suggest":
        raise ApiError(
            422,
            "invalid_email",
            _("Did you mean %(suggestion)s?", suggestion=asked.suggestion),
            hint=FORMAT_HINT,
            suggestion=asked.suggestion,
        )
    if asked.outcome == "refuse":
        raise ApiError(422, "address_refused", REFUSALS[asked.refusal])
    response = make_response(jsonify(sent_to=address), 202)
    if asked.outcome == "sent":
        db.session.commit()
        flow.remember_sent(response, asked.issued)
    return response


@bp.get("/providers")
def providers():
    """The providers the wall shows a "Sign in with" button for, in order."""
    return jsonify(
        providers=[
            {"name": item.name, "label": item.label, "brand": item.style, "icon": item.icon}
            for item in social.providers().values()
        ]
    )


@bp.post("/login/with/<name>")
@per_ip_posts
@reads_json
def login_with(name: str):
    """Start a sign-in with a provider: the URL to send the browser to.

    The round trip's secrets go into this browser's session cookie, as for the button
    of the HTML form; the provider sends the reader back to ``next``.
    """
    private_page()
    provider = social.providers().get(name)
    if provider is None:
        raise ApiError(404, "not_found", _("There is no sign-in provider of this name."))
    try:
        wanted = link_request.of_request()  # its next and newsletters; no address
    except link_request.NotAnObject:
        raise not_an_object() from None
    except link_request.InvalidField as error:
        raise field_refused(error) from None
    next_url = safe_next(wanted.next_url)
    if current_user.is_authenticated:
        return jsonify(url=next_url)
    carried = social.Carried(
        next_url=next_url,
        newsletter_wording=(
            str(NEWSLETTER_WORDING) if DAILY_NEWSLETTER in wanted.newsletters else None
        ),
    )
    callback = public_url_for("auth.social_callback", name=provider.name)
    try:
        url = social.start(provider, callback, carried)
    except social.SocialSignInError:
        raise ApiError(
            503,
            "provider_unavailable",
            _("%(provider)s is not answering", provider=provider.label),
        ) from None
    return jsonify(url=url)


CODE_REFUSALS = {
    "expired": (410, "expired"),
    "used": (410, "used"),
    "too_many_tries": (410, "too_many_tries"),
    "invalid": (400, "invalid"),
}


def _code_refusal(error: signin.SignInError) -> ApiError:
    """What to tell a browser whose code did not sign in."""
    if error.reason == "malformed_code":
        return ApiError(
            422, "malformed_code", _("The code is the 6 digits in the email, for example 123456.")
        )
    if error.reason == "wrong_code":
        return ApiError(
            422,
            "wrong_code",
            _("This code is not the one in the email."),
            tries_left=error.tries_left,
        )
    messages = {
        "expired": _("This code has expired. Ask for a new link."),
        "used": _("This code has already been used. Ask for a new link if you need one."),
        "too_many_tries": _("Too many wrong codes were tried. Ask for a new link."),
        "invalid": _("This code cannot be used. Ask for a new link."),
    }
    status, code = CODE_REFUSALS.get(error.reason, (400, "invalid"))
    return ApiError(status, code, messages.get(error.reason, messages["invalid"]))


@bp.post("/login/code")
@per_ip_checks
@reads_json
def login_code():
    """Sign in the browser that asked, with the code from the mail."""
    private_page()
    code = json_object().get("code", "")
    if not isinstance(code, str) or len(code) > MAX_CODE_LENGTH:
        raise field_refused(link_request.not_text("code", MAX_CODE_LENGTH))
    if not remembered_attempts(request):
        raise ApiError(
            400, "no_attempt", _("This browser has not asked for a link. Ask for one first.")
        )
    try:
        attempt = flow.consume_code(code)
    except signin.SignInError as error:
        count_sign_in("code", error.reason)
        raise _code_refusal(error) from None
    signed_in = flow.complete_sign_in(attempt, method="code", same_browser=True)
    db.session.commit()
    count_sign_in("code", "signed_in")
    response = make_response(jsonify(_me(signed_in.reader) | {"next": signed_in.next_url}))
    flow.open_session(signed_in, response)
    return response


def _me(reader) -> dict:
    """What the news site's page may know of the reader of this browser."""
    if reader is None or not reader.is_authenticated:
        return {"signed_in": False}
    letters = [letter.slug for letter, on in subscriptions.subscriptions(reader) if on]
    return {"signed_in": True, "email": reader.email, "newsletters": letters}


@bp.get("/me")
def me():
    """Who is signed in in this browser; never stored by a cache."""
    private_page()
    return jsonify(_me(current_user))


@bp.get("/entitlement")
def entitlement():
    """The signed token the news site's servers verify, for a signed-in reader."""
    private_page()
    if not current_user.is_authenticated:
        raise ApiError(401, "not_signed_in", _("Nobody is signed in in this browser."))
    issued = tokens.issue(current_user._get_current_object())
    return jsonify(token=issued.token, expires_at=iso_utc(issued.expires_at))


@bp.post("/logout")
@reads_json
def logout():
    """Sign this browser out: 204."""
    private_page()
    sign_out_this_browser()
    db.session.commit()
    return "", 204


@bp.get("/articles/<slug>")
def article(slug: str):
    """An article as the wall shows it; ``body_html`` only for a reader entitled to it."""
    found = store.find_to_read(slug)
    if found is None:
        raise ApiError(404, "not_found", _("There is no article at this address."))
    access = meter.access_to(found, current_user)
    if current_user.is_authenticated or access.meter.allowance:
        private_page()
    answer = {
        "slug": found.slug,
        "title": found.title,
        "kicker": found.kicker,
        "standfirst": found.standfirst,
        "opening_html": found.opening_html,
        "access": found.access,
        "entitled": access.entitled,
        "signed_in": current_user.is_authenticated,
        "meter": access.meter.as_json(),
    }
    if access.entitled:
        answer["body_html"] = found.body_html
    response = make_response(jsonify(answer))
    meter.write_meter(response, access.meter)
    return response


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of these routes."""
    return jsonify(document(current_app))
