"""Newsletter copies: the bytes of each reader's copy, spliced from its edition built once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import format_datetime

from ..extensions import db
from ..models import Edition
from .rendering import LINK_MARKERS, QueuedMessage, alternatives, reader_links

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
    :func:`alternatives` as every other mail) and each reader's part is put in. When
    the splice could differ from what :func:`build_message` makes (an address beyond
    ASCII, a body the library had to encode, an odd header), the answer is ``None`` and
    the caller builds the message in full.
    """

    def __init__(self):
        self._editions: dict[int, _SharedEdition | None] = {}

    def bytes_of(self, message: QueuedMessage) -> bytes | None:
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


def _split_headers(message: QueuedMessage) -> tuple[dict[str, str], dict[str, str]]:
    """A copy's extra headers: the reader's own, and those of its edition."""
    headers = dict(message.headers or {})
    own = {name: headers.pop(name) for name in OWN_HEADERS if name in headers}
    return own, headers


def _writable(value: str, room: int) -> bool:
    """Whether ``value`` can go into a message as is: one short line of printable ASCII."""
    return len(value) <= room and value.isascii() and value.isprintable()


def _shared_edition(message: QueuedMessage) -> _SharedEdition | None:
    """The edition of ``message`` built once, or ``None`` if copies cannot be spliced."""
    edition = db.session.get(Edition, message.edition_id)
    if edition is None:
        return None
    _own, headers = _split_headers(message)
    built = alternatives(edition.subject, edition.text_body, edition.html_body, international=False)
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
