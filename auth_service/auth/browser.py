"""What the reader's browser carries for signing in: the attempt cookie, the way back.

The attempt cookie lists the attempts this browser started that may still be open. It
is what lets the link sign in at once in the browser that asked for it, while any
other browser (or a mail scanner) only gets a confirm button.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, session, url_for
from flask_login import current_user, logout_user
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..config import origin_of, signing_keys
from ..entitlement import tokens
from ..security import cookie_attributes
from . import sessions

COOKIE_SALT = "auth-service.attempt-cookie"
# The login pages, and the API's sign-in (the wall inside the news site's pages).
COOKIE_PATHS = ("/login", "/api/v1/login")
MAX_REMEMBERED = 10
MAX_NEXT_LENGTH = 2048
# The cookie outlives its attempts by an hour, so that a reader who comes back late is
# told their code expired rather than that there is nothing to sign in.
GRACE_SECONDS = 3600


@dataclass(frozen=True)
class SignedList:
    """A cookie holding a short list of strings, newest first, signed with the secret
    keys (the current one signs, the fallbacks still verify) so that only the service
    can write it. A forged, stale or malformed cookie reads as an empty list."""

    salt: str
    name_setting: str  # the config key of the cookie's name
    # Below the service's public path ("/login" is "/compte/login" there). A cookie
    # needed by more than one part of the site is written, and dropped, at each path.
    paths: tuple[str, ...]
    most: int

    def _serializer(self) -> URLSafeTimedSerializer:
        """The signer, with this cookie's own salt."""
        return URLSafeTimedSerializer(signing_keys(current_app), salt=self.salt)

    def read(self, request, max_age: int) -> list[str]:
        """The strings this browser's cookie holds, newest first."""
        value = request.cookies.get(current_app.config[self.name_setting])
        if not value:
            return []
        try:
            items = self._serializer().loads(value, max_age=max_age)
        except BadSignature:
            return []
        if not isinstance(items, list):
            return []
        return [item for item in items if isinstance(item, str)][: self.most]

    def write(self, response, newest: str, earlier: list[str], max_age: int) -> None:
        """Put ``newest`` first, keep the earlier ones (without repeating it)."""
        items = [newest, *[item for item in earlier if item != newest]][: self.most]
        value = self._serializer().dumps(items)
        for path in self.paths:
            response.set_cookie(
                current_app.config[self.name_setting],
                value,
                max_age=max_age,
                **cookie_attributes(path),
            )

    def drop(self, response) -> None:
        """Delete the cookie, at each of its paths."""
        for path in self.paths:
            response.delete_cookie(current_app.config[self.name_setting], **cookie_attributes(path))


ATTEMPTS = SignedList(COOKIE_SALT, "ATTEMPT_COOKIE_NAME", COOKIE_PATHS, MAX_REMEMBERED)


def _cookie_age() -> int:
    """How long the attempt cookie lives, in seconds."""
    return current_app.config["LOGIN_TOKEN_MAX_AGE"] + GRACE_SECONDS


def remembered_attempts(request) -> list[str]:
    """The attempt ids in this browser's cookie, newest first; none if it is forged."""
    return ATTEMPTS.read(request, _cookie_age())


def remember_attempt(response, attempt_id: str, earlier: list[str]) -> None:
    """Add ``attempt_id`` to the cookie, keeping the earlier ones that may be open."""
    ATTEMPTS.write(response, attempt_id, earlier, _cookie_age())


def sign_out_this_browser() -> None:
    """End this browser's session: its server-side row (so a copy of the cookie is
    dead too), the reader, and everything else the cookie held. The caller commits."""
    if current_user.is_authenticated:
        sessions.end_session(current_user.session_key)
    logout_user()
    tokens.clear_in_this_response()  # the news site's token cookie goes too
    session.clear()


def forget_attempts(response) -> None:
    """Drop the attempt cookie once the reader is signed in."""
    ATTEMPTS.drop(response)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site or a page of an allowed origin, else the
    front page: no open redirects.

    A ``next`` is a whole path, prefix included (``/compte/articles/…`` when the service
    runs under a path of the news site), as ``url_for`` writes it; a path of the news
    site outside the prefix is on the same site too. An absolute ``http(s)`` URL is kept
    when its origin is in ``ALLOWED_ORIGINS`` (the article on the news site, where the
    wall was embedded). The front page is ``/``, or the prefix's own (``/compte/``).
    """
    home = url_for("articles.front_page")
    if not target or len(target) > MAX_NEXT_LENGTH:
        return home
    if any(ord(char) < 32 or char == "\\" for char in target):
        return home
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. "//[": broken IPv6 brackets
        return home
    if parts.scheme or parts.netloc:
        return target if _on_allowed_origin(parts) else home
    if not target.startswith("/") or target.startswith("//"):
        return home
    return target


def _on_allowed_origin(parts) -> bool:
    """Whether an absolute URL is a page of an origin in ``ALLOWED_ORIGINS``."""
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return False
    try:
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        return False
    return origin_of(parts) in current_app.config["ALLOWED_ORIGINS"]


# --- Browsers that have signed in before -------------------------------------------

DEVICE_SALT = "auth-service.known-device"
DEVICE_COOKIE_AGE = 365 * 24 * 3600
MAX_KNOWN_ADDRESSES = 5
# Only a sign-in in this browser writes it.
KNOWN_DEVICE = SignedList(DEVICE_SALT, "DEVICE_COOKIE_NAME", ("/",), MAX_KNOWN_ADDRESSES)


def _address_digests(address: str) -> list[str]:
    """What the known-device cookie keeps of an address, under each live secret key
    (the current one first): keyed, so that nobody can confirm a guessed address from a
    cookie, and never the address itself."""
    keys = reversed(signing_keys(current_app))
    return [
        hmac.new(key.encode(), f"known-device:{address}".encode(), "sha256").hexdigest()[:32]
        for key in keys
    ]


def is_known_device(request, address: str) -> bool:
    """Whether this browser has signed in with ``address`` before (within a year).

    The exact normalised address, not its inbox: on a domain where "+tags" are other
    people's mailboxes, signing in as one must not vouch for another.
    """
    known = KNOWN_DEVICE.read(request, DEVICE_COOKIE_AGE)
    return any(digest in known for digest in _address_digests(address))


def remember_device(response, request, address: str) -> None:
    """Mark this browser as one that signed in with ``address``.

    Such a browser is not held back by the per-address ceiling that strangers can
    spend (see ``limits``): nobody can lock a reader out of their own browsers.
    """
    earlier = KNOWN_DEVICE.read(request, DEVICE_COOKIE_AGE)
    KNOWN_DEVICE.write(response, _address_digests(address)[0], earlier, DEVICE_COOKIE_AGE)


def forget_device(response) -> None:
    """Drop the known-device cookie (the account is deleted)."""
    KNOWN_DEVICE.drop(response)
