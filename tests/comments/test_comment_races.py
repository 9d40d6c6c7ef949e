"""The comment limit under parallel posts, against gunicorn (two processes of eight
threads) on SQLite and PostgreSQL: however many arrive at once, no more comments are
stored than ``COMMENT_LIMIT_PER_READER`` allows."""

from __future__ import annotations

from collections import Counter

import pytest
from support.live import Browser, live_server, release_together
from support.news_site import SLUG, import_demo_articles

# The harness's fixture, imported so that pytest finds it in this module.
__all__ = ["live_server"]

LIMIT = 4
PARALLEL = 10


@pytest.fixture
def articles_in(database_url):
    import_demo_articles(database_url)


def comment_form(browser: Browser, body: str, **extra) -> dict:
    page = f"/articles/{SLUG}"
    return {"csrf_token": browser.csrf_token(page), "body": body, **extra}


@pytest.mark.live_settings(RATELIMIT_ENABLED=True, COMMENT_LIMIT_PER_READER=f"{LIMIT} per hour")
def test_parallel_comments_of_one_reader_stop_at_the_limit(articles_in, live_server):
    """Defence: the limit is counted before the view, atomically, in shared storage."""
    browser = Browser(live_server)
    browser.sign_in("lea@example.com")
    path = f"/articles/{SLUG}/comments"
    first = browser.post(path, comment_form(browser, "Premier", display_name="Léa"))
    assert first.status == 303, first.body[:300]
    prepared = [
        browser.prepare("POST", path, comment_form(browser, f"Commentaire {n}"))
        for n in range(PARALLEL)
    ]
    statuses = Counter(reply.status for reply in release_together(prepared))
    assert statuses == {303: LIMIT - 1, 429: PARALLEL - (LIMIT - 1)}, statuses
    assert live_server.scalar("SELECT count(*) FROM comments") == LIMIT


def test_a_report_sent_several_times_at_once_is_recorded_once(articles_in, live_server):
    """Defence: a report is one row per reader and comment; a double click is no 500."""
    author, reader = Browser(live_server), Browser(live_server)
    author.sign_in("bob@example.com")
    path = f"/articles/{SLUG}/comments"
    assert author.post(path, comment_form(author, "Un avis", display_name="Bob")).status == 303
    comment = live_server.scalar("SELECT public_id FROM comments")
    reader.sign_in("lea@example.com")
    form = {"csrf_token": reader.csrf_token(f"/articles/{SLUG}")}
    prepared = [reader.prepare("POST", f"/comments/{comment}/report", form) for _ in range(6)]
    statuses = Counter(reply.status for reply in release_together(prepared))
    assert statuses == {303: 6}, statuses
    assert live_server.scalar("SELECT count(*) FROM comment_reports") == 1
