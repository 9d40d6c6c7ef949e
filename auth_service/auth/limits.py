"""Rate limits of signing in, with Flask-Limiter.

Links mailed to one inbox are bounded without letting strangers spend the reader's
allowance (see docs/security.md, "Locking a reader out"):

- per inbox *and requesting network* (``LOGIN_LIMIT_PER_ADDRESS_AND_NETWORK``, a link a
  minute, 5 an hour, 10 a day): the reader's own allowance where they are; requests for
  the address from other networks do not touch it;
- per inbox from every network together (``LOGIN_LIMIT_PER_ADDRESS``, 30 a day): the
  ceiling that bounds mail bombing. A browser that has signed in with the address
  before (the known-device cookie) is not held back by it, so strangers who spend it
  cannot lock a reader out of their own browsers;
- "send again" from a browser holding an open attempt for the address is counted per
  run of attempts (``LOGIN_LIMIT_RESENDS_PER_CHAIN``, 5 a day), not against the
  ceiling: strangers' runs cannot spend a reader's, and each run started costs the
  ceiling one, so the inbox's mail stays bounded (30 runs of 1 + 5 mails a day at
  most, which takes 18 networks), even with an attempt cookie copied to many networks.

Only a request that would mail meets these limits (see ``abuse.may_mail``), and each is
counted before the view runs, in one step with the check, so simultaneous requests
cannot slip past it. Per client IP: 30 form posts, and 30 link or code checks, in 5
minutes. Every limit answers 429 with ``Retry-After`` and the same page whether the
address has an account or not.
"""

from __future__ import annotations

from flask import current_app, g, request

from ..extensions import limiter
from . import abuse, link_request, signin
from .addresses import InvalidAddress, normalise_address
from .browser import is_known_device, remembered_attempts

GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


def inbox_of(address: str) -> str:
    """One inbox, one counter: "+tags" and the dots Gmail ignores make no new address."""
    local, _, domain = address.rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def _asked() -> tuple[str, str, bool] | None:
    """The address typed, the honeypot and "as typed" of this request for a link: the
    form's fields, or the JSON body's members. ``None`` for a JSON body the API would
    refuse before mailing (a member of the wrong type): it is no request for mail."""
    if not request.is_json:
        form = request.form
        return form.get("email", ""), form.get("website", ""), bool(form.get("as_typed"))
    try:
        asked = link_request.of_request()
    except ValueError:
        return None
    return asked.email, asked.website, asked.as_typed


def _address_asked() -> str | None:
    """The normalised address being asked for, or ``None`` if it is not one."""
    if "address_asked" not in g:
        asked = _asked()
        try:
            g.address_asked = normalise_address(asked[0]) if asked else None
        except InvalidAddress:
            g.address_asked = None
    return g.address_asked


def _inbox_asked() -> str:
    """The inbox of the address asked for ("" if the form holds no address)."""
    address = _address_asked()
    return inbox_of(address) if address else ""


def _would_mail() -> bool:
    """Whether this post would queue a mail: only those count against an address."""
    asked = _asked()
    if asked is None:
        return False
    _typed, honeypot, as_typed = asked
    return abuse.may_mail(_address_asked(), honeypot=honeypot, as_typed=as_typed)


def resend_chain() -> str | None:
    """The run of "send again" this post continues: the chain of the newest attempt this
    browser holds open for the inbox asked, or ``None`` for a first request."""
    if "resend_chain" not in g:
        inbox = _inbox_asked()
        held = signin.open_attempts(remembered_attempts(request)) if inbox else []
        g.resend_chain = next(
            (
                attempt.chain_id or attempt.id
                for attempt in held  # newest first
                if inbox_of(attempt.email) == inbox
            ),
            None,
        )
    return g.resend_chain


def _is_resend() -> bool:
    """Whether this browser holds an open attempt for the inbox asked: "send again"."""
    return resend_chain() is not None


def _known_device() -> bool:
    """Whether this browser has signed in with the address asked before."""
    address = _address_asked()
    return bool(address) and is_known_device(request, address)


def _address_key() -> str:
    """The counter of the inbox asked, whatever the network."""
    return f"address:{_inbox_asked()}"


def _resend_key() -> str:
    """The counter of one run of "send again": only copies of this browser's attempt
    cookie share it."""
    return f"resend:{resend_chain()}"


def _address_and_network_key() -> str:
    """The counter of the inbox asked from this network (/24 for IPv4, /48 for IPv6)."""
    network = signin.approximate_network(request.remote_addr) or request.remote_addr or ""
    return f"address:{_inbox_asked()}|network:{network}"


# Shared limits: the HTML form and the JSON API (api/views.py) spend one allowance.
per_address_and_network = limiter.shared_limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS_AND_NETWORK"],
    key_func=_address_and_network_key,
    exempt_when=lambda: not _would_mail(),
    scope="login-per-address-network",
)
per_address = limiter.shared_limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"],
    key_func=_address_key,
    exempt_when=lambda: not _would_mail() or _known_device() or _is_resend(),
    scope="login-per-address",
)
resends_per_chain = limiter.shared_limit(
    lambda: current_app.config["LOGIN_LIMIT_RESENDS_PER_CHAIN"],
    key_func=_resend_key,
    exempt_when=lambda: not _would_mail() or _known_device() or not _is_resend(),
    scope="login-resends-per-chain",
)
per_ip_posts = limiter.shared_limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_IP"], scope="login-per-ip"
)
per_ip_checks = limiter.shared_limit(
    lambda: current_app.config["CHECK_LIMIT_PER_IP"], scope="sign-in-checks"
)
