"""Newsletter subscribers as CSV: the publisher's export, and the import of another tool's list.

No click, no request: the ``subscribers`` commands hand in streams and print the report.

The export
----------
UTF-8 (no BOM), comma-separated, double quotes where needed, one header row, then one
row per reader and per newsletter they ever consented to, taken from their latest
consent to it:

``email``
    the reader's address, normalised (lower case, Unicode domain)
``newsletter``
    the newsletter's slug, e.g. ``daily``
``subscribed``
    ``true`` while that consent stands, ``false`` once it was withdrawn
``consented_at``
    when they consented, ISO 8601 in UTC (``2026-11-28T07:30:00Z``)
``wording``
    the exact sentence they agreed to
``source``
    where they agreed: the page of the sign-up, ``preferences``, ``import``, …
``withdrawn_at``
    when they withdrew it, ISO 8601 in UTC; empty while subscribed

CSV injection: a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return (or with quotes followed by one of them) gets a leading ``'``, so a spreadsheet
shows it as text instead of running it as a formula. The import strips that quote
again, so an export imports back unchanged.

The import
----------
A CSV file as other newsletter tools export it (Mailchimp, Brevo, Substack, …): UTF-8
with or without a BOM, comma or semicolon (sniffed from the header row), a header row
whose names are matched ignoring case, spaces, ``-`` and ``_``:

- an email column (required): ``email``, ``Email Address``, ``E-mail``,
  ``email_address``, ``courriel``, ``Adresse e-mail``;
- a subscribed flag (optional): ``subscribed``, ``status``, ``opt_in``,
  ``Subscription Status``. Yes/true/1/subscribed/active subscribe; no/false/0/
  unsubscribed/cleaned/bounced/… unsubscribe; without the column every row subscribes;
- a ``newsletter`` column (optional, as in the export) names each row's newsletter;
  rows without one go to the newsletter the command was given.

Every other column is ignored: nothing else from the file is stored. A row is rejected,
with its line number and a reason, for an address that is not valid, a flag value we do
not know (or Mailchimp's ``pending``/``transactional``, which are not a choice), an
unknown newsletter, a second row for the same address and newsletter, or a row longer
than :data:`MAX_ROW_LENGTH`. Rejected rows change nothing; the valid rows are applied
together in one transaction, in batches of :data:`BATCH_SIZE` rows (a few queries per
batch, never one per row). A subscribing address we do not know becomes a reader (they
consented in the other tool) with a consent worded "Imported from <file name>" and the
source ``import``; an unsubscribing one withdraws the open consent, and creates nothing
for an address we do not know.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import BinaryIO, NamedTuple, TextIO

from flask import current_app
from sqlalchemy import exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from ..auth.addresses import InvalidAddress, normalise_address
from ..extensions import db
from ..models import (
    DAILY_NEWSLETTER,
    Newsletter,
    NewsletterConsent,
    Reader,
    iso_utc,
    new_public_id,
    utcnow,
)
from ..storable import is_storable
from . import subscriptions

EXPORT_COLUMNS = (
    "email",
    "newsletter",
    "subscribed",
    "consented_at",
    "wording",
    "source",
    "withdrawn_at",
)
IMPORT_SOURCE = "import"
BATCH_SIZE = 1000
# Far above any real row (an address, a name, a few tags), far below what hurts.
MAX_ROW_LENGTH = 65_536

# Header names, compared after _header_key(): lower case, no spaces, "-", "_" or ".".
EMAIL_HEADERS = {"email", "emailaddress", "mail", "courriel", "adresseemail", "adressemail"}
FLAG_HEADERS = {"subscribed", "status", "optin", "subscriptionstatus"}
NEWSLETTER_HEADERS = {"newsletter"}

# Flag values, compared in lower case without spaces, "-" or "_".
SUBSCRIBED_VALUES = frozenset(
    "true t yes y 1 oui subscribed subscribe active optin optedin confirmed".split()
)
UNSUBSCRIBED_VALUES = frozenset(
    "false f no n 0 non unsubscribed unsubscribe inactive optout optedout cleaned bounced "
    "complained blocklisted blacklisted archived deleted".split()
)
# Mailchimp: "pending" never confirmed, "transactional" never subscribed. Neither is a
# consent, and neither is a reason to withdraw one given here.
NOT_A_CHOICE = frozenset({"pending", "transactional"})

FORMULA = re.compile(r"'*[=+\-@\t\r]")
ESCAPED_FORMULA = re.compile(r"'+[=+\-@\t\r]")
UTF8_BOM = b"\xef\xbb\xbf"


class SubscribersError(ValueError):
    """An export or import that cannot run at all; an import then changes nothing."""


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do), and the rows it refused."""

    subscribed: int = 0
    unsubscribed: int = 0
    unchanged: int = 0
    readers_created: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    dry_run: bool = False


