"""``auth-service dkim``: make the key that signs the service's mail, and say what to
publish in DNS."""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import current_app
from flask.cli import with_appcontext

from . import dkim

dkim_group = click.Group("dkim", help="The DKIM key that signs every mail (docs/mail.md).")


@dkim_group.command("keygen")
@click.option("--selector", required=True, help="The DNS label of this key, e.g. s2026.")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the private key (PEM); it must not exist yet.",
)
@click.option("--domain", help="The signing domain (default: MAIL_DEFAULT_SENDER's).")
@click.option(
    "--bits",
    default=2048,
    show_default=True,
    type=click.IntRange(dkim.SMALLEST_KEY_BITS, 4096),
    help="RSA key size; 2048 fits every DNS provider's TXT records.",
)
@with_appcontext
def keygen_command(selector: str, key_file: Path, domain: str | None, bits: int) -> None:
    """Write a new RSA key pair and print the DNS TXT record that publishes it.

    A new key takes a new selector: publish its record, wait for the DNS to serve it,
    then point DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE at it; keep the old record until
    the mail signed with the old key has been delivered (a few days).
    """
    domain = domain or dkim.default_domain(current_app.config)
    problem = dkim.name_problem(selector, domain)
    if problem:
        raise click.UsageError(f"{problem[0].upper()}{problem[1:]}.")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        # Created readable by its owner only, and never over an existing key.
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(
            f"{key_file} exists. A new key takes a new file (and a new selector)."
        ) from None
    except OSError as error:
        raise click.ClickException(f"cannot write {key_file}: {error.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
    except OSError as error:  # a full disk: leave no half key that would block a retry
        key_file.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {key_file}: {error.strerror}") from None
    click.echo(f"Wrote the private key to {key_file} (readable by its owner only).")
    click.echo(f"\nPublish this TXT record in the DNS zone of {domain}:\n")
    click.echo(dkim.zone_line(selector, domain, dkim.public_record(key)))
    click.echo("\nThen set, for the worker (and every process of the service):\n")
    click.echo(f"AUTH_SERVICE_DKIM_SELECTOR={selector}")
    click.echo(f"AUTH_SERVICE_DKIM_PRIVATE_KEY_FILE={key_file.resolve()}")
    if domain != dkim.default_domain(current_app.config):
        click.echo(f"AUTH_SERVICE_DKIM_DOMAIN={domain}")


@dkim_group.command("record")
@with_appcontext
def record_command() -> None:
    """Print the DNS TXT record of the configured key, to compare with what DNS serves
    (``dig TXT <selector>._domainkey.<domain>``)."""
    signer = dkim.signer_of(current_app)
    if signer is None:
        raise click.ClickException(
            "DKIM is not set up: set DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE "
            "(`auth-service dkim keygen` makes a key)."
        )
    click.echo(dkim.zone_line(signer.selector, signer.domain, dkim.public_record(signer.key)))
