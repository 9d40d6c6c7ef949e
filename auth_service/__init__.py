"""auth-service: sign-up, magic-link sign-in and newsletter behind a news site's wall."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

from .config import ConfigurationError

PACKAGE = Path(__file__).resolve().parent


def resource(name: str) -> Path:
    """A top-level folder of the project (``templates``, ``migrations``).

    In the repository they sit beside the package; in an installed wheel they are
    shipped inside it.
    """
    inside = PACKAGE / name
    return inside if inside.is_dir() else PACKAGE.parent / name


class MissingSecretKey(ConfigurationError):
    """Raised when the service would start in production without a secret key."""


def create_app(test_config: dict | None = None) -> Flask:
    """Build the application: configuration, extensions, blueprints, commands."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        # Where the SQLite database, the dev mailbox and the dev key live.
        instance_path=_instance_path_from_environment(),
        template_folder=str(resource("templates")),
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    from . import config

    config.load(app, test_config)  # raises ConfigurationError on a setting it cannot use
    app.config["DEV_MODE"] = bool(app.config["DEV_MODE"] or app.debug)
    _ensure_secret_key(app)

    from . import database, errors, i18n, limit_storage, logs, metrics, security
    from .extensions import csrf, db, limiter, mail, migrate

    database.init_app(app)  # and the SQLite pragmas of every connection (a listener)
    migrate.init_app(app, db, directory=str(resource("migrations")))
    mail.init_app(app)
    csrf.init_app(app)
    limit_storage.init_app(app)  # checks the storage of the limits; warns on memory://
    limiter.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    logs.init_app(app)  # the request id on every answer and log line
    metrics.init_app(app)  # /metrics, and every request counted and timed

    from . import account, api, articles, auth, comments, embed, entitlement, health, newsletter
    from .mail import dev_mailbox, dkim, outbox

    dkim.init_app(app)  # the signing key, read once; a start refused if it cannot sign
    outbox.init_app(app)  # listeners: wake the mail worker after a commit that queued mail

    articles.init_app(app)
    auth.init_app(app)
    api.init_app(app)  # the JSON API for the news site's pages, and its CORS
    app.register_blueprint(embed.bp)  # /embed/paywall.js: the wall in the news site's pages
    entitlement.init_app(app)  # /.well-known/jwks.json; the token cookie after each request
    app.register_blueprint(account.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(newsletter.bp)
    comments.init_app(app)  # comments under articles, the moderators' page
    if app.config["DEV_MODE"]:
        app.register_blueprint(dev_mailbox.bp)

    from . import cli

    cli.init_app(app)
    return app


def _instance_path_from_environment() -> str | None:
    """``AUTH_SERVICE_INSTANCE_PATH``, made absolute, or ``None`` for Flask's default."""
    configured = os.environ.get("AUTH_SERVICE_INSTANCE_PATH")
    return os.path.abspath(configured) if configured else None


def _ensure_secret_key(app: Flask) -> None:
    """Refuse to run in production without ``SECRET_KEY``; invent one in dev mode.

    The dev key is kept in the instance folder so that sessions and links survive a
    restart of ``auth-service demo``.
    """
    if app.config.get("SECRET_KEY"):
        return
    if not app.config["DEV_MODE"]:
        raise MissingSecretKey(
            "SECRET_KEY is not set. Sessions and sign-in links are signed with it, so the "
            "service will not start without one outside debug mode. Set "
            "AUTH_SERVICE_SECRET_KEY to a long random value, for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
        )
    key_file = Path(app.instance_path) / "dev_secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
        key_file.chmod(0o600)
    app.config["SECRET_KEY"] = key_file.read_text().strip()
