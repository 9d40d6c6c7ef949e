"""The peer of bench/peer.py: Flask-Security-Too's unified sign-in, by mail only.

A reader gives an address, gets a code and a link by mail (Flask-Mail, sent inside the
request), and signs in with either; no password, no second factor. The gated page is a
route behind ``@auth_required()`` returning the bytes of our own article page.

It runs in the peer's venv (bench/peer-requirements.txt), never in ours, and reads its
settings from the environment bench/peer.py gives it:

    PEER_DATABASE_URL  its own database (SQLAlchemy URL)
    PEER_SECRET_KEY    Flask's secret key, also the key of its code secrets
    PEER_MAIL_PORT     the SMTP server on 127.0.0.1
    PEER_PAGE          a file holding the page's bytes
    PEER_PAGE_TYPE     the page's Content-Type

    flask --app peer_app create-readers 52   # its tables, reader-0..51@example.com
    gunicorn 'peer_app:create_app()'

Unified sign-in signs in known users only: readers are created beforehand, each with
the email method set up, as its registration would do without a password.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask import Flask, Response
from flask_mail import Mail
from flask_security import Security, SQLAlchemyUserDatastore, auth_required
from flask_security.models import fsqla_v3 as fsqla
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
fsqla.FsModels.set_db_info(db)


class Role(db.Model, fsqla.FsRoleMixin):
    """A role: Flask-Security's datastore needs the model; no reader has one."""


class User(db.Model, fsqla.FsUserMixin):
    """A reader: an address, and the secret the mailed codes are made from."""


def settings() -> dict:
    """Flask-Security configured for the job of auth-service: sign-in by mail alone."""
    secret = os.environ["PEER_SECRET_KEY"]
    return {
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": os.environ["PEER_DATABASE_URL"],
        # As ours: a ping before each request's first query on PostgreSQL, none on SQLite.
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_pre_ping": os.environ["PEER_DATABASE_URL"].startswith("postgresql")
        },
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": int(os.environ["PEER_MAIL_PORT"]),
        "MAIL_DEFAULT_SENDER": "no-reply@news.test",
        "SECURITY_UNIFIED_SIGNIN": True,
        "SECURITY_US_ENABLED_METHODS": ["email"],  # a code and a link by mail, nothing else
        "SECURITY_US_SIGNIN_REPLACES_LOGIN": True,
        "SECURITY_US_MFA_REQUIRED": [],  # the mailed code is the only factor, as ours
        "SECURITY_PASSWORD_REQUIRED": False,
        # Code secrets are stored encrypted; these keys encrypt them.
        "SECURITY_TOTP_SECRETS": {"1": secret},
        "SECURITY_TOTP_ISSUER": "Le Quotidien",
        # Say the same thing whether or not an address is known, as ours does.
        "SECURITY_RETURN_GENERIC_RESPONSES": True,
    }


def create_app() -> Flask:
    """The peer: unified sign-in, the mailer, and the gated page."""
    app = Flask(__name__)
    app.config.update(settings())
    db.init_app(app)
    Mail(app)
    datastore = SQLAlchemyUserDatastore(db, User, Role)
    Security(app, datastore)
    body = Path(os.environ["PEER_PAGE"]).read_bytes()
    content_type = os.environ["PEER_PAGE_TYPE"]

    @app.get("/articles/<slug>")
    @auth_required()
    def article(slug: str) -> Response:
        """The gated article: the same bytes as ours, for a signed-in reader only."""
        return Response(body, content_type=content_type)

    @app.cli.command("create-readers")
    @click.argument("count", type=int)
    def create_readers(count: int) -> None:
        """Make the tables afresh and COUNT readers, reader-0@example.com onwards."""
        db.drop_all()
        db.create_all()
        for number in range(count):
            reader = datastore.create_user(email=f"reader-{number}@example.com")
            datastore.us_setup_email(reader)
        db.session.commit()

    return app
