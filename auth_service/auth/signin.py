"""The rules of sign-in links and codes: issue, check, consume.

Nothing here touches ``request`` or ``session``: views hand in what the reader sent and
get back an attempt or a :class:`SignInError` that says what went wrong. Only hashes of
the link's random part and of the code reach the database, and every consumption is
one conditional ``UPDATE`` so that two racing clicks cannot both sign in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import and_, case, literal, null, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..config import signing_keys
from ..extensions import db
from ..models import DAILY_NEWSLETTER, LoginAttempt, Reader, SignInEvent, utcnow
from ..newsletter import subscriptions
from ..publisher import webhooks
from . import sessions

LINK_SALT = "auth-service.login-link"
ATTEMPT_ID = re.compile(r"[0-9a-f]{32}")
CODE = re.compile(r"[0-9]{6}")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class SignInError(Exception):
    """A link or code that cannot sign anyone in.

    ``reason`` is ``"invalid"`` (tampered, unknown), ``"expired"``, ``"used"`` (consumed,
    or voided by another sign-in), ``"too_many_tries"`` (dead after too many wrong
    codes), or, with ``tries_left`` set, ``"wrong_code"`` (a guess that missed) or
    ``"malformed_code"`` (not six digits: a typing slip, which costs no try).
    """

    def __init__(self, reason: str, tries_left: int = 0, attempt: LoginAttempt | None = None):
        super().__init__(reason)
        self.reason = reason
        self.tries_left = tries_left
        # The attempt, when known, so the reader can be offered a new link at once.
        self.attempt = attempt


@dataclass(frozen=True)
class IssuedLogin:
    """A fresh attempt with the secrets that go into the mail and nowhere else."""

    attempt: LoginAttempt
    token: str
    code: str


def _serializer() -> URLSafeTimedSerializer:
    """The link serializer, verifying with old keys and signing with the current one."""
    return URLSafeTimedSerializer(signing_keys(current_app), salt=LINK_SALT)


def _hash_secret(secret: str) -> str:
    """Hash a link's random part; 256 random bits need no key or stretching."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _code_hashes(attempt_id: str, code: str) -> list[str]:
    """Keyed hashes of a code under every live secret key, the current one first.

    A six-digit code has only a million values, so a bare hash could be reversed from a
    database dump; keying it with the secret key prevents that.
    """
    config = current_app.config
    keys = [config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", [])]
    message = f"{attempt_id}:{code}".encode()
    return [hmac.new(key.encode(), message, hashlib.sha256).hexdigest() for key in keys]


def issue(
    address: str,
    *,
    next_url: str = "/",
    locale: str = "fr",
    newsletter: bool = False,
    newsletter_wording: str | None = None,
    chain_id: str | None = None,
    now: datetime | None = None,
) -> IssuedLogin:
    """Start an attempt for a normalised ``address`` in the caller's transaction.

    Earlier open attempts of the address stay valid: mails can arrive out of order.
    ``chain_id`` is the run of "send again" this attempt continues (none: it starts one).
    """
    now = now or utcnow()
    attempt_id = secrets.token_hex(16)
    random_part = secrets.token_urlsafe(32)
    code = f"{secrets.randbelow(10**6):06d}"
    attempt = LoginAttempt(
        id=attempt_id,
        email=address,
        token_hash=_hash_secret(random_part),
        code_hash=_code_hashes(attempt_id, code)[0],
        tries_left=current_app.config["LOGIN_CODE_TRIES"],
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["LOGIN_TOKEN_MAX_AGE"]),
        next_url=next_url,
        locale=locale,
        newsletter=newsletter,
        newsletter_wording=newsletter_wording if newsletter else None,
        chain_id=chain_id or attempt_id,
    )
    db.session.add(attempt)
    db.session.flush()
    token = _serializer().dumps({"a": attempt_id, "r": random_part})
    return IssuedLogin(attempt=attempt, token=token, code=code)


