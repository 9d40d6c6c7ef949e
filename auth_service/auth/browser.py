"""What the reader's browser carries for signing in: the attempt cookie, the way back.

The attempt cookie lists the attempts this browser started that may still be open. It
is what lets the link sign in at once in the browser that asked for it, while any
other browser (or a mail scanner) only gets a confirm button.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, session
from flask_login import current_user, logout_user
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..config import signing_keys
from . import sessions

COOKIE_SALT = "auth-service.attempt-cookie"
COOKIE_PATH = "/login"
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
    path: str
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
        response.set_cookie(
            current_app.config[self.name_setting],
            self._serializer().dumps(items),
            max_age=max_age,
            **self._attributes(),
        )

    def drop(self, response) -> None:
        """Delete the cookie."""
        response.delete_cookie(current_app.config[self.name_setting], **self._attributes())

    def _attributes(self) -> dict:
        """Path and flags: HttpOnly, SameSite=Lax, Secure when the public URL is https."""
        return {
            "path": self.path,
            "httponly": True,
            "samesite": "Lax",
            "secure": current_app.config["SESSION_COOKIE_SECURE"],
        }


ATTEMPTS = SignedList(COOKIE_SALT, "ATTEMPT_COOKIE_NAME", COOKIE_PATH, MAX_REMEMBERED)


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
    session.clear()


def forget_attempts(response) -> None:
    """Drop the attempt cookie once the reader is signed in."""
    ATTEMPTS.drop(response)


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
# Only a sign-in in this browser writes it.
KNOWN_DEVICE = SignedList(DEVICE_SALT, "DEVICE_COOKIE_NAME", "/", MAX_KNOWN_ADDRESSES)


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
