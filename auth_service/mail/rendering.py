"""Rendering a mail: its ``.txt``/``.html`` pair in the reader's language, and the MIME
message built from a queued row.

Nothing here sends or queues: callers render, :mod:`.outbox` queues, :mod:`.worker`
delivers through a transport from :mod:`.transports`.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol
from urllib.parse import urlsplit

from flask import current_app, render_template
from flask_babel import force_locale

from ..config import public_host
from ..extensions import db
from ..models import Edition

# Header lines up to RFC 5322's hard limit: a long List-Unsubscribe URL must stay one
# plain token, not be folded into encoded words that no mail client could use.
SMTP_POLICY = email.policy.SMTP.clone(max_line_length=998)
SMTPUTF8_POLICY = email.policy.SMTPUTF8.clone(max_line_length=998)

# Where each reader's own links go in a shared newsletter edition.
PREFERENCES_URL = "@@PREFERENCES_URL@@"
UNSUBSCRIBE_URL = "@@UNSUBSCRIBE_URL@@"
# The marker of each link a copy's row holds in ``personal``.
LINK_MARKERS = {"preferences": PREFERENCES_URL, "unsubscribe": UNSUBSCRIBE_URL}


@dataclass
class RenderedMail:
    """A mail ready for the outbox: both parts, in the reader's language."""

    to_address: str
    subject: str
    text_body: str
    html_body: str
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)


class QueuedMessage(Protocol):
    """A message as the worker reads it back from the outbox.

    The worker reads plain rows (SQLAlchemy ``Row``: no ORM bookkeeping per mail), the
    dev mailbox and tests may pass :class:`OutboxMessage` objects; both have these
    columns, and nothing that builds or sends a mail needs more.
    """

    id: int
    message_id: str
    to_address: str
    subject: str
    text_body: str
    html_body: str
    headers: dict[str, str] | None
    kind: str
    edition_id: int | None
    personal: dict | None
    created_at: datetime
    attempts: int


def public_url_for(endpoint: str, **values) -> str:
    """An absolute URL on ``PUBLIC_URL``, buildable with or without a request."""
    app = current_app
    base = urlsplit(app.config["PUBLIC_URL"])
    adapter = app.url_map.bind(base.netloc, url_scheme=base.scheme, script_name=base.path or "/")
    return adapter.build(endpoint, values, force_external=True)


def render(name: str, *, to: str, locale: str, subject, **context) -> RenderedMail:
    """Render ``templates/mail/<name>.txt`` and ``.html`` for one reader.

    ``subject`` may be a lazy string: it is evaluated in the reader's language.
    """
    with force_locale(locale):
        context.update(locale=locale, site_name=current_app.config["SITE_NAME"])
        return RenderedMail(
            to_address=to,
            subject=str(subject),
            text_body=render_template(f"mail/{name}.txt", **context),
            html_body=render_template(f"mail/{name}.html", **context),
            message_id=make_msgid(domain=public_host(current_app)),
            headers={"Auto-Submitted": "auto-generated", "Content-Language": locale},
        )


def build_message(message: QueuedMessage) -> EmailMessage:
    """The MIME message of a queued message: text and HTML alternatives, From the site.

    Built with the standard library rather than Flask-Mail's ``Message``, which cannot
    address a mailbox with accents before the @ (SMTPUTF8) and wraps every
    alternative in a needless multipart/mixed.
    """
    built = alternatives(*bodies_of(message), international=not message.to_address.isascii())
    built["To"] = message.to_address
    built["Date"] = format_datetime(message.created_at)
    built["Message-ID"] = message.message_id
    for name, value in (message.headers or {}).items():
        built[name] = value
    return built


def alternatives(subject: str, text_body: str, html_body: str, *, international: bool):
    """A message From the site with its subject and both parts, not yet addressed."""
    config = current_app.config
    built = EmailMessage(policy=SMTPUTF8_POLICY if international else SMTP_POLICY)
    built["Subject"] = subject
    built["From"] = Address(config["SITE_NAME"], addr_spec=config["MAIL_DEFAULT_SENDER"])
    # The text part in 8-bit rather than quoted-printable: the link stays whole on its
    # line in the source too; unless a line is longer than SMTP allows (998 bytes).
    # The HTML part may have long lines: the library chooses.
    fits = all(len(line.encode()) <= 998 for line in text_body.splitlines())
    built.set_content(text_body, cte="8bit" if fits else "quoted-printable")
    built.add_alternative(html_body, subtype="html")
    # Headers added from here on survive: setting content drops Content-* headers set
    # before it.
    return built


def bodies_of(message: QueuedMessage) -> tuple[str, str, str]:
    """Subject, text and HTML of a message: its own, or its edition's made personal."""
    if message.edition_id is None:
        return message.subject, message.text_body, message.html_body
    edition = db.session.get(Edition, message.edition_id)
    return (
        edition.subject,
        personalise(edition.text_body, message.personal),
        personalise(edition.html_body, message.personal),
    )


def personalise(body: str, personal: dict | None) -> str:
    """Put a reader's own links into the shared edition body."""
    for name, link in reader_links(personal).items():
        body = body.replace(LINK_MARKERS[name], link)
    return body


def reader_links(personal: dict | None) -> dict[str, str]:
    """Each marker's link for one reader (empty if the row has none)."""
    return {name: (personal or {}).get(name, "") for name in LINK_MARKERS}
