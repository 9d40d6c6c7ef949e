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

from ..config import public_host
from ..extensions import db
from ..models import Edition, OutboxMessage

log = logging.getLogger(__name__)

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
    built = _alternatives(*bodies_of(message), international=not message.to_address.isascii())
    built["To"] = message.to_address
    built["Date"] = format_datetime(message.created_at)
    built["Message-ID"] = message.message_id
    for name, value in (message.headers or {}).items():
        built[name] = value
    return built


def _alternatives(subject: str, text_body: str, html_body: str, *, international: bool):
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
    for name, link in reader_links(personal).items():
        body = body.replace(LINK_MARKERS[name], link)
    return body


def reader_links(personal: dict | None) -> dict[str, str]:
    """Each marker's link for one reader (empty if the row has none)."""
    return {name: (personal or {}).get(name, "") for name in LINK_MARKERS}


class SmtpTransport:
    """Delivers over SMTP.

    Flask-Mail opens the connection (``MAIL_*`` settings: TLS, SSL, login); the
    standard library's ``sendmail`` sends, with SMTPUTF8 when an address needs it.
    """

    @contextmanager
    def connection(self, copies: EditionCopies | None = None):
        """An open SMTP connection whose ``send`` takes an :class:`OutboxMessage`.

        ``copies`` may be shared by the connections of one delivery pass, so that each
        edition is built once per pass rather than once per connection.
        """
        # Flask-Mail keeps the app's SMTP settings in its per-app state object.
        with _TimedConnection(current_app.extensions["mail"]) as connection:
            yield _SmtpSender(connection.host, copies or EditionCopies())


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
    the server reads the next MAIL FROM.
    """

    meanwhile = None

    def getreply(self):
        if self.meanwhile is not None:
            call, self.meanwhile = self.meanwhile, None
            call()
        return super().getreply()


class _Host(_Meanwhile, smtplib.SMTP):
    pass


class _SslHost(_Meanwhile, smtplib.SMTP_SSL):
    pass


class _SmtpSender:
    """One open SMTP connection: sends outbox rows, newsletter copies spliced."""

    def __init__(self, host: smtplib.SMTP, copies: EditionCopies):
        self.host = host
        self.copies = copies

    def send(self, message: OutboxMessage, *, meanwhile=None) -> None:
        """Send one message; call ``meanwhile()``, if given, while the server answers its
        first command (always before its content)."""
        self.host.ehlo_or_helo_if_needed()
        sender = current_app.config["MAIL_DEFAULT_SENDER"]
        # Our text parts are 8-bit UTF-8: say so to servers that want to know.
        options = ["BODY=8BITMIME"] if self.host.has_extn("8bitmime") else []
        data = self.copies.bytes_of(message)
        if data is None:
            # Written by the message's own policy, as the splice and the dev mailbox
            # are (smtplib's send_message would turn body lines "From …" into ">From …").
            data = build_message(message).as_bytes()
        if not message.to_address.isascii():
            options.append("SMTPUTF8")  # smtplib refuses if the server cannot
        self.host.meanwhile = meanwhile
        try:
            self.host.sendmail(sender, [message.to_address], data, options)
        finally:
            self.host.meanwhile = None


# The headers of a newsletter copy that are the reader's own; the others are the edition's.
OWN_HEADERS = ("List-Unsubscribe",)
# A header value we write ourselves: one line, printable ASCII, well under 998 characters.
HEADER_ROOM = 900
# An address we may write as is: dot-atom local part, ASCII domain (RFC 5322 3.2.3).
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
_MARKERS = {name: marker.encode() for name, marker in LINK_MARKERS.items()}


@dataclass
class _SharedEdition:
    data: bytes  # the shared headers and both parts, as sent, with the markers in place
    headers: dict[str, str]  # the edition's own extra headers
    link_room: int  # the longest reader's link that keeps every line within 998


class EditionCopies:
    """The bytes of newsletter copies, spliced from their edition built once.

    A copy differs from its edition only by its To, Date, Message-ID and unsubscribe
    headers and the reader's two links. Building 100,000 ``EmailMessage`` objects costs
    more than sending them, so each edition is built once per delivery pass (by the same
    :func:`_alternatives` as every other mail) and each reader's part is put in. When
    the splice could differ from what :func:`build_message` makes (an address beyond
    ASCII, a body the library had to encode, an odd header), the answer is ``None`` and
    the caller builds the message in full.
    """

    def __init__(self):
        self._editions: dict[int, _SharedEdition | None] = {}

    def bytes_of(self, message: OutboxMessage) -> bytes | None:
        """The message as SMTP sends it, or ``None`` if it must be built in full."""
        if message.edition_id is None or not PLAIN_ADDRESS.fullmatch(message.to_address):
            return None
        if message.edition_id not in self._editions:
            self._editions[message.edition_id] = _shared_edition(message)
        shared = self._editions[message.edition_id]
        own, headers = _split_headers(message)
        if shared is None or headers != shared.headers:
            return None
        links = reader_links(message.personal)
        lines = {
            "To": message.to_address,
            "Date": format_datetime(message.created_at),
            "Message-ID": message.message_id,
            **own,
        }
        if not all(_writable(value, HEADER_ROOM) for value in lines.values()) or not all(
            _writable(link, shared.link_room) for link in links.values()
        ):
            return None
        data = shared.data
        for name, marker in _MARKERS.items():
            data = data.replace(marker, links[name].encode("ascii"))
        head = "".join(f"{name}: {value}\r\n" for name, value in lines.items())
        return head.encode("ascii") + data


def _split_headers(message: OutboxMessage) -> tuple[dict[str, str], dict[str, str]]:
    """A copy's extra headers: the reader's own, and those of its edition."""
    headers = dict(message.headers or {})
    own = {name: headers.pop(name) for name in OWN_HEADERS if name in headers}
    return own, headers


def _writable(value: str, room: int) -> bool:
    """Whether ``value`` can go into a message as is: one short line of printable ASCII."""
    return len(value) <= room and value.isascii() and value.isprintable()


def _shared_edition(message: OutboxMessage) -> _SharedEdition | None:
    """The edition of ``message`` built once, or ``None`` if copies cannot be spliced."""
    edition = db.session.get(Edition, message.edition_id)
    if edition is None:
        return None
    _own, headers = _split_headers(message)
    built = _alternatives(
        edition.subject, edition.text_body, edition.html_body, international=False
    )
    for name, value in headers.items():
        built[name] = value
    # A reader's link can only be put in a body sent as it is, in 7 or 8 bits: in
    # quoted-printable or base64 (a line too long for SMTP) it would need encoding too.
    if any(
        part["Content-Transfer-Encoding"] not in ("7bit", "8bit") for part in built.iter_parts()
    ):
        return None
    data = built.as_bytes()
    for marker in LINK_MARKERS.values():
        written = edition.text_body.count(marker) + edition.html_body.count(marker)
        if data.count(marker.encode()) != written:
            return None
    room = HEADER_ROOM
    for line in data.split(b"\r\n"):
        markers = sum(line.count(marker) for marker in _MARKERS.values())
        if markers:
            free = 998 - len(line) + sum(len(m) * line.count(m) for m in _MARKERS.values())
            room = min(room, free // markers)
    return _SharedEdition(data, headers, room)


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

    def send(self, message: OutboxMessage, *, meanwhile=None) -> None:
        """Store one message and print its links to the console."""
        if meanwhile is not None:
            meanwhile()
        path = self.folder / f"{message.created_at:%Y%m%d-%H%M%S}-{message.id:06d}.eml"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(build_message(message).as_bytes())
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