# --- Export ---------------------------------------------------------------------------


def neutralise(cell: str) -> str:
    """The cell as a spreadsheet should show it: text, never a formula."""
    return "'" + cell if FORMULA.match(cell) else cell


def unneutralise(cell: str) -> str:
    """Undo :func:`neutralise` (also the same escape written by other tools)."""
    return cell[1:] if ESCAPED_FORMULA.match(cell) else cell


def _newsletter(slug: str) -> Newsletter:
    """The newsletter ``slug`` names, or :class:`SubscribersError`."""
    # A slug from the command line may hold bytes that are not UTF-8 (as lone
    # surrogates), which PostgreSQL cannot even be asked about.
    letter = subscriptions.newsletter(slug) if is_storable(slug) else None
    if letter is None:
        known = ", ".join(letter.slug for letter in subscriptions.all_newsletters())
        raise SubscribersError(f"there is no newsletter {slug!r} (there is: {known})")
    return letter


def export_rows(letter: Newsletter | None = None) -> Iterator[tuple[str, ...]]:
    """The export's rows (not yet neutralised), streamed from the database in batches.

    One per reader and newsletter (only ``letter`` if given): their latest consent,
    open or withdrawn.
    """
    later = aliased(NewsletterConsent)
    query = (
        select(
            Reader.email,
            Newsletter.slug,
            NewsletterConsent.consented_at,
            NewsletterConsent.wording,
            NewsletterConsent.source,
            NewsletterConsent.withdrawn_at,
        )
        .select_from(NewsletterConsent)
        .join(Reader, Reader.id == NewsletterConsent.reader_id)
        .join(Newsletter, Newsletter.id == NewsletterConsent.newsletter_id)
        .where(
            ~exists().where(
                later.reader_id == NewsletterConsent.reader_id,
                later.newsletter_id == NewsletterConsent.newsletter_id,
                later.id > NewsletterConsent.id,
            )
        )
        .order_by(Reader.id, Newsletter.id)
        .execution_options(yield_per=BATCH_SIZE)
    )
    if letter is not None:
        query = query.where(NewsletterConsent.newsletter_id == letter.id)
    for row in db.session.execute(query):
        yield (
            row.email,
            row.slug,
            "false" if row.withdrawn_at else "true",
            iso_utc(row.consented_at) or "",
            row.wording,
            row.source,
            iso_utc(row.withdrawn_at) or "",
        )


def write_export(stream: TextIO, slug: str | None = None) -> int:
    """Write the export as CSV to ``stream`` (every newsletter, or ``slug``'s); the rows."""
    letter = None if slug is None else _newsletter(slug)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in export_rows(letter):
        writer.writerow([neutralise(cell) for cell in row])
        count += 1
    return count


# --- Import: reading the file ---------------------------------------------------------


class _Columns(NamedTuple):
    """Where the columns the import reads are in a row."""

    email: int
    flag: int | None
    newsletter: int | None


class _Row(NamedTuple):
    """A valid row: whose choice, for which newsletter."""

    line: int
    address: str
    newsletter_id: int
    subscribe: bool


class _Rejected(Exception):
    """A row the import refuses; the message is the reason shown to the publisher."""


