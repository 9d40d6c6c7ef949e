"""Commands: ``auth-service demo``, ``worker``, ``articles import``, ``newsletter send`` and
``unsubscribe-mail`` (and Flask's own)."""

from __future__ import annotations

import json
import logging
import os
import sys
from importlib import resources

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, NoAppException, with_appcontext
from flask_migrate import upgrade
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.serving import run_simple

from . import create_app, logs, serve
from .articles.store import ArticleError, import_articles
from .config import ConfigurationError
from .entitlement.keys_cli import keys_group
from .extensions import db
from .mail.dkim_cli import dkim_group
from .mail.worker import Worker, deliver_due
from .newsletter.editions import EditionError, queue_edition, today
from .newsletter.subscribers_cli import subscribers_group
from .newsletter.unsubscribe_mail import MAX_BYTES, unsubscribe_by_mail
from .publisher import webhooks
from .publisher.api_keys_cli import api_keys_group
from .storable import is_storable


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver every message that is due, then exit.")
@with_appcontext
def worker_command(once: bool) -> None:
    """Deliver queued mail and webhook events (retrying with backoff while a server is
    down)."""
    if once:
        report = deliver_due()
        click.echo(f"sent {report.sent}, retry later {report.retried}, failed {report.failed}")
        if current_app.config["PUBLISHER_WEBHOOK_URL"]:
            click.echo(f"webhook events delivered {webhooks.deliver_due()}")
        return
    logs.configure_json_logging()  # one JSON line each, as the web processes write
    click.echo("Outbox worker running; Ctrl+C to stop.")
    try:
        Worker(current_app._get_current_object()).run()
    except KeyboardInterrupt:
        click.echo("Worker stopped.")


articles_group = click.Group("articles", help="Manage articles.")


@articles_group.command("import")
@click.argument("file", type=click.File("rb"))
@with_appcontext
def import_command(file) -> None:
    """Upsert the articles of a JSON FILE by slug (bodies are sanitised)."""
    try:
        items = json.load(file)
    except RecursionError:  # the parser recurses once per bracket
        raise click.ClickException(f"{file.name} is nested too deeply to be read") from None
    except ValueError as error:  # not JSON, not UTF-8, or an integer of 4,300+ digits
        raise click.ClickException(f"{file.name} is not valid JSON: {error}") from None
    try:
        report = import_articles(items)
    except ArticleError as error:
        raise click.ClickException(f"nothing imported: {error}") from None
    click.echo(f"{report.created} created, {report.updated} updated")


newsletter_group = click.Group(
    "newsletter", help="Send newsletter editions; act on unsubscribe mails."
)


@newsletter_group.command("send")
@click.argument("slug")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The edition's day (default: today, in the site's time zone).",
)
@click.option("--dry-run", is_flag=True, help="Count who would get it; queue nothing.")
@with_appcontext
def send_command(slug: str, day, dry_run: bool) -> None:
    """Queue the edition of newsletter SLUG (e.g. daily) for every subscriber.

    Safe to run again: readers who already have this edition are skipped.
    """
    if not is_storable(slug):  # bytes that are not UTF-8: PostgreSQL cannot be asked
        raise click.BadParameter(f"there is no newsletter {slug!r}", param_hint="SLUG")
    edition_day = day.date() if day else today()
    try:
        report = queue_edition(slug, edition_day, dry_run=dry_run)
    except EditionError as error:
        raise click.ClickException(str(error)) from None
    verb = "would queue" if dry_run else "queued"
    click.echo(
        f"{slug} {edition_day.isoformat()}: {report.articles} articles, {verb} "
        f"{report.queued}, already queued before {report.already_queued}"
    )


# sysexits.h: the mail server keeps the mail and tries again later.
EX_TEMPFAIL = 75


