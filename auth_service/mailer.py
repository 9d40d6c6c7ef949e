"""Mails: render one from its ``.txt``/``.html`` pair, and hand it to SMTP or the dev mailbox.

The mailer never decides who gets mail: callers render, the outbox queues, the worker
delivers through a transport from :func:`transport_for`.
"""

from __future__ import annotations

import logging
import re
import smtplib
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, current_app, render_template
from flask_babel import force_locale
from flask_mail import Connection, Message

from .config import public_host
from .models import OutboxMessage

log = logging.getLogger(__name__)


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


def build_message(message: OutboxMessage) -> Message:
    """The Flask-Mail message for an outbox row, From the site's name."""
    config = current_app.config
    options = [] if message.to_address.isascii() else ["SMTPUTF8"]
    built = Message(
        subject=message.subject,
        recipients=[message.to_address],
        body=message.text_body,
        html=message.html_body,
        sender=(config["SITE_NAME"], config["MAIL_DEFAULT_SENDER"]),
        date=message.created_at.timestamp(),
        extra_headers=dict(message.headers or {}),
        mail_options=options,
    )
    built.msgId = message.message_id
    return built


class SmtpTransport:
    """Delivers over SMTP with Flask-Mail, one connection per batch."""

    @contextmanager
    def connection(self):
        """An open SMTP connection whose ``send`` takes an :class:`OutboxMessage`."""
        # Flask-Mail keeps the app's SMTP settings in its per-app state object.
        with _TimedConnection(current_app.extensions["mail"]) as connection:
            yield _SmtpSender(connection)


class _TimedConnection(Connection):
    """Flask-Mail's connection with a socket timeout, so a stuck server cannot hang us."""

    def configure_host(self):
        """Open the connection as Flask-Mail does, then bound every later read."""
        host = super().configure_host()
        if host.sock is not None:
            host.sock.settimeout(current_app.config["MAIL_TIMEOUT"])
        return host


@dataclass
class _SmtpSender:
    connection: Connection

    def send(self, message: OutboxMessage) -> None:
        """Send one message on the open connection."""
        self.connection.send(build_message(message))


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


PERMANENT_SMTP_ERRORS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused)
