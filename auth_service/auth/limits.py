"""Rate limits of signing in, with Flask-Limiter.

Per address: a link at most every minute, 5 an hour, 10 a day. Only a request that
would mail meets this limit (see ``abuse.may_mail``), and it is counted before the view
runs, in one step with the check, so simultaneous requests cannot slip past it.

Per client IP: 30 form posts, and 30 link or code checks, in 5 minutes. Every limit
answers 429 with ``Retry-After`` and the same page whether the address has an account
or not.
"""

from __future__ import annotations

from flask import current_app, g, request

from .. import abuse
from ..addresses import InvalidAddress, normalise_address
from ..extensions import limiter


def _address_asked() -> str | None:
    """The normalised address of the form being posted, or ``None`` if it is not one."""
    if "address_asked" not in g:
        try:
            g.address_asked = normalise_address(request.form.get("email", ""))
        except InvalidAddress:
            g.address_asked = None
    return g.address_asked


GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


def _address_key() -> str:
    """One inbox, one counter.

    "+tags" do not make a new address for the limit, nor do the dots Gmail ignores.
    """
    local, _, domain = (_address_asked() or "").rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"address:{local}@{domain}"


per_address = limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"],
    key_func=_address_key,
    exempt_when=lambda: (
        not abuse.may_mail(
            _address_asked(),
            honeypot=request.form.get("website", ""),
            as_typed=bool(request.form.get("as_typed")),
        )
    ),
    scope="login-per-address",
)
per_ip_posts = limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"], scope="login-per-ip")
per_ip_checks = limiter.shared_limit(
    lambda: current_app.config["CHECK_LIMIT_PER_IP"], scope="sign-in-checks"
)
