"""Friction for bots and typos, without captchas: what to refuse or question before mailing.

Nothing here touches the request: views hand in a normalised address and get back a
suggestion, a refusal reason, or nothing. Rate limits themselves are Flask-Limiter's
(see ``auth/limits.py``); the service-wide mail ceiling lives here because it is a
count of the outbox, not of requests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from disposable_email_domains import blocklist as DISPOSABLE_DOMAINS
from flask import current_app
from sqlalchemy import func, literal, select

from ..extensions import db
from ..models import SIGN_IN_MAIL, OutboxMessage, utcnow

log = logging.getLogger(__name__)

# Where French and European readers' mail lives; a near miss of one is likely a typo.
COMMON_DOMAINS = (
    "gmail.com", "yahoo.fr", "yahoo.com", "hotmail.fr", "hotmail.com", "outlook.fr",
    "outlook.com", "live.fr", "live.com", "msn.com", "orange.fr", "wanadoo.fr", "free.fr",
    "sfr.fr", "neuf.fr", "laposte.net", "icloud.com", "me.com", "gmx.fr", "gmx.com",
    "protonmail.com", "proton.me", "aol.com", "bbox.fr", "numericable.fr",
)  # fmt: skip
# Right name, wrong ending: too far apart for the edit distance, common all the same.
KNOWN_SLIPS = {
    "gmail.fr": "gmail.com",
    "laposte.fr": "laposte.net",
    "laposte.com": "laposte.net",
    "icloud.fr": "icloud.com",
}


def _distance(first: str, second: str) -> int:
    """Damerau-Levenshtein distance (adjacent swaps count as one edit)."""
    previous_row = None
    row = list(range(len(second) + 1))
    for i, left in enumerate(first, start=1):
        before, previous_row, row = previous_row, row, [i] + [0] * len(second)
        for j, right in enumerate(second, start=1):
            row[j] = min(
                previous_row[j] + 1,
                row[j - 1] + 1,
                previous_row[j - 1] + (left != right),
            )
            if i > 1 and j > 1 and left == second[j - 2] and first[i - 2] == right:
                row[j] = min(row[j], before[j - 2] + 1)
    return row[-1]


def suggest_correction(address: str) -> str | None:
    """``address`` with a common domain it probably meant, or ``None``.

    "jean@gmial.com" gives "jean@gmail.com". Checked before any block list, since block
    lists contain typo domains.
    """
    local, _, domain = address.rpartition("@")
    if not local or domain in COMMON_DOMAINS:
        return None
    if domain in KNOWN_SLIPS:
        return f"{local}@{KNOWN_SLIPS[domain]}"
    best, best_distance = None, 3
    for candidate in COMMON_DOMAINS:
        distance = _distance(domain, candidate)
        if distance < best_distance:
            best, best_distance = candidate, distance
    # One edit for short domains, two for long ones: "gmal.com", "hotmial.fr".
    if best is None or best_distance > (1 if len(best) <= 8 else 2):
        return None
    return f"{local}@{best}"


def refusal(address: str) -> str | None:
    """Why no link may be mailed to ``address``: ``"blocked"``, ``"disposable"`` or ``None``."""
    domain = address.rpartition("@")[2]
    parents = {".".join(domain.split(".")[i:]) for i in range(domain.count(".") + 1)}
    blocked = {item.lower() for item in current_app.config["BLOCKED_DOMAINS"]}
    if parents & blocked:
        return "blocked"
    if current_app.config["BLOCK_DISPOSABLE_DOMAINS"] and parents & DISPOSABLE_DOMAINS:
        return "disposable"
    return None


@dataclass(frozen=True)
class Screening:
    """What to do with a sign-up form before mailing, in the order it is decided.

    ``outcome`` is ``"decoy"`` (a bot filled the honeypot: the usual answer, no mail),
    ``"suggest"`` (a likely typo: offer ``suggestion`` first), ``"refuse"`` (a blocked
    or disposable domain, ``refusal`` says which), or ``"mail"``.
    """

    outcome: str
    suggestion: str | None = None
    refusal: str | None = None


def screen(address: str, *, honeypot: str = "", as_typed: bool = False) -> Screening:
    """The honeypot, then the typo hint (before any block list, which holds typo
    domains), then the block lists: the one chain both the view and the address limits
    follow, so that the limits count exactly the requests that mail."""
    if honeypot:
        return Screening("decoy")
    suggestion = None if as_typed else suggest_correction(address)
    if suggestion:
        return Screening("suggest", suggestion=suggestion)
    refused = refusal(address)
    if refused:
        return Screening("refuse", refusal=refused)
    return Screening("mail")


def may_mail(address: str | None, *, honeypot: str = "", as_typed: bool = False) -> bool:
    """Whether a sign-up form with this address would lead to a mail.

    Only requests that would mail count against the address's limits, so a probe by a
    honeypot, a typo or a refused domain learns nothing about the address's recent
    links.
    """
    if address is None:
        return False
    return screen(address, honeypot=honeypot, as_typed=as_typed).outcome == "mail"


def mail_ceiling_reached(*, now: datetime | None = None) -> bool:
    """Whether the service has queued its hourly allowance of sign-in mail.

    A safety net against a distributed mail bomb that stays under every per-address
    and per-IP limit: it protects the sender's reputation. Logged loudly when hit.
    """
    ceiling = current_app.config["MAIL_HOURLY_CEILING"]
    if not ceiling or not current_app.config["RATELIMIT_ENABLED"]:
        return False  # RATELIMIT_ENABLED=false turns every limit off, this one too
    now = now or utcnow()
    # Counted no further than the ceiling, from the (kind, created_at) index alone: the
    # cost of this look stays bounded however busy the hour (bench/verify_scale.py).
    recent = (
        select(literal(1))
        .where(
            OutboxMessage.kind == SIGN_IN_MAIL, OutboxMessage.created_at > now - timedelta(hours=1)
        )
        .limit(ceiling)
        .subquery()
    )
    queued = db.session.scalar(select(func.count()).select_from(recent))
    if queued >= ceiling:
        log.critical(
            "MAIL CEILING HIT: %d sign-in mails queued in the last hour (MAIL_HOURLY_CEILING=%d); "
            "refusing to queue more. Check for a mail-bombing attack.",
            queued,
            ceiling,
        )
        return True
    return False
