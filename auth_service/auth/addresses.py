"""Email addresses: what the reader typed, checked and normalised; what SMTP is given.

Syntax only: no DNS lookup happens while the reader waits.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_ADDRESS_LENGTH = 254  # RFC 5321, the whole address, in octets
MAX_LOCAL_PART_LENGTH = 64  # RFC 5321, before the @, in characters as email-validator counts


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
    lower-cased so that one inbox means one account. The length limits hold for the
    address as stored and as sent, not only as typed: NFC normalisation and
    lower-casing can lengthen the part before the @ ("İ" becomes "i" and a combining
    dot), and an internationalised domain is sent in its longer IDNA form.
    """
    text = raw.strip()
    if len(text) > MAX_ADDRESS_LENGTH:
        # email-validator would refuse it too; saying so first spares parsing a long text.
        raise InvalidAddress("too_long")
    try:
        # strict: the part before the @ is measured as typed and once NFC-normalised.
        checked = validate_email(text, check_deliverability=False, strict=True)
        address = checked.normalized.lower()
        sent = transport_address(address)
    except EmailNotValidError as error:
        raise InvalidAddress(_reason(error)) from None
    for form in (address, sent):
        _check_lengths(form)
    return address


def transport_address(address: str) -> str:
    """The address to hand to SMTP: the domain in IDNA form where it has one."""
    checked = validate_email(address, check_deliverability=False)
    return checked.ascii_email or checked.normalized


def _check_lengths(address: str) -> None:
    """Raise :class:`InvalidAddress` if ``address`` breaks a length limit of RFC 5321."""
    local, _, _ = address.rpartition("@")
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise InvalidAddress("local_too_long")
    if len(address.encode()) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress("too_long")


def _reason(error: EmailNotValidError) -> str:
    """The reason to give for a refusal by email-validator.

    It tells a length refusal from a format one only in its wording, which
    ``tests/auth/test_addresses.py`` pins for each limit.
    """
    message = str(error)
    if "too long before the @-sign" in message:
        return "local_too_long"
    if "too long" in message:
        return "too_long"
    return "format"