def _lines(source: BinaryIO, too_long: set[int]) -> Iterator[str]:
    """The file's lines, decoded; a line over the limit is replaced by an empty one.

    Its number goes into ``too_long`` so that the row holding it is rejected; the rest
    of it is skipped unread, so one huge line costs no memory.
    """
    number = 0
    while chunk := source.readline(MAX_ROW_LENGTH + 1):
        number += 1
        if number == 1:
            chunk = chunk.removeprefix(UTF8_BOM)
        if len(chunk) > MAX_ROW_LENGTH:
            too_long.add(number)
            while chunk and not chunk.endswith(b"\n"):
                chunk = source.readline(MAX_ROW_LENGTH)
            yield "\n"
            continue
        try:
            yield chunk.decode("utf-8")
        except UnicodeDecodeError:
            raise SubscribersError(
                f"line {number} is not UTF-8 text; save the file as CSV UTF-8 and run "
                "the import again"
            ) from None


def _delimiter(header: str) -> str:
    """Comma or semicolon, as the header row uses."""
    try:
        return csv.Sniffer().sniff(header, delimiters=",;").delimiter
    except csv.Error:  # a single column, or nothing to go on
        return ";" if header.count(";") > header.count(",") else ","


def _header_key(name: str) -> str:
    """A header name as we compare it: "E-mail Address" and "email_address" match."""
    return re.sub(r"[\s_.\-]", "", unneutralise(name).strip().lower())


def _column(header: list[str], names: set[str], what: str) -> int | None:
    """The position of the one column called one of ``names``, if there is one."""
    found = [index for index, name in enumerate(header) if _header_key(name) in names]
    if len(found) > 1:
        shown = " and ".join(repr(header[index][:40]) for index in found)
        raise SubscribersError(f"the header names two {what} columns: {shown}")
    return found[0] if found else None


def _columns(header: list[str]) -> _Columns:
    """Find the email, flag and newsletter columns, or say why the file is unusable."""
    email = _column(header, EMAIL_HEADERS, "email")
    if email is None:
        shown = ", ".join(repr(name[:40]) for name in header[:20]) or "nothing"
        raise SubscribersError(
            f"no email column: the header row has {shown}; name the column of addresses "
            '"email" or "Email Address"'
        )
    return _Columns(
        email,
        _column(header, FLAG_HEADERS, "subscribed flag"),
        _column(header, NEWSLETTER_HEADERS, "newsletter"),
    )


def _records(source: BinaryIO) -> Iterator[tuple[int, list[str] | str]]:
    """(line, cells) for the header and each row, or (line, reason) for a broken row.

    The line is where the row starts in the file, counting from 1; blank rows are
    skipped.
    """
    too_long: set[int] = set()
    lines = _lines(source, too_long)
    leading = []
    for line in lines:
        leading.append(line)
        if too_long:
            raise SubscribersError(f"line {len(leading)} is too long to be the header row")
        if line.strip():
            break
    if not leading or not leading[-1].strip():
        raise SubscribersError("the file is empty: a header row is needed")
    reader = csv.reader(chain(leading, lines), delimiter=_delimiter(leading[-1]))
    last = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield last + 1, f"unreadable CSV ({error})"
            last = reader.line_num
            continue
        first, last = last + 1, reader.line_num
        spans_a_long_line = bool(too_long) and not too_long.isdisjoint(range(first, last + 1))
        if spans_a_long_line or sum(len(cell) for cell in cells) > MAX_ROW_LENGTH:
            yield first, f"row too long (over {MAX_ROW_LENGTH:,} characters)"
        elif any(cell.strip() for cell in cells):
            yield first, cells


def _shown(value: str) -> str:
    """A value from the file, short and with control characters escaped, for a reason."""
    return repr(value[:60] + ("…" if len(value) > 60 else ""))


def _address(raw: str) -> str:
    """The row's address, normalised, or :class:`_Rejected`."""
    raw = unneutralise(raw.strip())
    if not raw:
        raise _Rejected("no address")
    try:
        return normalise_address(raw)
    except InvalidAddress as error:
        reason = {
            "too_long": "address too long",
            "local_too_long": "address too long before the @",
        }.get(error.reason, "not an email address")
        raise _Rejected(f"{reason}: {_shown(raw)}") from None


