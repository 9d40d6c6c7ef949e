"""What the database can store: text PostgreSQL accepts, and times every zone can show.

PostgreSQL's text types hold UTF-8 with no NUL character. A Python ``str`` can hold two
things that have no place there: the NUL character (``%00`` in a URL, ``\\u0000`` in
JSON) and a lone UTF-16 surrogate (``\\ud800`` in JSON, or the ``surrogateescape`` form
of bytes that are not UTF-8). psycopg raises on either, where SQLite stores them, so
such text is refused where it comes in, whichever database runs: by the request guard of
:mod:`auth_service.security`, and by each import of a file.

Times have the same kind of edge: a moment at the very start or end of the calendar
cannot be converted to UTC, or shown in a time zone west or east of it, without
overflowing. :func:`moment_in_utc` keeps every stored time a couple of days inside it.

No request and no database here: the rules only, tested without a client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

# NUL, and every code point of the surrogate range: in a ``str`` one of those is always
# a lone half (a character beyond the BMP is one code point, never a pair).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# A key or an index: where a value sits in JSON-like data.
Step = str | int
Where = tuple[Step, ...]

# Every UTC offset is less than a day; two days of margin leave room for the offset and
# for the day after (an edition's day ends at the next midnight).
MARGIN = timedelta(days=2)
EARLIEST = datetime.min.replace(tzinfo=UTC) + MARGIN
LATEST = datetime.max.replace(tzinfo=UTC) - MARGIN
FIRST_DAY: date = EARLIEST.date()
LAST_DAY: date = LATEST.date()


class OutOfCalendar(ValueError):
    """A time or a day too near the ends of the calendar to be stored and shown."""


def is_storable(text: str) -> bool:
    """Whether PostgreSQL can store ``text``: no NUL, no lone surrogate."""
    return UNSTORABLE.search(text) is None


def first_unstorable(data: object) -> Where | None:
    """Where the first unstorable string (a value or a key) sits in ``data``, or ``None``.

    ``data`` is what JSON gives: dicts, lists and scalars, nested to any depth. The walk
    uses a stack of its own, not recursion, since the nesting is the sender's choice.
    ``()`` means ``data`` itself is such a string.
    """
    for where, value in _strings(data):
        if not is_storable(value):
            return where
    return None


def _strings(data: object) -> Iterator[tuple[Where, str]]:
    """Every string of ``data`` with where it sits, keys included, in document order."""
    stack: list[tuple[Where, object]] = [((), data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            children: list[tuple[Where, object]] = []
            for key, item in value.items():
                if isinstance(key, str):
                    children.append(((*where, key), key))
                children.append(((*where, key), item))
            stack.extend(reversed(children))
        elif isinstance(value, list | tuple):
            items = [((*where, index), item) for index, item in enumerate(value)]
            stack.extend(reversed(items))


def shown(text: str, limit: int = 60) -> str:
    """``text`` for a message: cut to ``limit`` characters, unstorable ones as ``\\u0000``."""
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", cut)


def shown_where(where: Where) -> str:
    """``where`` as a reader of the data writes it: ``[0].image.caption``."""
    parts = [f"[{step}]" if isinstance(step, int) else f".{shown(step, 40)}" for step in where]
    return "".join(parts).removeprefix(".")


def moment_in_utc(moment: datetime) -> datetime:
    """``moment`` (aware) in UTC, if it can be stored and shown in any time zone.

    Raises :class:`OutOfCalendar` for a moment within two days of the calendar's ends,
    such as ``0001-01-01T00:00:00+14:00``, whose UTC form does not exist.
    """
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        raise OutOfCalendar(_range_message()) from None
    if not EARLIEST <= in_utc <= LATEST:
        raise OutOfCalendar(_range_message())
    return in_utc


def check_day(day: date) -> date:
    """``day``, if the times of that day (and of the next) can be stored and shown."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise OutOfCalendar(_range_message())
    return day


def _range_message() -> str:
    """The range, for the sender of a time outside it."""
    return f"it must lie between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}"
