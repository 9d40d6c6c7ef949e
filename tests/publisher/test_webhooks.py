"""Webhooks to the publisher's CRM (contract §9): queued with the change they report,
delivered by the worker, signed the Standard Webhooks way, retried until taken."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from standardwebhooks import Webhook
from support.receiver import Receiver
from support.web import Visitor, post_form, rows, sign_in

from auth_service.extensions import db
from auth_service.models import Reader, WebhookEvent, utcnow
from auth_service.publisher import webhooks

SECRET = "whsec_" + base64.b64encode(b"a webhook secret of 32 bytes!!!!").decode()
ADDRESS = "lea@example.com"


@pytest.fixture
def receiver():
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(request, receiver) -> dict:
    """The app's settings with the receiver as the publisher's webhook."""
    extra = {"PUBLISHER_WEBHOOK_URL": receiver.url, "PUBLISHER_WEBHOOK_SECRET": SECRET}
    for marker in request.node.iter_markers("settings"):
        extra = {**extra, **marker.kwargs}
    return extra


def verified(delivery) -> dict:
    """The event as a receiver reads it: only once its signature checks out."""
    return Webhook(SECRET).verify(delivery.body, delivery.headers)


def deliver_all() -> int:
    """Passes of the worker until nothing more goes out (one reader's events go one
    per pass, in order); how many were taken."""
    taken = 0
    for _ in range(10):
        delivered = webhooks.deliver_due()
        if not delivered:
            return taken
        taken += delivered
    return taken


def make_due() -> None:
    """Let the backoff pass: every waiting event is due now."""
    db.session.execute(update(WebhookEvent).values(next_attempt_at=utcnow()))
    db.session.commit()


def test_signing_up_queues_signed_events_that_reach_the_receiver(app, client, receiver):
    sign_in(app, client, ADDRESS, newsletter=True)
    assert {event.type for event in rows(WebhookEvent)} == {
        "reader.created",
        "newsletter.subscribed",
    }
    assert deliver_all() == 2
    events = [verified(delivery) for delivery in receiver.received]
    [reader] = rows(Reader)
    assert {event["type"] for event in events} == {"reader.created", "newsletter.subscribed"}
    for event in events:
        assert event["data"]["reader"] == {"id": reader.public_id, "email": ADDRESS}
    subscribed = next(e for e in events if e["type"] == "newsletter.subscribed")
    assert subscribed["data"]["newsletter"] == "daily"
    ids = [delivery.headers["webhook-id"] for delivery in receiver.received]
    assert len(set(ids)) == 2 and all(i.startswith("evt_") for i in ids)
    assert webhooks.deliver_due() == 0 and len(receiver.received) == 2  # sent once


def test_a_receiver_answering_500_then_200_gets_the_event_once_more_with_the_same_id(
    app, client, receiver
):
    receiver.answers = [500]
    sign_in(app, client, ADDRESS)
    assert webhooks.deliver_due() == 0
    [event] = rows(WebhookEvent)
    assert event.sent_at is None and event.attempts == 1 and "500" in event.last_error
    assert event.next_attempt_at > utcnow()  # backoff: not hammered at once
    assert webhooks.deliver_due() == 0 and len(receiver.received) == 1
    make_due()
    assert webhooks.deliver_due() == 1
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    verified(second)
    make_due()
    assert webhooks.deliver_due() == 0 and len(receiver.received) == 2


def test_a_receiver_that_is_down_loses_nothing(app, client, receiver):
    receiver.stop()
    sign_in(app, client, ADDRESS)
    assert webhooks.deliver_due() == 0
    [event] = rows(WebhookEvent)
    assert event.sent_at is None and event.failed_at is None and event.last_error
    receiver.start()
    make_due()
    assert webhooks.deliver_due() == 1
    assert verified(receiver.received[0])["type"] == "reader.created"


def test_a_forged_or_altered_delivery_does_not_verify(app, client, receiver):
    sign_in(app, client, ADDRESS)
    webhooks.deliver_due()
    [delivery] = receiver.received
    altered = delivery.body.replace(b"reader.created", b"reader.deleted")
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(altered, delivery.headers)
    other = "whsec_" + base64.b64encode(b"another secret of thirty-two b!!").decode()
    with pytest.raises(Exception, match="signature"):
        Webhook(other).verify(delivery.body, delivery.headers)


def test_unsubscribing_and_deleting_the_account_are_reported(app, client, receiver):
    sign_in(app, client, ADDRESS, newsletter=True)
    deliver_all()
    post_form(client, "/account/newsletters", {}, page="/account")
    post_form(client, "/account/delete", {"confirm": ADDRESS}, page="/account")
    deliver_all()
    types = [verified(delivery)["type"] for delivery in receiver.received[2:]]
    assert types == ["newsletter.unsubscribed", "reader.deleted"]
    assert json.loads(receiver.received[-1].body)["data"]["reader"]["email"] == ADDRESS


def test_a_reader_signing_in_again_is_not_created_twice(app, client, browser, receiver):
    sign_in(app, client, ADDRESS)
    Visitor(app, browser).sign_in(ADDRESS)
    assert [event.type for event in rows(WebhookEvent)] == ["reader.created"]


@pytest.mark.settings(PUBLISHER_WEBHOOK_URL=None, PUBLISHER_WEBHOOK_SECRET=None)
def test_without_a_webhook_nothing_is_queued(app, client, receiver):
    sign_in(app, client, ADDRESS, newsletter=True)
    assert rows(WebhookEvent) == []
    assert receiver.received == []


def test_an_event_gives_up_after_the_outbox_s_tries(app, client, receiver):
    app.config["OUTBOX_MAX_ATTEMPTS"] = 2
    receiver.answers = [503, 503]
    sign_in(app, client, ADDRESS)
    webhooks.deliver_due()
    make_due()
    webhooks.deliver_due()
    [event] = rows(WebhookEvent)
    assert event.failed_at is not None and event.attempts == 2
    make_due()
    assert webhooks.deliver_due() == 0 and len(receiver.received) == 2


def test_the_worker_delivers_events_without_being_asked(app, client, receiver):
    """The in-process worker takes what waits at its start, and is woken by the commit
    of a later change. (The sign-in comes first: once delivered, a sign-in mail keeps
    no link to read.)"""
    from auth_service.mail.worker import Worker

    sign_in(app, client, ADDRESS)
    worker = Worker(app, in_process=True)
    thread = worker.start_thread()

    def wait_for(count: int) -> None:
        deadline = utcnow() + timedelta(seconds=10)
        while len(receiver.received) < count and utcnow() < deadline:
            thread.join(0.05)

    try:
        wait_for(1)
        post_form(client, "/account/delete", {"confirm": ADDRESS}, page="/account")
        wait_for(2)
    finally:
        worker.stop()
        thread.join(10)
    types = [verified(delivery)["type"] for delivery in receiver.received]
    assert types == ["reader.created", "reader.deleted"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_a_delivery(app, client, receiver, status):
    """urllib would follow a 301/302/303 as a GET without the event, and count the page
    it lands on as taken: the event would be lost."""
    receiver.answers = [status]
    sign_in(app, client, ADDRESS)
    assert webhooks.deliver_due() == 0
    [event] = rows(WebhookEvent)
    assert event.sent_at is None and str(status) in event.last_error


def test_a_retried_event_never_arrives_after_a_later_one_of_the_same_reader(app, client, receiver):
    """The receiver refuses "subscribed" once; the reader then unsubscribes. The CRM
    must end with "unsubscribed": the later event waits for the earlier one."""
    sign_in(app, client, ADDRESS, newsletter=True)
    receiver.answers = [200, 500]  # reader.created taken, newsletter.subscribed refused
    assert webhooks.deliver_due() == 1
    assert webhooks.deliver_due() == 0  # the refusal: "subscribed" waits for a retry
    post_form(client, "/account/newsletters", {}, page="/account")
    assert deliver_all() == 0  # "unsubscribed" waits behind it
    make_due()
    assert deliver_all() == 2
    types = [json.loads(delivery.body)["type"] for delivery in receiver.received]
    assert types == [
        "reader.created",
        "newsletter.subscribed",
        "newsletter.subscribed",
        "newsletter.unsubscribed",
    ]


def test_a_delivered_event_keeps_no_address(app, client, receiver):
    sign_in(app, client, ADDRESS)
    webhooks.deliver_due()
    [event] = rows(WebhookEvent)
    assert event.sent_at is not None
    assert ADDRESS not in json.dumps(event.payload)
    assert event.payload["data"]["reader"]["id"] == rows(Reader)[0].public_id


@pytest.mark.parametrize(
    "url, secret",
    [
        ("file:///etc/passwd", SECRET),
        ("ftp://crm.example/hook", SECRET),
        ("https://crm.example/hook", "Tr0ub4dor&3xyz"),
        ("https://crm.example/hook", "whsec_" + base64.b64encode(b"short").decode()),
        ("https://crm.example/hook", None),
        (None, SECRET),
    ],
)
def test_a_webhook_setting_that_cannot_work_is_refused_at_start(url, secret):
    from auth_service import create_app
    from auth_service.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="PUBLISHER_WEBHOOK"):
        create_app(
            {
                "SECRET_KEY": "k" * 40,
                "PUBLISHER_WEBHOOK_URL": url,
                "PUBLISHER_WEBHOOK_SECRET": secret,
            }
        )