def _choice(raw: str) -> bool:
    """Whether a flag value means subscribed, or :class:`_Rejected`."""
    value = unneutralise(raw.strip())
    key = re.sub(r"[\s_\-]", "", value.lower())
    if key in SUBSCRIBED_VALUES:
        return True
    if key in UNSUBSCRIBED_VALUES:
        return False
    if key in NOT_A_CHOICE:
        raise _Rejected(f"status {_shown(value)} is neither subscribed nor unsubscribed")
    if not key:
        raise _Rejected("no subscribed value")
    raise _Rejected(
        f"unknown subscribed value {_shown(value)} "
        "(use yes/no, true/false, 1/0 or subscribed/unsubscribed)"
    )


class _RowChecker:
    """Turns the cells of a row into a :class:`_Row`, or says why it cannot."""

    def __init__(self, columns: _Columns, default: Newsletter):
        self.columns = columns
        self.default = default
        self.letters = {letter.slug: letter.id for letter in subscriptions.all_newsletters()}
        self.seen: dict[tuple[str, int], int] = {}

    def check(self, line: int, cells: list[str]) -> _Row:
        """The row's choice; each address and newsletter counts once, at its first row."""
        columns = self.columns
        for index, what in (
            (columns.email, "address"),
            (columns.flag, "subscribed value"),
            (columns.newsletter, "newsletter"),
        ):
            # The file is strict UTF-8, so the one character to fear is NUL.
            if index is not None and not is_storable(self._cell(cells, index)):
                raise _Rejected(f"the {what} holds a NUL character, which cannot be stored")
        address = _address(self._cell(cells, columns.email))
        subscribe = True if columns.flag is None else _choice(self._cell(cells, columns.flag))
        newsletter_id = self.default.id
        if columns.newsletter is not None:
            slug = unneutralise(self._cell(cells, columns.newsletter).strip())
            if slug and slug not in self.letters:
                raise _Rejected(f"unknown newsletter {_shown(slug)}")
            newsletter_id = self.letters.get(slug, self.default.id)
        first = self.seen.setdefault((address, newsletter_id), line)
        if first != line:
            raise _Rejected(f"duplicate of line {first} ({address})")
        return _Row(line, address, newsletter_id, subscribe)

    @staticmethod
    def _cell(cells: list[str], index: int) -> str:
        """The cell at ``index``; a short row has empty cells at its end."""
        return cells[index] if index < len(cells) else ""


def _valid_rows(source: BinaryIO, default: Newsletter, report: ImportReport) -> Iterator[_Row]:
    """The file's valid rows, in order; the others go to ``report.rejected``."""
    records = _records(source)
    header_line, header = next(records, (0, []))
    if not header:
        raise SubscribersError("the file has no header row")
    if isinstance(header, str):
        raise SubscribersError(f"line {header_line}, the header row: {header}")
    checker = _RowChecker(_columns(header), default)
    for line, cells in records:
        if isinstance(cells, str):
            report.rejected.append((line, cells))
            continue
        try:
            yield checker.check(line, cells)
        except _Rejected as rejected:
            report.rejected.append((line, str(rejected)))


# --- Import: applying it --------------------------------------------------------------


