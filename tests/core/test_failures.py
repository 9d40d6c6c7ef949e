"""Parts failing under the running service (gunicorn, both databases): what the reader
sees, what the log says, and that the service recovers by itself."""

from __future__ import annotations

import redis
from sqlalchemy import create_engine, text
from support.live import Browser, start_serve, stop_gunicorn
from support.redis_server import start_redis, stop_redis
from support.settings import SECRET
from support.web import assert_calm_page, csrf_token, in_english, text_of

from auth_service import create_app
from auth_service.extensions import db


def test_with_redis_down_limits_fail_open_per_process_and_come_back(database_url, tmp_path):
    """The documented choice (docs/operations.md): fail open, logged, then recover."""
    url, server = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1])
    settings = {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URI": url,
        "LOGIN_LIMIT_PER_IP": "100 per minute",
    }
    service = start_serve(database_url, tmp_path, settings)
    try:
        assert Browser(service).ask_for_link("avant@example.com")  # counted in Redis
        stop_redis(server)
        during = Browser(service)
        reply = during.post(
            "/login", {"email": "pendant@example.com", "csrf_token": during.csrf_token()}
        )
        assert reply.status == 303, reply.body[:300]  # the reader is not stopped
        # The per-address limit still holds, per process, in memory.
        replies = []
        for _ in range(4):
            again = Browser(service)
            form = {"email": "pendant@example.com", "csrf_token": again.csrf_token()}
            replies.append(again.post("/login", form).status)
        assert 429 in replies
        assert "Rate limit storage unreachable - falling back to in-memory storage" in (
            service.log_text()
        )
        url, server = start_redis(tmp_path, port=port)  # Redis is back, empty
        client = redis.Redis.from_url(url)
        for _ in range(20):  # the service looks at Redis again after a while
            Browser(service).ask_for_link(f"apres{_}@example.com")
            if client.keys("*"):
                break
        assert client.keys("*"), "the limits never went back to Redis"
        client.close()
    finally:
        stop_gunicorn(service)
        stop_redis(server)


def read_only(url: str) -> str:
    """The same database, opened so that every write fails as on a read-only disk or a
    PostgreSQL standby."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    return f"{url}?options=-c%20default_transaction_read_only%3Don"


def test_a_read_only_database_gives_a_clear_page_and_writes_nothing(database_url, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": read_only(database_url),
            "RATELIMIT_ENABLED": False,
            "PUBLIC_URL": "http://news.test",
        }
    )
    with app.app_context():
        client = in_english(app.test_client())
        assert client.get("/").status_code == 200  # reading still works
        form = {"email": "lea@example.com", "csrf_token": csrf_token(client)}
        answer = client.post("/login", data=form)
        assert_calm_page(answer, 503)
        assert "try again" in text_of(answer).lower()
        db.engine.dispose()
    writable = create_engine(database_url)
    with writable.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM login_attempts")).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM outbox_messages")).scalar() == 0
    writable.dispose()
