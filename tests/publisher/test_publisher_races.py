"""The publisher's rules under real parallel requests: released together, against
gunicorn with several processes and threads, on SQLite and PostgreSQL
(see tests/support/live.py); and two webhook workers at once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from support.articles import ARTICLE
from support.live import Browser, live_server, release_together
from support.network import free_port
from support.receiver import Receiver
from support.settings import SECRET
from support.web import sign_in

from auth_service import create_app
from auth_service.extensions import db
from auth_service.publisher import api_keys, webhooks

# The harness's fixture, imported so that pytest finds it in this module.
__all__ = ["live_server"]

TRIALS = 6
WEBHOOK_SECRET = "whsec_YSB3ZWJob29rIHNlY3JldCBvZiAzMiBieXRlcyEhISE="
# Events are queued (no worker runs beside gunicorn here): a port nobody listens on.
QUEUEING = {
    "PUBLISHER_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook",
    "PUBLISHER_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


def _keys(database_url: str, count: int) -> list[str]:
    """``count`` live API keys made in the server's database."""
    app = create_app({"SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        made = [api_keys.create(f"cms-{n}")[1] for n in range(count)]
        db.session.commit()
        db.engine.dispose()
    return made


def test_two_cms_writers_of_one_new_slug_at_once_create_it_once(live_server, database_url):
    """Two keys PUT the same new article at the same instant, six times over: never a
    5xx (the upsert is one statement), one "created", one "updated", one row."""
    keys = _keys(database_url, 2)
    failures = {}
    for trial in range(TRIALS):
        slug = f"course-{trial}"
        writers = [Browser(live_server) for _ in keys]
        replies = release_together(
            [
                writer.prepare(
                    "PUT",
                    f"/api/v1/articles/{slug}",
                    json_body={**ARTICLE, "slug": slug},
                    headers={"Authorization": f"Bearer {key}"},
                )
                for writer, key in zip(writers, keys, strict=True)
            ]
        )
        statuses = sorted(reply.status for reply in replies)
        rows = live_server.scalar("SELECT count(*) FROM articles WHERE slug = :s", s=slug)
        actions = sorted(
            row[0]
            for row in live_server.rows(
                "SELECT action FROM article_changes WHERE slug = :s", s=slug
            )
        )
        if statuses != [200, 201] or rows != 1 or actions != ["created", "updated"]:
            failures[trial] = (statuses, rows, actions)
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


@pytest.mark.live_settings(**QUEUEING)
def test_two_first_sign_ins_of_one_address_at_once_report_one_new_reader(live_server):
    """Two browsers open their own link of one new address at the same instant, six
    times over: one account, so one reader.created (the losing savepoint takes its
    event with it)."""
    failures = {}
    for trial in range(TRIALS):
        address = f"nouvelle{trial}@example.com"
        first, second = Browser(live_server), Browser(live_server)
        tokens = [first.ask_for_link(address).token, second.ask_for_link(address).token]
        replies = release_together(
            [
                browser.prepare("GET", f"/login/verify?token={token}")
                for browser, token in zip((first, second), tokens, strict=True)
            ]
        )
        created = live_server.scalar(
            "SELECT count(*) FROM webhook_events e JOIN readers r "
            "ON r.public_id = e.reader_key WHERE r.email = :a AND e.type = 'reader.created'",
            a=address,
        )
        if any(reply.status >= 500 for reply in replies) or created != 1:
            failures[trial] = ([reply.status for reply in replies], created)
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


@pytest.fixture
def receiver():
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(receiver) -> dict:
    """The app of the worker test: its webhook is the receiver."""
    return {"PUBLISHER_WEBHOOK_URL": receiver.url, "PUBLISHER_WEBHOOK_SECRET": WEBHOOK_SECRET}


def test_two_webhook_workers_at_once_deliver_each_event_once_and_in_order(app, reader, receiver):
    """Two workers claim from one queue at the same time: every event reaches the
    receiver exactly once, and each reader's own events in the order they happened."""
    for number in range(8):
        sign_in(app, app.test_client(), f"r{number}@example.com", newsletter=True)
    queued = {event.event_id for event in db.session.scalars(db.select(webhooks.WebhookEvent))}
    assert len(queued) == 16
    start = threading.Barrier(2)

    def work() -> None:
        with app.app_context():
            start.wait()
            while webhooks.deliver_due(limit=3):
                pass

    workers = [threading.Thread(target=work) for _ in range(2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    with app.app_context():
        while webhooks.deliver_due():  # what waited on order
            pass
    ids = Counter(delivery.headers["webhook-id"] for delivery in receiver.received)
    assert set(ids) == queued and set(ids.values()) == {1}, ids
    seen = {}
    for delivery in receiver.received:
        event = webhooks.json.loads(delivery.body)
        seen.setdefault(event["data"]["reader"]["id"], []).append(event["type"])
    assert all(types == ["reader.created", "newsletter.subscribed"] for types in seen.values())
