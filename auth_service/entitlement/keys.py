"""The keys that sign entitlement tokens: the current one, rotation, the published set.

ES256 (ECDSA on P-256): verified by every JOSE library a news site may use (PyJWT,
jose for Node, the JVM's and PHP's), and as quick to sign as EdDSA here (about 30 µs).
The newest key that is not retired signs. ``rotate`` retires it and makes a new one;
a retired key's public half stays in the JWKS until every token it signed has expired
(``ENTITLEMENT_TTL`` after retirement, with a minute's slack for clocks), then goes.
"""

from __future__ import annotations

import functools
import secrets
from datetime import datetime, timedelta

from flask import current_app
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select

from ..extensions import db
from ..models import SigningKey, utcnow

ALGORITHM = "ES256"
CLOCK_SLACK = timedelta(seconds=60)


def _new_kid(now: datetime) -> str:
    """A key id that sorts by creation and says nothing else: ``20261201-9f2c…``."""
    return f"{now:%Y%m%d}-{secrets.token_hex(6)}"


def _as_jwk(row: SigningKey) -> ECKey:
    return _parsed(row.kid, row.private_pem)


@functools.lru_cache(maxsize=16)
def _parsed(kid: str, private_pem: str) -> ECKey:
    """A stored key, parsed once per process: a signed-in reader's every request checks
    the token cookie against the published keys."""
    return ECKey.import_key(private_pem, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})


def _ttl() -> timedelta:
    return timedelta(seconds=current_app.config["ENTITLEMENT_TTL"])


def create(now: datetime | None = None) -> SigningKey:
    """A new key pair, current from now on; in the caller's transaction."""
    now = now or utcnow()
    key = ECKey.generate_key("P-256", private=True)
    row = SigningKey(
        kid=_new_kid(now), private_pem=key.as_pem(private=True).decode(), created_at=now
    )
    db.session.add(row)
    return row


def current() -> tuple[SigningKey, ECKey]:
    """The key that signs now.

    A deployment's first key is made on first use and committed at once, in its own
    transaction, so that every process signs with keys the JWKS publishes (a named
    exception to the transaction rule: docs/architecture.md).
    """
    row = db.session.scalar(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc())
        .limit(1)
    )
    if row is None:
        row = create()
        db.session.commit()
    return row, _as_jwk(row)


def rotate(now: datetime | None = None) -> tuple[SigningKey, list[SigningKey]]:
    """Retire every current key, make a new one, and drop keys no token can need any
    more; return the new key and the dropped ones (the caller commits)."""
    now = now or utcnow()
    for row in db.session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        row.retired_at = now
    dropped = expired(now)
    for row in dropped:
        db.session.delete(row)
    return create(now), dropped


def expired(now: datetime | None = None) -> list[SigningKey]:
    """Retired keys whose last token has expired: no verifier needs them."""
    now = now or utcnow()
    return list(
        db.session.scalars(
            select(SigningKey).where(SigningKey.retired_at < now - _ttl() - CLOCK_SLACK)
        )
    )


def published(now: datetime | None = None) -> list[SigningKey]:
    """The keys whose public half verifiers need: current ones, and retired ones until
    their last token has expired. Oldest first."""
    now = now or utcnow()
    still_needed = now - _ttl() - CLOCK_SLACK
    return list(
        db.session.scalars(
            select(SigningKey)
            .where(SigningKey.retired_at.is_(None) | (SigningKey.retired_at >= still_needed))
            .order_by(SigningKey.created_at, SigningKey.kid)
        )
    )


def jwks(now: datetime | None = None) -> dict:
    """The JSON Web Key Set of the published keys: public halves only."""
    return KeySet([_as_jwk(row) for row in published(now)]).as_dict(private=False)


def verification_keys(now: datetime | None = None) -> KeySet:
    """The published keys, to check a token this service signed."""
    return KeySet([_as_jwk(row) for row in published(now)])