@newsletter_group.command("unsubscribe-mail")
@with_appcontext
def unsubscribe_mail_command() -> None:
    """Act on one mail sent to the List-Unsubscribe address, read on standard input.

    For the mail server to pipe each such mail to (Postfix, Exim, procmail). Exits 0
    whatever the mail says, so nothing is bounced to a forged sender; exits 75
    (EX_TEMPFAIL) if the database cannot be reached, so the server tries again later.
    """
    raw = sys.stdin.buffer.read(MAX_BYTES)
    while sys.stdin.buffer.read(MAX_BYTES):
        pass  # read to the end: a pipe closed early can make the mail server bounce it
    try:
        outcome = unsubscribe_by_mail(raw)
        db.session.commit()
    except SQLAlchemyError as error:
        db.session.rollback()
        click.echo(f"database unavailable, try again later: {type(error).__name__}", err=True)
        sys.exit(EX_TEMPFAIL)
    click.echo(outcome)


def demo_articles() -> list:
    """The demo articles shipped with the package."""
    text = resources.files("auth_service").joinpath("demo/articles.json").read_text("utf-8")
    return json.loads(text)


@click.command("serve")
@click.option(
    "--bind",
    default=lambda: os.environ.get("AUTH_SERVICE_BIND", "127.0.0.1:8000"),
    show_default="127.0.0.1:8000, or AUTH_SERVICE_BIND",
    help="Where to listen: HOST:PORT or unix:PATH.",
)
@click.option("--workers", type=click.IntRange(min=1), help="Processes [default: one per core].")
@click.option("--threads", type=click.IntRange(min=1), help="Threads per process [default: 8].")
def serve_command(bind: str, workers: int | None, threads: int | None) -> None:
    """Serve in production: gunicorn, JSON logs, metrics for every process."""
    app = _create_app_for_cli()  # a bad setting stops here, before any worker starts
    serve.prepare_metrics_folder(app.instance_path)
    with app.app_context():
        db.engine.dispose()  # no connection may be shared with the forked workers
    serve.run(bind, workers, threads)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def demo_command(host: str, port: int) -> None:
    """Create the database, load demo articles, serve with a dev mailbox."""
    if "AUTH_SERVICE_PUBLIC_URL" not in os.environ and "PUBLIC_URL" not in os.environ:
        os.environ["AUTH_SERVICE_PUBLIC_URL"] = f"http://{host}:{port}"
    # Plain console lines; migrations then leave the logging set-up alone.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = create_app({"DEV_MODE": True})
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        report = import_articles(demo_articles())
    click.echo(f"Demo articles: {report.created} created, {report.updated} updated.")
    Worker(app, in_process=True).start_thread()
    where = (
        "SMTP " + app.config["MAIL_SERVER"]
        if app.config.get("MAIL_SERVER")
        else (f"{app.config['PUBLIC_URL']}/dev/mailbox")
    )
    click.echo(
        f"\n  Open {app.config['PUBLIC_URL']}/ in your browser."
        f"\n  Mail goes to {where}.\n  Database: {app.config['SQLALCHEMY_DATABASE_URI']}\n"
    )
    # Not app.run(): Flask ignores it inside a `flask`/`auth-service` command.
    run_simple(host, port, app, threaded=True, use_reloader=False)


def init_app(app: Flask) -> None:
    """Add the project's commands to ``flask --app auth_service``."""
    app.cli.add_command(worker_command)
    app.cli.add_command(articles_group)
    app.cli.add_command(newsletter_group)
    app.cli.add_command(subscribers_group)
    app.cli.add_command(demo_command)
    app.cli.add_command(keys_group)
    app.cli.add_command(api_keys_group)
    app.cli.add_command(dkim_group)


def _create_app_for_cli() -> Flask:
    """The app for a command; a bad setting is a one-line error, not a traceback."""
    try:
        return create_app()
    except ConfigurationError as error:
        raise NoAppException(str(error)) from None


main = FlaskGroup(
    create_app=_create_app_for_cli,
    help="auth-service: the same commands as `flask --app auth_service`.",
)
main.add_command(demo_command)
main.add_command(serve_command)
