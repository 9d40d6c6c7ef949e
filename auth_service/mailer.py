"""Mails: render one from its ``.txt``/``.html`` pair, and hand it to SMTP or the dev mailbox.

The mailer never decides who gets mail: callers render, the outbox queues, the worker
delivers through a transport from :func:`transport_for`.
"""

from __future__ import annotations

import email.policy
import logging
import re
import smtplib
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, current_app, render_template
from flask_babel import force_locale
from flask_mail import Connection

from .config import public_host
from .extensions import db
from .models import Edition, OutboxMessage

log = logging.getLogger(__name__)

# Header lines up to RFC 5322's hard limit: a long List-Unsubscribe URL must stay one
# plain token, not be folded into encoded words that no mail client could use.
SMTP_POLICY = email.policy.SMTP.clone(max_line_length=998)
SMTPUTF8_POLICY = email.policy.SMTPUTF8.clone(max_line_length=998)

# Where each reader's own links go in a shared newsletter edition.
PREFERENCES_URL = "@@PREFERENCES_URL@@"
UNSUBSCRIBE_URL = "@@UNSUBSCRIBE_URL@@"


@dataclass
class RenderedMail:
    """A mail ready for the outbox: both parts, in the reader's language."""

    to_address: str
    subject: str
    text_body: str
    html_body: str
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)


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


def build_message(message: OutboxMessage) -> EmailMessage:
    """The MIME message of an outbox row: text and HTML alternatives, From the site.

    Built with the standard library rather than Flask-Mail's ``Message``, which cannot
    address a mailbox with accents before the @ (SMTPUTF8) and wraps every
    alternative in a needless multipart/mixed.
    """
    config = current_app.config
    subject, text_body, html_body = bodies_of(message)
    international = not message.to_address.isascii()
    built = EmailMessage(policy=SMTPUTF8_POLICY if international else SMTP_POLICY)
    built["Subject"] = subject
    built["From"] = Address(config["SITE_NAME"], addr_spec=config["MAIL_DEFAULT_SENDER"])
    built["To"] = message.to_address
    built["Date"] = format_datetime(message.created_at)
    built["Message-ID"] = message.message_id
    # The text part in 8-bit rather than quoted-printable: the link stays whole on its
    # line in the source too. The HTML part may have long lines: the library chooses.
    built.set_content(text_body, cte="8bit")
    built.add_alternative(html_body, subtype="html")
    # After the bodies: setting content drops any Content-* header set before it.
    for name, value in (message.headers or {}).items():
        built[name] = value
    return built


def bodies_of(message: OutboxMessage) -> tuple[str, str, str]:
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
    personal = personal or {}
    return body.replace(PREFERENCES_URL, personal.get("preferences", "")).replace(
        UNSUBSCRIBE_URL, personal.get("unsubscribe", "")
    )


class SmtpTransport:
    """Delivers over SMTP, one connection per batch.

    Flask-Mail opens the connection (``MAIL_*`` settings: TLS, SSL, login); the
    standard library's ``send_message`` sends, adding SMTPUTF8 when an address needs it.
    """

    @contextmanager
    def connection(self):
        """An open SMTP connection whose ``send`` takes an :class:`OutboxMessage`."""
        # Flask-Mail keeps the app's SMTP settings in its per-app state object.
        with _TimedConnection(current_app.extensions["mail"]) as connection:
            yield _SmtpSender(connection.host)


class _TimedConnection(Connection):
    """Flask-Mail's connection, opened with ``MAIL_TIMEOUT`` from the first byte.

    Flask-Mail connects, starts TLS and logs in without a timeout, so a server that
    accepts the TCP connection and then says nothing would hang the worker for ever.
    """

    def configure_host(self):
        """Connect, STARTTLS and log in as Flask-Mail would, every step bounded."""
        settings, timeout = self.mail, current_app.config["MAIL_TIMEOUT"]
        kind = smtplib.SMTP_SSL if settings.use_ssl else smtplib.SMTP
        host = kind(settings.server, settings.port, timeout=timeout)
        if settings.use_tls:
            host.starttls()
        if settings.username and settings.password:
            host.login(settings.username, settings.password)
        return host


@dataclass
class _SmtpSender:
    host: smtplib.SMTP

    def send(self, message: OutboxMessage) -> None:
        """Send one message on the open connection."""
        self.host.ehlo_or_helo_if_needed()
        # Our text parts are 8-bit UTF-8: say so to servers that want to know.
        options = ["BODY=8BITMIME"] if self.host.has_extn("8bitmime") else []
        self.host.send_message(
            build_message(message),
            from_addr=current_app.config["MAIL_DEFAULT_SENDER"],
            to_addrs=[message.to_address],
            mail_options=options,
        )


class DevMailbox:
    """Writes each mail as an ``.eml`` file under the instance folder and logs its links.

    The embedded default when no ``MAIL_SERVER`` is configured.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    @contextmanager
    def connection(self):
        """The mailbox folder, ready to receive files."""
        self.folder.mkdir(parents=True, exist_ok=True)
        yield self

    def send(self, message: OutboxMessage) -> None:
        """Store one message and print its links to the console."""
        path = self.folder / f"{message.created_at:%Y%m%d-%H%M%S}-{message.id:06d}.eml"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(build_message(message).as_bytes())
        temporary.replace(path)
        links = re.findall(r"^https?://\S+$", message.text_body, flags=re.MULTILINE)
        log.info("Dev mailbox: mail to %s: %s", message.to_address, " ".join(links))
        # The console is where a developer trying the demo looks first.
        print(f" * Mail to {message.to_address}: {message.subject}", flush=True)
        for link in links:
            print(f"   {link}", flush=True)


def mailbox_folder(app: Flask) -> Path:
    """Where the dev mailbox keeps its files."""
    return Path(app.instance_path) / "mailbox"


def transport_for(app: Flask):
    """SMTP when ``MAIL_SERVER`` is configured, the dev mailbox otherwise."""
    if app.config.get("MAIL_SERVER"):
        return SmtpTransport()
    return DevMailbox(mailbox_folder(app))


def is_permanent(error: smtplib.SMTPException) -> bool:
    """Whether an SMTP refusal of one message is final (5xx) or worth retrying (4xx)."""
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return True  # e.g. an accented address and a server without SMTPUTF8
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
    else:
        codes = [getattr(error, "smtp_code", 0)]
    return bool(codes) and all(500 <= code < 600 for code in codes)


# Refusals of one message: the connection stays usable for the next one.
MESSAGE_REFUSALS = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
    smtplib.SMTPNotSupportedError,
)