def _read_token(token: str) -> tuple[str, str]:
    """Check a link's signature and age; return its attempt id and random part.

    Runs before any database work, so a tampered link costs nothing.
    """
    try:
        payload = _serializer().loads(token, max_age=current_app.config["LOGIN_TOKEN_MAX_AGE"])
    except SignatureExpired:
        raise SignInError("expired") from None
    except BadSignature:
        raise SignInError("invalid") from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("a"), str)
        or not isinstance(payload.get("r"), str)
        or not ATTEMPT_ID.fullmatch(payload["a"])
    ):
        raise SignInError("invalid")
    return payload["a"], payload["r"]


def _why_closed(attempt: LoginAttempt | None, now: datetime) -> SignInError:
    """Explain why an attempt could not be consumed."""
    if attempt is None:
        return SignInError("invalid")
    if attempt.used_at is not None:
        return SignInError("used", attempt=attempt)
    if attempt.tries_left <= 0:
        return SignInError("too_many_tries", attempt=attempt)
    if attempt.expires_at <= now:
        return SignInError("expired", attempt=attempt)
    return SignInError("invalid")


def _is_open(now: datetime):
    """The SQL condition of an attempt that can still sign someone in."""
    return and_(
        LoginAttempt.used_at.is_(None),
        LoginAttempt.expires_at > now,
        LoginAttempt.tries_left > 0,
    )


def check_link(token: str, *, now: datetime | None = None) -> LoginAttempt:
    """Return the open attempt a link belongs to, changing nothing.

    Used for the confirm page that a mail scanner or another browser sees.
    """
    now = now or utcnow()
    attempt_id, random_part = _read_token(token)
    attempt = db.session.get(LoginAttempt, attempt_id)
    if attempt is None or not hmac.compare_digest(attempt.token_hash, _hash_secret(random_part)):
        raise SignInError("invalid")
    if attempt.used_at is not None or attempt.tries_left <= 0 or attempt.expires_at <= now:
        raise _why_closed(attempt, now)
    return attempt


def lock_attempts_of(attempt_ids: list[str]) -> None:
    """Lock every attempt of the addresses these attempts belong to, in id order.

    The one lock order of every sign-in write: the address's attempts first (by id),
    then the reader and what hangs from it. Two links, or a link and a code, of one
    address opened at the same instant then queue one behind the other instead of each
    holding one attempt and waiting for the other's (a deadlock on PostgreSQL). SQLite
    has no row locks; its single writer already serialises these transactions.
    """
    addresses = select(LoginAttempt.email).where(LoginAttempt.id.in_(attempt_ids))
    _lock_attempts(LoginAttempt.email.in_(addresses.scalar_subquery()))


def lock_attempts_of_address(address: str) -> None:
    """:func:`lock_attempts_of` for an address (account deletion takes the same order)."""
    _lock_attempts(LoginAttempt.email == address)


def _lock_attempts(which) -> None:
    """Lock the attempts ``which`` selects, in id order: the one order of every taker."""
    db.session.execute(
        select(LoginAttempt.id).where(which).order_by(LoginAttempt.id).with_for_update()
    ).all()


