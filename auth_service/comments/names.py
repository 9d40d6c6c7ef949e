"""The name a reader's comments are signed with, chosen at their first comment.

Never the address: a name holding ``@`` is refused, whatever it looks like. Names are
unique without regard to capitals, spacing or the width of characters, so that nobody
can pass for another commenter. No request here; the caller commits.
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select

from ..extensions import db
from ..models import Reader

MIN_LENGTH = 2
MAX_LENGTH = 40
SPACES = re.compile(r"\s+")
# Control, format (bidi overrides, zero-width), private-use, surrogate, unassigned
# characters, and line or paragraph separators: nothing a name needs.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


MAX_KEY_LENGTH = 160  # readers.display_name_key


class NameRefused(ValueError):
    """A display name that cannot be used; ``reason`` says why (a key of the form's
    messages): ``length``, ``characters``, ``letters``, ``address`` or ``taken``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def normalise(typed: str) -> str:
    """The name as it would be shown: NFC, trimmed, each run of spaces one space."""
    return SPACES.sub(" ", unicodedata.normalize("NFC", typed)).strip()


def key_of(name: str) -> str:
    """What two names share when they would read the same: compatibility forms folded
    (full-width letters), capitals folded, spacing ignored."""
    return SPACES.sub("", unicodedata.normalize("NFKC", name).casefold())


def check(typed: str, *, reader: Reader | None = None) -> str:
    """The name ``typed`` as it would be stored, or :class:`NameRefused`.

    ``reader`` is who asks for it: their own name is not "taken".
    """
    name = normalise(typed)
    if any(unicodedata.category(char) in REFUSED_CATEGORIES for char in name):
        raise NameRefused("characters")
    # The folded key can be much longer than the name ("ﷺ" folds to 18 characters);
    # it must fit its column too.
    if not MIN_LENGTH <= len(name) <= MAX_LENGTH or len(key_of(name)) > MAX_KEY_LENGTH:
        raise NameRefused("length")
    # "@" and its full-width and small forms: a name must not look like an address.
    if "@" in unicodedata.normalize("NFKC", name):
        raise NameRefused("address")
    if not any(unicodedata.category(char)[0] in "LN" for char in name):
        raise NameRefused("letters")
    holder = db.session.scalar(select(Reader.id).where(Reader.display_name_key == key_of(name)))
    if holder is not None and (reader is None or holder != reader.id):
        raise NameRefused("taken")
    return name


def choose(reader: Reader, typed: str) -> None:
    """Give ``reader`` the display name ``typed`` (checked; the caller commits).

    Two readers choosing the same name at once both pass the check; the unique index
    on ``display_name_key`` refuses the second commit.
    """
    name = check(typed, reader=reader)
    reader.display_name = name
    reader.display_name_key = key_of(name)
