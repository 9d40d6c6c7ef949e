"""What the reader's browser carries for signing in: the attempt cookie, the way back.

The attempt cookie lists the attempts this browser started that may still be open. It
is what lets the link sign in at once in the browser that asked for it, while any
other browser (or a mail scanner) only gets a confirm button.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import current_app, session
from flask_login import current_user, logout_user
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..config import signing_keys
from ..extensions import db
from . import sessions

COOKIE_SALT = "auth-service.attempt-cookie"
COOKIE_PATH = "/login"
MAX_REMEMBERED = 10
MAX_NEXT_LENGTH = 2048
# The cookie outlives its attempts by an hour, so that a reader who comes back late is
# told their code expired rather than that there is nothing to sign in.
GRACE_SECONDS = 3600


def _serializer() -> URLSafeTimedSerializer:
    """Signs the cookie with the current key; accepts the fallback keys too."""
    return URLSafeTimedSerializer(signing_keys(current_app), salt=COOKIE_SALT)


def _cookie_age() -> int:
    """How long the attempt cookie lives, in seconds."""
    return current_app.config["LOGIN_TOKEN_MAX_AGE"] + GRACE_SECONDS


def remembered_attempts(request) -> list[str]:
    """The attempt ids in this browser's cookie, newest first; none if it is forged."""
    value = request.cookies.get(current_app.config["ATTEMPT_COOKIE_NAME"])
    if not value:
        return []
    try:
        ids = _serializer().loads(value, max_age=_cookie_age())
    except BadSignature:
        return []
    if not isinstance(ids, list):
        return []
    return [item for item in ids if isinstance(item, str)][:MAX_REMEMBERED]


def remember_attempt(response, attempt_id: str, earlier: list[str]) -> None:
    """Add ``attempt_id`` to the cookie, keeping the earlier ones that may be open."""
    ids = [attempt_id, *[item for item in earlier if item != attempt_id]][:MAX_REMEMBERED]
    config = current_app.config
    response.set_cookie(
        config["ATTEMPT_COOKIE_NAME"],
        _serializer().dumps(ids),
        max_age=_cookie_age(),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=config["SESSION_COOKIE_SECURE"],
    )


def sign_out_this_browser() -> None:
    """End this browser's session: its server-side row (so a copy of the cookie is
    dead too), the reader, and everything else the cookie held."""
    if current_user.is_authenticated:
        sessions.end_session(current_user.session_key)
        db.session.commit()
    logout_user()
    session.clear()


def forget_attempts(response) -> None:
    """Drop the attempt cookie once the reader is signed in."""
    response.delete_cookie(
        current_app.config["ATTEMPT_COOKIE_NAME"],
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/``: no open redirects."""
    if not target or len(target) > MAX_NEXT_LENGTH:
        return "/"
    if any(ord(char) < 32 or char == "\\" for char in target):
        return "/"
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. "//[": broken IPv6 brackets
        return "/"
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


# --- Browsers that have signed in before -------------------------------------------

DEVICE_SALT = "auth-service.known-device"
DEVICE_COOKIE_AGE = 365 * 24 * 3600
MAX_KNOWN_ADDRESSES = 5


def _address_digests(address: str) -> list[str]:
    """What the known-device cookie keeps of an address, under each live secret key
    (the current one first): keyed, so that nobody can confirm a guessed address from a
    cookie, and never the address itself."""
    keys = reversed(signing_keys(current_app))
    return [
        hmac.new(key.encode(), f"known-device:{address}".encode(), "sha256").hexdigest()[:32]
        for key in keys
    ]


def _device_serializer() -> URLSafeTimedSerializer:
    """Signs the known-device cookie; only a sign-in in this browser can write it."""
    return URLSafeTimedSerializer(signing_keys(current_app), salt=DEVICE_SALT)


def _known_digests(request) -> list[str]:
    """The addresses this browser has signed in with, as digests; none if forged."""
    value = request.cookies.get(current_app.config["DEVICE_COOKIE_NAME"])
    if not value:
        return []
    try:
        digests = _device_serializer().loads(value, max_age=DEVICE_COOKIE_AGE)
    except BadSignature:
        return []
    if not isinstance(digests, list):
        return []
    return [item for item in digests if isinstance(item, str)][:MAX_KNOWN_ADDRESSES]


def is_known_device(request, address: str) -> bool:
    """Whether this browser has signed in with ``address`` before (within a year).

    The exact normalised address, not its inbox: on a domain where "+tags" are other
    people's mailboxes, signing in as one must not vouch for another.
    """
    known = _known_digests(request)
    return any(digest in known for digest in _address_digests(address))


def remember_device(response, request, address: str) -> None:
    """Mark this browser as one that signed in with ``address``.

    Such a browser is not held back by the per-address ceiling that strangers can
    spend (see ``limits``): nobody can lock a reader out of their own browsers.
    """
    digest = _address_digests(address)[0]
    digests = [digest, *[item for item in _known_digests(request) if item != digest]]
    response.set_cookie(
        current_app.config["DEVICE_COOKIE_NAME"],
        _device_serializer().dumps(digests[:MAX_KNOWN_ADDRESSES]),
        max_age=DEVICE_COOKIE_AGE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )


def forget_device(response) -> None:
    """Drop the known-device cookie (the account is deleted)."""
    response.delete_cookie(
        current_app.config["DEVICE_COOKIE_NAME"],
        path="/",
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
