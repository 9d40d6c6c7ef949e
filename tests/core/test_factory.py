"""The application factory and its configuration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from support.settings import SECRET

import auth_service
from auth_service import MissingSecretKey, create_app
from auth_service.config import ConfigurationError
from auth_service.database import check_sqlite_version


def test_factory_uses_test_config(app):
    assert app.testing
    assert app.config["SECRET_KEY"]


def test_refuses_to_start_without_a_secret_key(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTH_SERVICE_SECRET_KEY", raising=False)
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(MissingSecretKey, match="AUTH_SERVICE_SECRET_KEY"):
        create_app()


def test_dev_mode_invents_and_keeps_a_secret_key(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTH_SERVICE_SECRET_KEY", raising=False)
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    first = create_app({"DEV_MODE": True}).config["SECRET_KEY"]
    second = create_app({"DEV_MODE": True}).config["SECRET_KEY"]
    assert first and first == second
    assert (tmp_path / "dev_secret_key").stat().st_mode & 0o077 == 0


def test_settings_come_from_prefixed_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("AUTH_SERVICE_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("AUTH_SERVICE_MAIL_PORT", "2525")
    monkeypatch.setenv("AUTH_SERVICE_LOGIN_TOKEN_MAX_AGE", "600")
    monkeypatch.setenv("AUTH_SERVICE_RATELIMIT_ENABLED", "false")
    monkeypatch.setenv("AUTH_SERVICE_SECRET_KEY_FALLBACKS", "old-one,older-one")
    monkeypatch.setenv("PUBLIC_URL", "https://auth.news.example/")
    app = create_app()
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert app.config["MAIL_PORT"] == 2525
    assert app.config["LOGIN_TOKEN_MAX_AGE"] == 600
    assert app.config["RATELIMIT_ENABLED"] is False
    assert app.config["SECRET_KEY_FALLBACKS"] == ["old-one", "older-one"]
    assert app.config["PUBLIC_URL"] == "https://auth.news.example"
    assert app.config["MAIL_DEFAULT_SENDER"] == "no-reply@auth.news.example"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/auth_service.sqlite3"


@pytest.mark.settings(PUBLIC_URL="https://auth.news.example")
def test_https_public_url_makes_cookies_secure_and_sends_hsts(app, reader, client):
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
    response = reader.ask_for_link("secure@example.com")
    cookies = response.headers.getlist("Set-Cookie")
    attempt_cookie = next(c for c in cookies if c.startswith("auth_attempts="))
    assert "Secure" in attempt_cookie and "HttpOnly" in attempt_cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_plain_http_public_url_sends_no_hsts(client):
    assert "Strict-Transport-Security" not in client.get("/").headers


def test_health_check_answers_when_the_database_does(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "up"}


@pytest.fixture
def database_gone():
    """A client of an app whose database cannot be opened."""
    dead = "sqlite:////nonexistent-folder/none.sqlite3"
    app = create_app({"SECRET_KEY": "k", "TESTING": True, "SQLALCHEMY_DATABASE_URI": dead})
    return app.test_client()


def test_health_check_says_503_when_the_database_is_gone(database_gone):
    response = database_gone.get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == "down"


def test_front_page_says_503_when_the_database_is_gone(database_gone):
    response = database_gone.get("/")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and "sqlite" not in body.lower()


def test_sender_with_a_display_name_is_reduced_to_its_address(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    app = create_app(
        {"SECRET_KEY": "k", "MAIL_DEFAULT_SENDER": "Rédaction <news@quotidien.example>"}
    )
    assert app.config["MAIL_DEFAULT_SENDER"] == "news@quotidien.example"


def test_sender_that_is_not_an_address_stops_the_start(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="MAIL_DEFAULT_SENDER"):
        create_app({"SECRET_KEY": "k", "MAIL_DEFAULT_SENDER": "la rédaction"})


def test_pages_vary_with_language_and_cookies_for_caches(client):
    vary = client.get("/").headers["Vary"]
    assert "Accept-Language" in vary and "Cookie" in vary


def test_a_sqlite_too_old_for_the_outbox_claims_is_refused_with_what_to_do():
    # The check itself, given versions: this machine's SQLite is what it is.
    check_sqlite_version(sqlite3.sqlite_version_info)  # the SQLite the tests run on
    check_sqlite_version((3, 35, 0))
    for old in ((3, 34, 1), (3, 31, 1), (2, 8, 17)):
        with pytest.raises(ConfigurationError, match=r"needs 3\.35\.0 or later.*PostgreSQL"):
            check_sqlite_version(old)


def test_no_test_writes_an_instance_folder_into_the_repository(app):
    """The instance folder (SQLite file, dev mailbox, dev key) of every app the tests
    build is the test's own temporary folder, never ``instance/`` beside the code."""
    repository = Path(auth_service.__file__).resolve().parent.parent
    another = create_app({"SECRET_KEY": SECRET, "TESTING": True})
    for built in (app, another):
        assert not Path(built.instance_path).resolve().is_relative_to(repository)
