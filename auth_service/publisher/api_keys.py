"""Publisher API keys: made and shown once, kept as a hash, revoked, checked.

A key is ``pk_`` and 43 random URL-safe characters (256 bits). Only its SHA-256 is
stored, so a copy of the database holds no usable key; with that much entropy a plain
hash needs no salt or slow hashing, and lets a request find its key in one lookup.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import g, request
from sqlalchemy import select

from ..extensions import db
from ..models import ApiKey, utcnow

PREFIX = "pk_"
MAX_KEY_LENGTH = 200


class DuplicateName(ValueError):
    """A key of that name exists already."""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(name: str) -> tuple[ApiKey, str]:
    """A new key named ``name``: its row (the caller commits) and the key, to show once."""
    if db.session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise DuplicateName(name)
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, key_hash=_hash(key))
    db.session.add(row)
    return row, key


def revoke(name: str) -> ApiKey | None:
    """Revoke the live key named ``name``; ``None`` if there is none (the caller commits)."""
    row = db.session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
    if row is not None:
        row.revoked_at = utcnow()
    return row


def all_keys() -> list[ApiKey]:
    """Every key, oldest first, revoked ones included."""
    return list(db.session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def presented() -> str | None:
    """The key in this request's ``Authorization: Bearer`` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_LENGTH:
        return None
    return key


def rate_key() -> str:
    """What the per-key rate limit counts by: the live key, or, for a request with no
    valid key, its client address (so that guesses are limited too)."""
    row = authenticated()
    return f"api-key:{row.id}" if row is not None else f"api-key-refused:{request.remote_addr}"


def authenticated() -> ApiKey | None:
    """The live key of this request (looked up once), its use noted (the caller
    commits); else ``None``."""
    if "api_key" not in g:
        key = presented()
        row = None
        if key is not None:
            row = db.session.scalar(
                select(ApiKey).where(ApiKey.key_hash == _hash(key), ApiKey.revoked_at.is_(None))
            )
        if row is not None:
            row.last_used_at = utcnow()
        g.api_key = row
    return g.api_key
