"""Where mail goes: an SMTP session, or the dev mailbox folder.

Each transport opens a ``connection`` whose ``send`` takes one queued message. The SMTP
one sends newsletter copies spliced from their edition (:mod:`.copies`).
"""

from __future__ import annotations

import logging
import re
import smtplib
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app
from flask_mail import Connection

from .copies import EditionCopies
from .dkim import Signer, signed, signer_of
from .rendering import QueuedMessage, bodies_of, build_message

log = logging.getLogger(__name__)


class SmtpTransport:
    """Delivers over SMTP.

    Flask-Mail opens the connection (``MAIL_*`` settings: TLS, SSL, login); the
    standard library's ``sendmail`` sends, with SMTPUTF8 when an address needs it.
    """

    @contextmanager
    def connection(self, copies: EditionCopies | None = None):
        """An open SMTP connection whose ``send`` takes an :class:`~.rendering.QueuedMessage`.

        ``copies`` may be shared by the connections of one delivery pass, so that each
        edition is built once per pass rather than once per connection.
        """
        # Flask-Mail keeps the app's SMTP settings in its per-app state object.
        with _TimedConnection(current_app.extensions["mail"]) as connection:
            yield _SmtpSender(connection.host, copies or EditionCopies(), signer_of(current_app))


class _TimedConnection(Connection):
    """Flask-Mail's connection, opened with ``MAIL_TIMEOUT`` from the first byte.

    Flask-Mail connects, starts TLS and logs in without a timeout, so a server that
    accepts the TCP connection and then says nothing would hang the worker for ever.
    """

    def configure_host(self):
        """Connect, STARTTLS and log in as Flask-Mail would, every step bounded."""
        settings, timeout = self.mail, current_app.config["MAIL_TIMEOUT"]
        kind = _SslHost if settings.use_ssl else _Host
        host = kind(settings.server, settings.port, timeout=timeout)
        if settings.use_tls:
            host.starttls()
        if settings.username and settings.password:
            host.login(settings.username, settings.password)
        return host


class _Meanwhile:
    """smtplib's client, doing the caller's pending work while the server answers.

    ``meanwhile``, when set, is called once, right after the next command is sent and
    before its reply is read: the outbox writes the previous message's mark there, while
    the server reads the next MAIL FROM. ``after_content``, when set, is called once,
    right after a message's content is sent, while the server reads it and before its
    answer is read: the longest wait of a delivery.
    """

    meanwhile = None
    after_content = None

    def getreply(self):
        if self.meanwhile is not None:
            call, self.meanwhile = self.meanwhile, None
            call()
        return super().getreply()

    def send(self, s):
        super().send(s)
        # smtplib sends a message's content in one piece, ending with the lone dot.
        if self.after_content is not None and isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            call, self.after_content = self.after_content, None
            call()


class _Host(_Meanwhile, smtplib.SMTP):
    pass


class _SslHost(_Meanwhile, smtplib.SMTP_SSL):
    pass


class _SmtpSender:
    """One open SMTP connection: sends outbox rows, newsletter copies spliced, signed
    with DKIM when it is set up.

    The message after this one is made (spliced, or built) and signed while the server
    reads this one (``after_content``), not in series with it: a signature costs about
    half a millisecond, as much as the rest of a newsletter copy's work.
    """

    def __init__(self, host: smtplib.SMTP, copies: EditionCopies, signer: Signer | None = None):
        self.host = host
        self.copies = copies
        self.signer = signer
        self._ahead: tuple[QueuedMessage, bytes] | None = None  # the next message, made

    def send(self, message: QueuedMessage, *, meanwhile=None, following=None) -> None:
        """Send one message; call ``meanwhile()``, if given, while the server answers its
        first command (always before its content). ``following``, the message to be
        sent next, if known, is made and signed while the server reads this one."""
        self.host.ehlo_or_helo_if_needed()
        sender = current_app.config["MAIL_DEFAULT_SENDER"]
        # Our text parts are 8-bit UTF-8: say so to servers that want to know.
        options = ["BODY=8BITMIME"] if self.host.has_extn("8bitmime") else []
        data = self._ready(message)
        if not message.to_address.isascii():
            options.append("SMTPUTF8")  # smtplib refuses if the server cannot
        self.host.meanwhile = meanwhile
        if following is not None:
            self.host.after_content = lambda: self._make_ahead(following)
        try:
            self.host.sendmail(sender, [message.to_address], data, options)
        finally:
            self.host.meanwhile = self.host.after_content = None

    def _bytes(self, message: QueuedMessage) -> bytes:
        """The message as sent, before any signature."""
        data = self.copies.bytes_of(message)
        if data is None:
            # Written by the message's own policy, as the splice and the dev mailbox
            # are (smtplib's send_message would turn body lines "From …" into ">From …").
            data = build_message(message).as_bytes()
        return data

    def _ready(self, message: QueuedMessage) -> bytes:
        """The bytes to send: made ahead, or made and signed now (the signature last,
        over the very bytes sent)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is message:  # the very row, not one read again
            return ahead[1]
        return signed(self.signer, self._bytes(message))

    def _make_ahead(self, message: QueuedMessage) -> None:
        """Make (and sign) ``message``'s bytes now, for its turn."""
        try:
            self._ahead = (message, signed(self.signer, self._bytes(message)))
        except Exception as error:  # its own turn meets the error, and records it
            log.debug("Outbox: message %s not made ahead: %s", message.id, error)
            self._ahead = None


class DevMailbox:
    """Writes each mail as an ``.eml`` file under the instance folder and logs its links.

    The embedded default when no ``MAIL_SERVER`` is configured.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    @contextmanager
    def connection(self, copies=None):
        """The mailbox folder, ready to receive files (``copies`` is not needed here)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        yield self

    def send(self, message: QueuedMessage, *, meanwhile=None, following=None) -> None:
        """Store one message and print its links to the console (``following`` is not
        needed here)."""
        if meanwhile is not None:
            meanwhile()
        path = self.folder / f"{message.created_at:%Y%m%d-%H%M%S}-{message.id:06d}.eml"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(signed(signer_of(current_app), build_message(message).as_bytes()))
        temporary.replace(path)
        # A newsletter copy's row holds no body: read the text the reader gets.
        _subject, text, _html = bodies_of(message)
        links = re.findall(r"^https?://\S+$", text, flags=re.MULTILINE)
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