def _batches(rows: Iterable[_Row], size: int) -> Iterator[list[_Row]]:
    """``rows`` in lists of ``size``."""
    batch: list[_Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Applier:
    """Applies batches of rows in the caller's transaction and counts what changed."""

    def __init__(self, report: ImportReport, *, wording: str):
        self.report = report
        self.wording = wording
        self.now = utcnow()
        self.locale = current_app.config["BABEL_DEFAULT_LOCALE"]
        # A dry run creates nobody; it remembers whom it would have created.
        self.imagined: set[str] = set()

    def apply(self, batch: list[_Row]) -> None:
        """Subscribe and unsubscribe the readers of one batch: a handful of queries."""
        ids = self._reader_ids(batch)
        subscribed = self._subscriptions(set(ids.values()))
        consents: list[dict] = []
        withdrawals: dict[int, list[int]] = {}
        for row in batch:
            reader_id = ids.get(row.address)
            is_subscribed = (reader_id, row.newsletter_id) in subscribed
            if row.subscribe and not is_subscribed:
                self.report.subscribed += 1
                consents.append(self._consent(reader_id, row.newsletter_id))
            elif not row.subscribe and is_subscribed:
                self.report.unsubscribed += 1
                withdrawals.setdefault(row.newsletter_id, []).append(reader_id)
            else:
                self.report.unchanged += 1
        if self.report.dry_run:
            return
        if consents:
            db.session.execute(insert(NewsletterConsent), consents)
        for newsletter_id, reader_ids in withdrawals.items():
            db.session.execute(
                update(NewsletterConsent)
                .where(
                    NewsletterConsent.reader_id.in_(reader_ids),
                    NewsletterConsent.newsletter_id == newsletter_id,
                    NewsletterConsent.withdrawn_at.is_(None),
                )
                .values(withdrawn_at=self.now)
                .execution_options(synchronize_session=False)
            )

    def _reader_ids(self, batch: list[_Row]) -> dict[str, int]:
        """The ids of the batch's readers, creating those who subscribe and are new."""
        found = db.session.execute(
            select(Reader.email, Reader.id).where(Reader.email.in_({row.address for row in batch}))
        )
        ids = {email: reader_id for email, reader_id in found}
        strangers = {row.address for row in batch if row.subscribe and row.address not in ids}
        ids.update(self._create_readers(strangers))
        return ids

    @staticmethod
    def _subscriptions(reader_ids: set[int]) -> set[tuple[int, int]]:
        """(reader, newsletter) for each open consent of these readers."""
        found = db.session.execute(
            select(NewsletterConsent.reader_id, NewsletterConsent.newsletter_id).where(
                NewsletterConsent.reader_id.in_(reader_ids),
                NewsletterConsent.withdrawn_at.is_(None),
            )
        )
        return {(reader_id, newsletter_id) for reader_id, newsletter_id in found}

    def _create_readers(self, addresses: set[str]) -> dict[str, int]:
        """Create a reader for each address; their ids (none in a dry run)."""
        if self.report.dry_run:
            self.report.readers_created += len(addresses - self.imagined)
            self.imagined |= addresses
            return {}
        if not addresses:
            return {}
        self.report.readers_created += len(addresses)
        rows = [
            {
                "email": address,
                "public_id": new_public_id(),
                "locale": self.locale,
                "created_at": self.now,
                "is_staff": False,
            }
            for address in sorted(addresses)
        ]
        created = db.session.execute(insert(Reader).returning(Reader.email, Reader.id), rows)
        return {email: reader_id for email, reader_id in created}

    def _consent(self, reader_id: int | None, newsletter_id: int) -> dict:
        """A consent row, as the reader gave it in the other tool."""
        return {
            "reader_id": reader_id,
            "newsletter_id": newsletter_id,
            "consented_at": self.now,
            "wording": self.wording,
            "source": IMPORT_SOURCE,
            "withdrawn_at": None,
        }


def import_subscribers(
    source: BinaryIO,
    *,
    file_name: str,
    newsletter: str = DAILY_NEWSLETTER,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import a CSV list of subscribers; commit the valid rows together, or nothing.

    ``source`` is read once, line by line. ``newsletter`` is the slug for rows that do
    not name one; ``file_name`` goes into the consent's wording. A file that cannot be
    read at all raises :class:`SubscribersError` and changes nothing.
    """
    default = _newsletter(newsletter)
    wording = f"Imported from {file_name[-200:]}"
    if not is_storable(wording):
        raise SubscribersError(
            f"the file name {file_name!r} holds a character that cannot be stored"
        )
    report = ImportReport(dry_run=dry_run)
    applier = _Applier(report, wording=wording)
    try:
        for batch in _batches(_valid_rows(source, default, report), batch_size):
            applier.apply(batch)
    except IntegrityError:
        db.session.rollback()
        raise SubscribersError(
            "a reader signed up with one of these addresses during the import; run it again"
        ) from None
    except BaseException:
        db.session.rollback()
        raise
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    return report
