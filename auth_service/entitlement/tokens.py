"""Entitlement tokens: what the news site's servers check to render an article's body.

A JWT (ES256, with the key's ``kid``): ``iss`` the service's ``PUBLIC_URL``, ``aud``
``ENTITLEMENT_AUDIENCE``, ``sub`` the reader's opaque public id (never the address),
``iat``, ``exp`` (``ENTITLEMENT_TTL`` later) and ``ent: ["registered"]``. It travels in
a cookie on ``ENTITLEMENT_COOKIE_DOMAIN`` (the news site's parent domain), renewed
while the reader keeps visiting and cleared when they sign out; a token already
handed out stays valid until it expires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, g, request
from flask_login import current_user
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from ..extensions import db
from ..models import Reader, utcnow
from ..security import cookie_attributes
from . import keys

ENTITLEMENTS = ["registered"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entitlement:
    """A signed token and when it expires."""

    token: str
    expires_at: datetime


def issue(reader: Reader, now: datetime | None = None) -> Entitlement:
    """Sign a token for ``reader`` with the current key."""
    now = (now or utcnow()).replace(microsecond=0)
    config = current_app.config
    expires = now + timedelta(seconds=config["ENTITLEMENT_TTL"])
    row, key = keys.current()
    claims = {
        "iss": config["PUBLIC_URL"],
        "aud": config["ENTITLEMENT_AUDIENCE"],
        "sub": reader.public_id,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "ent": list(ENTITLEMENTS),
    }
    token = jwt.encode({"alg": keys.ALGORITHM, "kid": row.kid}, claims, key)
    return Entitlement(token, expires)


def verify(token: str, now: datetime | None = None) -> dict | None:
    """The claims of a token this service signed and that is still valid, else ``None``."""
    config = current_app.config
    try:
        decoded = jwt.decode(token[:4096], keys.verification_keys(now), algorithms=[keys.ALGORITHM])
        JWTClaimsRegistry(
            now=int((now or utcnow()).timestamp()),
            iss={"essential": True, "value": config["PUBLIC_URL"]},
            aud={"essential": True, "value": config["ENTITLEMENT_AUDIENCE"]},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        ).validate(decoded.claims)
    except (JoseError, ValueError, TypeError):
        return None
    return decoded.claims


# --- The cookie ---------------------------------------------------------------------


def clear_in_this_response() -> None:
    """Have this response delete the entitlement cookie (sign-out, deletion)."""
    g.clear_entitlement = True


def _cookie_attributes() -> dict:
    """The flags of every cookie of ours, on the news site's domain and all its paths
    (not only under the service's own path prefix)."""
    return {
        **cookie_attributes(),
        "domain": current_app.config["ENTITLEMENT_COOKIE_DOMAIN"],
        "path": "/",
    }


def _needs_renewal(value: str | None, reader: Reader, now: datetime) -> bool:
    """Whether the browser's token is missing, not ours, someone else's, or half spent."""
    claims = verify(value, now) if value else None
    if claims is None or claims.get("sub") != reader.public_id:
        return True
    half = current_app.config["ENTITLEMENT_TTL"] / 2
    return claims["exp"] - now.timestamp() < half


# Answers that are the same for everyone and may be cached: they carry no token.
SHARED_ENDPOINTS = {
    "static",
    "entitlement.jwks",
    "embed.script",
    "embed.stylesheet",
    "health.healthz",
}


def refresh_cookie(response):
    """After each request: give a signed-in browser a fresh token when its own is missing
    or half spent; take it from a browser that signed out or is not signed in.

    Never on shared, cacheable answers (static files, the JWKS, the script), and never
    when the database could not say who is signed in: an outage must not sign readers
    out of the news site, nor turn a calm 503 into a 500.
    """
    config = current_app.config
    if not config["ENTITLEMENT_COOKIE_DOMAIN"] or request.endpoint in SHARED_ENDPOINTS:
        return response
    if g.get("reader_unknown"):  # the database did not answer when the session was read
        return response
    try:
        return _refresh(response)
    except Exception:
        log.exception("Entitlement: the token cookie could not be renewed")
        db.session.rollback()
        return response


def _refresh(response):
    config = current_app.config
    name = config["ENTITLEMENT_COOKIE_NAME"]
    value = request.cookies.get(name)
    signed_in = current_user.is_authenticated and not g.get("clear_entitlement")
    if not signed_in:
        if value or g.get("clear_entitlement"):
            response.delete_cookie(name, **_cookie_attributes())
        return response
    now = utcnow()
    reader = current_user._get_current_object()
    if _needs_renewal(value, reader, now):
        entitlement = issue(reader, now)
        response.set_cookie(
            name,
            entitlement.token,
            max_age=config["ENTITLEMENT_TTL"],
            **_cookie_attributes(),
        )
    return response
