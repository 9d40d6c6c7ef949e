"""Email addresses: what the reader typed, checked and normalised; what SMTP is given.

Syntax only: no DNS lookup happens while the reader waits.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_ADDRESS_LENGTH = 254  # RFC 5321, the whole address
MAX_LOCAL_PART_LENGTH = 64  # RFC 5321, before the @


class InvalidAddress(ValueError):
    """The text typed is not an email address we can send to.

    ``reason`` is one of ``"format"``, ``"too_long"`` or ``"local_too_long"``.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def normalise_address(raw: str) -> str:
    """Return the normalised address for ``raw`` or raise :class:`InvalidAddress`.

    Syntax only: no DNS lookup happens while the reader waits. The result is
    lower-cased so that one inbox means one account.
    """
    text = raw.strip()
    if len(text) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress("too_long")
    local, _, _ = text.rpartition("@")
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise InvalidAddress("local_too_long")
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidAddress("format") from None
    return checked.normalized.lower()


def transport_address(address: str) -> str:
    """The address to hand to SMTP: the domain in IDNA form where it has one."""
    checked = validate_email(address, check_deliverability=False)
    return checked.ascii_email or checked.normalized
