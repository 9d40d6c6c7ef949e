"""``auth-service keys``: rotate and list the keys that sign entitlement tokens."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..extensions import db
from ..models import iso_utc, utcnow
from . import keys

keys_group = click.Group(
    "keys", help="The keys that sign entitlement tokens (public halves at /.well-known/jwks.json)."
)


@keys_group.command("rotate")
@with_appcontext
def rotate_command() -> None:
    """Make a new current key; keep the old public key published until its last token
    has expired, and drop keys no token needs any more."""
    new, dropped = keys.rotate()
    db.session.commit()
    click.echo(f"New current key: {new.kid}")
    for row in dropped:
        click.echo(f"Dropped (its last token has expired): {row.kid}")


@keys_group.command("list")
@with_appcontext
def list_command() -> None:
    """The keys with their state; never the keys themselves."""
    now = utcnow()
    published = {row.kid for row in keys.published(now)}
    rows = keys.published(now) + keys.expired(now)
    if not rows:
        click.echo("No key yet: the first one is made when the first token is signed.")
    for row in sorted(rows, key=lambda row: (row.created_at, row.kid)):
        if row.retired_at is None:
            state = "current"
        elif row.kid in published:
            state = f"retired {iso_utc(row.retired_at)}, published until its tokens expire"
        else:
            state = f"retired {iso_utc(row.retired_at)}, no longer needed"
        click.echo(f"{row.kid}  created {iso_utc(row.created_at)}  {state}")
