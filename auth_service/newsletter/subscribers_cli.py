"""Commands: ``auth-service subscribers export`` and ``subscribers import`` (CSV).

The CSV format, both ways, is documented in :mod:`auth_service.newsletter.subscribers`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click
from flask.cli import with_appcontext

from ..models import DAILY_NEWSLETTER
from .subscribers import ImportReport, SubscribersError, import_subscribers, write_export

subscribers_group = click.Group(
    "subscribers", help="Export or import newsletter subscribers as CSV."
)


@subscribers_group.command("export")
@click.option(
    "--newsletter",
    "slug",
    metavar="SLUG",
    default=None,
    help="Only this newsletter (e.g. daily). Default: every newsletter.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="The file to write; - for standard output.",
)
@with_appcontext
def export_command(slug: str | None, output: str) -> None:
    """Write every reader's newsletter consents as CSV.

    Columns: email, newsletter, subscribed (true/false), consented_at (ISO 8601 UTC),
    wording, source, withdrawn_at. One row per reader and newsletter they ever
    consented to, from their latest consent. Cells starting with = + - @ get a leading
    ' so that spreadsheets show them as text, never run them as formulas.

    A file is written whole or not at all.
    """
    try:
        if output == "-":
            with click.open_file("-", "w") as stdout:
                write_export(stdout, slug)
            return
        count = _export_to_file(Path(output), slug)
    except SubscribersError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
    click.echo(f"{count} rows written to {output}", err=True)


def _export_to_file(path: Path, slug: str | None) -> int:
    """Write the export next to ``path``, then move it there: never a half-written file.

    The file is readable by its owner only (it lists people's addresses).
    """
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".partial"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            count = write_export(stream, slug)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count


@subscribers_group.command("import")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--newsletter",
    "slug",
    metavar="SLUG",
    default=DAILY_NEWSLETTER,
    show_default=True,
    help="The newsletter of rows that do not name one in a newsletter column.",
)
@click.option("--dry-run", is_flag=True, help="Check the file and count; change nothing.")
@with_appcontext
def import_command(file, slug: str, dry_run: bool) -> None:
    """Import subscribers from FILE, a CSV exported by another newsletter tool.

    FILE needs a header row with an email column ("email", "Email Address", "E-mail",
    "email_address") and may have a subscribed flag ("subscribed", "status",
    "opt_in"): yes/true/1/subscribed/active subscribe, no/false/0/unsubscribed/cleaned
    unsubscribe; without a flag column every row subscribes. A "newsletter" column, as
    in the export, names each row's newsletter. Comma or semicolon; UTF-8, with or
    without BOM. Other columns are ignored.

    An address we do not know that subscribes becomes a reader, with the consent worded
    "Imported from FILE". An unsubscribe withdraws the reader's consent.

    Not all-or-nothing: the valid rows are applied together, in one transaction, and
    each rejected row (bad address, unknown flag value, duplicate, row too long) is
    listed as "line N: reason" and changes nothing. A file that cannot be read at all
    (no email column, not UTF-8) changes nothing and exits with an error.
    """
    # A name in bytes that are not UTF-8 is shown with U+FFFD in the consent's wording,
    # which the database could not store with the bytes' lone surrogates.
    file_name = os.fsencode(Path(file.name).name).decode("utf-8", "replace")
    try:
        report = import_subscribers(file, file_name=file_name, newsletter=slug, dry_run=dry_run)
    except SubscribersError as error:
        raise click.ClickException(f"{file.name}: {error}; nothing was imported") from None
    for line, reason in report.rejected:
        click.echo(f"line {line}: {reason}")
    click.echo(summary(report))


def summary(report: ImportReport) -> str:
    """The closing line of an import: what changed, or what would have."""
    counts = (
        f"{report.subscribed} subscribed ({report.readers_created} new readers), "
        f"{report.unsubscribed} unsubscribed, {report.unchanged} unchanged, "
        f"{len(report.rejected)} rejected"
    )
    if report.dry_run:
        return f"Dry run, nothing changed. Would be: {counts}."
    return counts
