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
- "send again" from a browser holding an open attempt for the address has its own
  ceiling (``LOGIN_LIMIT_RESENDS_PER_ADDRESS``), so a reader mid-sign-in keeps it too,
  and an open attempt copied to many networks still sends a bounded number of mails.

Only a request that would mail meets these limits (see ``abuse.may_mail``), and each is
counted before the view runs, in one step with the check, so simultaneous requests
cannot slip past it. Per client IP: 30 form posts, and 30 link or code checks, in 5
minutes. Every limit answers 429 with ``Retry-After`` and the same page whether the
address has an account or not.
"""

from __future__ import annotations

from flask import current_app, g, request

from .. import abuse, signin
from ..addresses import InvalidAddress, normalise_address
from ..extensions import limiter
from .browser import is_known_device, remembered_attempts

GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


def inbox_of(address: str) -> str:
    """One inbox, one counter: "+tags" and the dots Gmail ignores make no new address."""
    local, _, domain = address.rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def _address_asked() -> str | None:
    """The normalised address of the form being posted, or ``None`` if it is not one."""
    if "address_asked" not in g:
        try:
            g.address_asked = normalise_address(request.form.get("email", ""))
        except InvalidAddress:
            g.address_asked = None
    return g.address_asked


def _inbox_asked() -> str:
    """The inbox of the address asked for ("" if the form holds no address)."""
    address = _address_asked()
    return inbox_of(address) if address else ""


def _would_mail() -> bool:
    """Whether this post would queue a mail: only those count against an address."""
    return abuse.may_mail(
        _address_asked(),
        honeypot=request.form.get("website", ""),
        as_typed=bool(request.form.get("as_typed")),
    )


def _is_resend() -> bool:
    """Whether this browser holds an open attempt for the inbox asked: "send again"."""
    if "is_resend" not in g:
        inbox = _inbox_asked()
        g.is_resend = bool(inbox) and any(
            inbox_of(attempt.email) == inbox
            for attempt in signin.open_attempts(remembered_attempts(request))
        )
    return g.is_resend


def _known_device() -> bool:
    """Whether this browser has signed in with the inbox asked before."""
    inbox = _inbox_asked()
    return bool(inbox) and is_known_device(request, inbox)


def _address_key() -> str:
    """The counter of the inbox asked, whatever the network."""
    return f"address:{_inbox_asked()}"


def _address_and_network_key() -> str:
    """The counter of the inbox asked from this network (/24 for IPv4, /48 for IPv6)."""
    network = signin.approximate_network(request.remote_addr) or request.remote_addr or ""
    return f"address:{_inbox_asked()}|network:{network}"


per_address_and_network = limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS_AND_NETWORK"],
    key_func=_address_and_network_key,
    exempt_when=lambda: not _would_mail(),
    scope="login-per-address-network",
)
per_address = limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"],
    key_func=_address_key,
    exempt_when=lambda: not _would_mail() or _known_device() or _is_resend(),
    scope="login-per-address",
)
resends_per_address = limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_RESENDS_PER_ADDRESS"],
    key_func=_address_key,
    exempt_when=lambda: not _would_mail() or _known_device() or not _is_resend(),
    scope="login-resends-per-address",
)
per_ip_posts = limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"], scope="login-per-ip")
per_ip_checks = limiter.shared_limit(
    lambda: current_app.config["CHECK_LIMIT_PER_IP"], scope="sign-in-checks"
)
