"""Unsubscribing by mail: what arrives at the ``mailto:`` of ``List-Unsubscribe``.

A mail client that does not make RFC 8058's one-click POST may send a mail instead, to
``MAIL_UNSUBSCRIBE_ADDRESS`` with the subject the header gives it:
``unsubscribe <newsletter> <token>``. The mail server hands each such mail to
``auth-service newsletter unsubscribe-mail`` on standard input, as Postfix, Exim or
procmail pipes do. The token is the one in the reader's links, so the mail proves what
the link proves; the sender's address proves nothing (it is easily forged) and is not
looked at.
"""

from __future__ import annotations

import logging
import re
from email import policy
from email.parser import BytesParser

from . import subscriptions

log = logging.getLogger(__name__)

# Read no more of a mail than this: the request is in the headers.
MAX_BYTES = 256 * 1024
# Nor more of its subject: the request is some 130 characters.
MAX_SUBJECT = 4096
# "unsubscribe daily <token>", anywhere in the subject ("Re: …", a client's prefix).
# Only these two captures reach the database, and neither can hold a NUL or a lone
# surrogate: the rest of a mail (raw 8-bit bytes decode to surrogates) is never stored.
REQUEST = re.compile(r"\bunsubscribe\s+([a-z0-9_-]{1,64})\s+([A-Za-z0-9_.-]{1,512})", re.IGNORECASE)


def subject_for(slug: str, token: str) -> str:
    """The subject a mail client puts on the unsubscribe mail, percent-encoded for a
    ``mailto:`` URL (RFC 6068): the token's characters need no encoding."""
    return f"unsubscribe%20{slug}%20{token}"


def unsubscribe_by_mail(raw: bytes) -> str:
    """Act on one mail sent to the unsubscribe address; say what was done, in one line.

    Whatever the mail holds, the answer is a line, never an exception: a mail that is
    not a genuine request is ignored (a bounce would only reach whoever forged it).
    Database errors do propagate, so that the mail server can try again later.
    """
    try:
        subject = subject_of(raw[:MAX_BYTES])
    except Exception:  # the email package raises many things on hostile headers
        return "ignored: this is not a mail"
    found = REQUEST.search(subject)
    if found is None:
        return "ignored: no unsubscribe request in the subject"
    slug, token = found.group(1).lower(), found.group(2)
    letter = subscriptions.newsletter(slug)
    if letter is None:
        return f"ignored: there is no newsletter {slug!r}"
    reader = subscriptions.reader_from_token(token)
    if reader is None:
        return "ignored: the token is not genuine"
    if not subscriptions.unsubscribe(reader, letter):
        return f"reader {reader.id} was not subscribed to {slug}"
    log.info("Reader %s unsubscribed from %s by mail", reader.id, slug)
    return f"unsubscribed reader {reader.id} from {slug}"


def subject_of(raw: bytes) -> str:
    """The mail's subject, decoded, from its first :data:`MAX_SUBJECT` characters.

    The headers are split without interpretation first (compat32 is linear); only the
    capped subject is then decoded, since decoding thousands of encoded words takes
    the email package seconds.
    """
    headers = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    folded = str(headers.get("Subject") or "")[:MAX_SUBJECT]
    line = re.sub(r"[\r\n]+[ \t]*", " ", folded)
    decoded = BytesParser(policy=policy.default).parsebytes(
        f"Subject: {line}\r\n\r\n".encode("utf-8", "surrogateescape"), headersonly=True
    )
    return str(decoded.get("Subject") or "")
