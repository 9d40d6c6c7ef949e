"""Parts failing under the running service (gunicorn, both databases): what the reader
sees, what the log says, and that the service recovers by itself."""

from __future__ import annotations

import redis
from support.live import Browser, start_serve, stop_gunicorn
from support.redis_server import start_redis, stop_redis


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