def consume_link(token: str, *, now: datetime | None = None) -> LoginAttempt:
    """Consume a link once and return its attempt; raise :class:`SignInError` if not."""
    now = now or utcnow()
    attempt_id, random_part = _read_token(token)
    lock_attempts_of([attempt_id])
    won = db.session.execute(
        update(LoginAttempt)
        .where(
            LoginAttempt.id == attempt_id,
            LoginAttempt.token_hash == _hash_secret(random_part),
            _is_open(now),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        attempt = db.session.get(LoginAttempt, attempt_id)
        if attempt is not None and not hmac.compare_digest(
            attempt.token_hash, _hash_secret(random_part)
        ):
            attempt = None
        error = _why_closed(attempt, now)
        db.session.rollback()  # release the locks at once
        raise error
    return _reload(attempt_id)


def consume_code(attempt_ids: list[str], code: str, *, now: datetime | None = None) -> LoginAttempt:
    """Consume the attempt among ``attempt_ids`` whose code is ``code``.

    Comparing the code and spending a try are one ``UPDATE``: each open attempt listed
    is either opened by the code or loses a try, in the same statement, so parallel
    guesses cannot be compared against a try count that another guess has already spent
    (PostgreSQL re-reads a row locked by a concurrent guess before comparing). No more
    than ``LOGIN_CODE_TRIES`` guesses are ever compared, whatever the concurrency.

    A wrong code costs one try on every open attempt listed, so asking for several links
    does not multiply an attacker's guesses. Text that is not six digits cannot match
    and costs nothing. Full-width digits and spaces, as phones type them, are accepted.
    """
    now = now or utcnow()
    code = unicodedata.normalize("NFKC", code).replace(" ", "").strip()
    attempt_ids = [item for item in attempt_ids if ATTEMPT_ID.fullmatch(item)]
    if not attempt_ids:
        raise SignInError("invalid")
    if not CODE.fullmatch(code):
        raise _code_refusal("malformed_code", attempt_ids, now)
    lock_attempts_of(attempt_ids)
    matches = or_(
        *(
            and_(
                LoginAttempt.id == attempt_id,
                LoginAttempt.code_hash.in_(_code_hashes(attempt_id, code)),
            )
            for attempt_id in attempt_ids
        )
    )
    outcome = db.session.execute(
        update(LoginAttempt)
        .where(LoginAttempt.id.in_(attempt_ids), _is_open(now))
        .values(
            used_at=case((matches, literal(now, LoginAttempt.used_at.type)), else_=null()),
            tries_left=case((matches, LoginAttempt.tries_left), else_=LoginAttempt.tries_left - 1),
        )
        .returning(LoginAttempt.id, LoginAttempt.used_at)
        .execution_options(synchronize_session=False)
    ).all()
    won = next((attempt_id for attempt_id, used_at in outcome if used_at is not None), None)
    if won is not None:
        return _reload(won)
    # The one commit of this module, on purpose: the try a wrong guess spent must stay
    # spent whatever the caller does with the error (a view that rolls back on its
    # error path would otherwise hand out free guesses).
    db.session.commit()
    raise _code_refusal("wrong_code", attempt_ids, now)


def _code_refusal(reason: str, attempt_ids: list[str], now: datetime) -> SignInError:
    """``reason`` with the tries left, or why none of the attempts is open any more."""
    tries_left = db.session.scalar(
        select(LoginAttempt.tries_left)
        .where(LoginAttempt.id.in_(attempt_ids), _is_open(now))
        .order_by(LoginAttempt.tries_left.desc())
        .limit(1)
    )
    if tries_left:
        return SignInError(reason, tries_left=tries_left)
    return why_none_is_open(attempt_ids)


def why_none_is_open(attempt_ids: list[str]) -> SignInError:
    """Why none of these attempts can sign in any more: too many wrong codes, expired,
    or used (consumed, or voided by another sign-in), told of the latest of them."""
    attempt_ids = [item for item in attempt_ids if ATTEMPT_ID.fullmatch(item)]
    attempts = db.session.scalars(
        select(LoginAttempt).where(LoginAttempt.id.in_(attempt_ids))
    ).all()
    latest = max(attempts, key=lambda attempt: attempt.created_at, default=None)
    unused = [attempt for attempt in attempts if attempt.used_at is None]
    if any(attempt.tries_left <= 0 for attempt in unused):
        return SignInError("too_many_tries", attempt=latest)
    if unused:
        return SignInError("expired", attempt=latest)
    return SignInError("used", attempt=latest)


def _reload(attempt_id: str) -> LoginAttempt:
    """Read an attempt again after an ``UPDATE`` that bypassed the session."""
    return db.session.execute(
        select(LoginAttempt)
        .where(LoginAttempt.id == attempt_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


def open_attempts(attempt_ids: list[str], *, now: datetime | None = None) -> list[LoginAttempt]:
    """The attempts among ``attempt_ids`` that can still sign in, newest first."""
    attempt_ids = [item for item in attempt_ids if ATTEMPT_ID.fullmatch(item)]
    if not attempt_ids:
        return []
    now = now or utcnow()
    return list(
        db.session.scalars(
            select(LoginAttempt)
            .where(LoginAttempt.id.in_(attempt_ids), _is_open(now))
            .order_by(LoginAttempt.created_at.desc())
        )
    )


def complete(
    attempt: LoginAttempt,
    *,
    method: str,
    newsletter_wording: str | None = None,
    newsletter_source: str | None = None,
    user_agent: str = "",
    network: str = "",
    replacing_session: str | None = None,
    now: datetime | None = None,
) -> Reader:
    """Finish a consumed attempt: the reader's account, consent, sign-in record, session.

    The attempt proved the address; :func:`sign_in_address` does the rest. A
    daily-newsletter consent is recorded only when ``newsletter_wording`` is given: the
    view passes the box the reader ticked in the browser that signs in, never what
    another browser asked for.
    """
    return sign_in_address(
        attempt.email,
        locale=attempt.locale,
        method=method,
        newsletter_wording=newsletter_wording,
        newsletter_source=newsletter_source or attempt.next_url,
        user_agent=user_agent,
        network=network,
        replacing_session=replacing_session,
        now=now,
    )


def sign_in_address(
    address: str,
    *,
    locale: str,
    method: str,
    newsletter_wording: str | None = None,
    newsletter_source: str | None = None,
    user_agent: str = "",
    network: str = "",
    replacing_session: str | None = None,
    now: datetime | None = None,
) -> Reader:
    """Sign in the owner of a proven ``address`` (by a link, a code or a provider).

    Creates the account at its first sign-in, voids every open link and code of the
    address, records the consent when ``newsletter_wording`` is given, and opens a
    server-side session (its key is on the returned reader's ``session_key``;
    ``replacing_session`` is the one this browser held until now, which ends). The
    caller commits.
    """
    now = now or utcnow()
    user_agent = CONTROL_CHARACTERS.sub("", user_agent)[:512]  # browsers send what they like
    network = network[:64]
    reader = _reader_for(address, locale, now)
    reader.last_sign_in_at = now
    db.session.execute(
        update(LoginAttempt)
        .where(LoginAttempt.email == address, LoginAttempt.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if newsletter_wording is not None:
        daily = subscriptions.newsletter(DAILY_NEWSLETTER)
        if daily is not None:
            subscriptions.record_consent(
                reader,
                daily,
                wording=newsletter_wording,
                source=newsletter_source or "",
                now=now,
            )
    db.session.add(
        SignInEvent(reader=reader, at=now, method=method, user_agent=user_agent, network=network)
    )
    sessions.open_session(
        reader, user_agent=user_agent, network=network, now=now, replacing=replacing_session
    )
    return reader


def _reader_for(address: str, locale: str, now: datetime) -> Reader:
    """The reader owning ``address``, created now if this is their first sign-in."""
    reader = db.session.scalar(select(Reader).where(Reader.email == address))
    if reader is not None:
        return reader
    try:
        with db.session.begin_nested():
            reader = Reader(email=address, locale=locale, created_at=now)
            db.session.add(reader)
            db.session.flush()  # its public id, for the event
            webhooks.reader_created(reader)
    except IntegrityError:
        # Another sign-in of the same new address created it a moment ago.
        reader = db.session.scalar(select(Reader).where(Reader.email == address))
        assert reader is not None
    return reader


def approximate_network(ip: str | None) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of ``ip``: where, roughly, not who."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def attempt_id_of(token: str) -> str:
    """The attempt a link names, once its signature and age are checked."""
    return _read_token(token)[0]
