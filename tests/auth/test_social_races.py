"""Social sign-in under parallel requests, against gunicorn (two processes of eight
threads) on SQLite and PostgreSQL: one account per address, however many browsers
come back from the provider with it at the same instant, and one use per callback.

The provider is the scripted one (support.scripted_provider): real HTTP on 127.0.0.1,
real signatures; it vouches for the same address to every browser.
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import urlsplit

import pytest
import requests
from support.live import Browser, live_server, release_together
from support.scripted_provider import DEFAULT_EMAIL, ScriptedProvider

# The harness's fixture, imported so that pytest finds it in this module.
__all__ = ["live_server"]

BROWSERS = 6
ARTICLE = "/articles/train-de-nuit"


@pytest.fixture
def provider(request):
    """The scripted provider, named in the live server's settings (list it before
    ``live_server`` in a test's arguments)."""
    scripted = ScriptedProvider()
    providers = {"scripted": scripted.settings()}
    request.node.add_marker(pytest.mark.live_settings(OIDC_PROVIDERS=json.dumps(providers)))
    yield scripted
    scripted.stop()


def callback_of(browser: Browser) -> str:
    """Press the button in ``browser`` and go through the provider: the callback path."""
    token = browser.csrf_token()
    started = browser.post("/login/with/scripted", {"csrf_token": token, "next": ARTICLE})
    assert started.status == 303, (started.status, started.body[:300])
    answer = requests.get(started.headers["Location"], allow_redirects=False, timeout=10)
    callback = urlsplit(answer.headers["Location"])
    return f"{callback.path}?{callback.query}"


def test_browsers_back_from_the_provider_at_once_share_one_new_account(provider, live_server):
    browsers = [Browser(live_server) for _ in range(BROWSERS)]
    prepared = [browser.prepare("GET", callback_of(browser)) for browser in browsers]
    replies = release_together(prepared)
    assert Counter(reply.status for reply in replies) == {303: BROWSERS}, [
        reply.body[:200] for reply in replies if reply.status != 303
    ]
    assert {reply.headers["Location"] for reply in replies} == {ARTICLE}
    count = "SELECT count(*) FROM readers WHERE email = :email"
    assert live_server.scalar(count, email=DEFAULT_EMAIL) == 1
    assert live_server.scalar("SELECT count(*) FROM sign_in_events") == BROWSERS
    assert live_server.scalar("SELECT count(*) FROM reader_sessions") == BROWSERS


def test_one_callback_sent_several_times_at_once_signs_in_once(provider, live_server):
    browser = Browser(live_server)
    callback = callback_of(browser)
    replies = release_together([browser.prepare("GET", callback) for _ in range(BROWSERS)])
    # Every copy carries the same session cookie, so the same state: what stops the
    # copies is the provider spending its code once. One signs in; the others are
    # refused calmly.
    assert Counter(reply.status for reply in replies) == {303: 1, 400: BROWSERS - 1}
    assert live_server.scalar("SELECT count(*) FROM sign_in_events") == 1
