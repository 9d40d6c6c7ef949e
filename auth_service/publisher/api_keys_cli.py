"""``auth-service api-keys``: the keys a news site's CMS pushes articles with."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..extensions import db
from ..models import iso_utc
from . import api_keys

api_keys_group = click.Group(
    "api-keys", help="Keys for PUT/DELETE /api/v1/articles/<slug> (Authorization: Bearer)."
)


@api_keys_group.command("create")
@click.argument("name")
@with_appcontext
def create_command(name: str) -> None:
    """Make a key named NAME and print it, once: only its hash is kept."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise click.UsageError("NAME must be 1 to 100 printable characters.")
    try:
        _row, key = api_keys.create(name)
    except api_keys.DuplicateName:
        raise click.UsageError(f"A key named {name!r} exists already.") from None
    db.session.commit()
    click.echo(key)
    click.echo(f"This is the only time the key {name!r} is shown: store it now.", err=True)


@api_keys_group.command("list")
@with_appcontext
def list_command() -> None:
    """The keys' names, dates and states (never the keys)."""
    rows = api_keys.all_keys()
    if not rows:
        click.echo("No API key yet: auth-service api-keys create NAME")
    for row in rows:
        state = f"revoked {iso_utc(row.revoked_at)}" if row.revoked_at else "live"
        used = iso_utc(row.last_used_at) or "never"
        click.echo(f"{row.name}  created {iso_utc(row.created_at)}  last used {used}  {state}")


@api_keys_group.command("revoke")
@click.argument("name")
@with_appcontext
def revoke_command(name: str) -> None:
    """Revoke the key NAME: it opens nothing from now on."""
    if api_keys.revoke(name) is None:
        raise click.UsageError(f"No live key is named {name!r}.")
    db.session.commit()
    click.echo(f"Revoked {name!r}.")
