"""A comment's text: what is kept of what the reader typed, and the safe HTML shown.

Comments are plain text. What is stored is the text normalised (NFC, one kind of line
break, no control or invisible formatting characters); what is shown is that text
escaped, its line breaks kept, and its ``http(s)`` addresses made links with
``rel="nofollow ugc"``. Nothing the reader types becomes markup: ``<script>`` is shown as
written, ``javascript:`` is never a link. No request and no database here.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from markupsafe import Markup, escape

# Characters of category Cf (format) that text needs: the joiners of emoji sequences and
# of scripts such as Persian; the tags of subdivision flags.
KEPT_FORMAT = frozenset({"\u200c", "\u200d"}) | {chr(code) for code in range(0xE0020, 0xE0080)}
# Line and paragraph separators read as line breaks.
LINE_BREAKS = re.compile("\r\n|[\r\u0085\u2028\u2029\u000b\u000c]")
BLANK_LINES = re.compile(r"\n{3,}")
TRAILING_SPACE = re.compile(r"[ \t]+\n")
# An address as readers paste it: scheme, then anything up to a space or a character
# that cannot be in one. Trailing punctuation of the sentence is trimmed afterwards.
ADDRESS = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
TRAILING_PUNCTUATION = ".,;:!?…»”’"
PAIRS = {")": "(", "]": "[", "}": "{"}


def normalise(text: str) -> str:
    """The text as it is stored: NFC, ``\\n`` line breaks, no control characters (tabs
    become spaces), no invisible formatting (bidi overrides and isolates, zero-width
    spaces), trailing spaces of lines and runs of blank lines trimmed."""
    text = LINE_BREAKS.sub("\n", unicodedata.normalize("NFC", text))
    kept = []
    for char in text:
        if char == "\n":
            kept.append(char)
        elif char == "\t":
            kept.append(" ")
        elif unicodedata.category(char) == "Cc":
            continue
        elif unicodedata.category(char) == "Cf" and char not in KEPT_FORMAT:
            continue  # U+202E and its kin would reverse what follows on the page
        else:
            kept.append(char)
    text = TRAILING_SPACE.sub("\n", "".join(kept))
    return BLANK_LINES.sub("\n\n", text).strip()


def addresses(text: str) -> list[str]:
    """The ``http(s)`` addresses of ``text`` that are shown as links, in order."""
    return [address for _start, _end, address in _links(text)]


def to_html(text: str) -> Markup:
    """Stored text as safe HTML: escaped, paragraphs on blank lines, ``<br>`` on single
    line breaks, ``http(s)`` addresses as links with ``rel="nofollow ugc"``."""
    paragraphs = [part for part in text.split("\n\n") if part.strip()]
    return Markup("").join(
        Markup("<p>{}</p>").format(
            Markup("<br>\n").join(_linked(line) for line in part.split("\n"))
        )
        for part in paragraphs
    )


def _linked(line: str) -> Markup:
    """One line, escaped, its addresses made links."""
    shown = Markup("")
    position = 0
    for start, end, address in _links(line):
        shown += escape(line[position:start])
        shown += Markup('<a href="{}" rel="nofollow ugc">{}</a>').format(address, address)
        position = end
    return shown + escape(line[position:])


def _links(text: str) -> list[tuple[int, int, str]]:
    """Where the addresses of ``text`` start and end, and the address itself."""
    found = []
    for match in ADDRESS.finditer(text):
        address = _trimmed(match.group())
        if _is_web_address(address):
            found.append((match.start(), match.start() + len(address), address))
    return found


def _trimmed(address: str) -> str:
    """The address without the sentence's punctuation after it: a final full stop, or a
    closing bracket the address did not open."""
    while address:
        last = address[-1]
        if last in TRAILING_PUNCTUATION:
            address = address[:-1]
        elif last in PAIRS and address.count(PAIRS[last]) < address.count(last):
            address = address[:-1]
        else:
            break
    return address


def _is_web_address(address: str) -> bool:
    """Whether ``address`` is an ``http(s)`` URL with a host and no user name in it."""
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        return False
    return (
        parts.scheme.lower() in ("http", "https")
        and bool(parts.hostname)
        and ("@" not in parts.netloc)
    )
