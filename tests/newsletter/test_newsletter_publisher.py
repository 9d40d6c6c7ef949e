"""What the publisher's side sees: the bounce and complaint webhook, the staff preview.

Editions are sent for real (``auth-service newsletter send daily``, then the outbox over
SMTP to an aiosmtpd server) whenever a test checks who gets one. Helpers and articles
come from ``newsletter/test_newsletter.py``.
"""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select
from support.newsletter import (
    DAY,
    DAY_TITLES,
    NEXT_DAY,
    NOT_THAT_DAY,
    new_reader,
    publish,
    reader_named,
    send_and_deliver,
)
from support.web import csrf_token

from auth_service.extensions import db
from auth_service.models import Suppression

WEBHOOK_SECRET = "hook-secret-0123456789"
PREVIEW_KEY = "preview-key-0123456789"


# --- Bounces and complaints ------------------------------------------------------------------


def post_events(client, body, *, secret: str | None = WEBHOOK_SECRET, **kwargs):
    """POST to the mail-events webhook as the mail provider would."""
    headers = {} if secret is None else {"X-Webhook-Secret": secret}
    if isinstance(body, (dict, list)):
        return client.post("/webhooks/mail-events", json=body, headers=headers)
    return client.post(
        "/webhooks/mail-events", data=body, headers=headers, content_type="application/json"
    )


BOUNCE = {"address": "bounce@example.com", "event": "bounce", "time": "2025-03-10T08:00:00Z"}


def suppressed() -> list[str]:
    """Every suppressed address."""
    db.session.commit()
    return sorted(db.session.scalars(select(Suppression.email)))


@pytest.mark.settings(MAIL_EVENTS_SECRET=WEBHOOK_SECRET)
@pytest.mark.parametrize("secret", [None, "", "wrong-secret", WEBHOOK_SECRET + "x", "clé"])
def test_the_webhook_refuses_a_wrong_or_missing_secret(client, secret):
    response = post_events(client, BOUNCE, secret=secret)
    assert response.status_code == 403
    assert suppressed() == []


def test_the_webhook_is_closed_when_no_secret_is_configured(client):
    assert post_events(client, BOUNCE, secret="").status_code == 403
    assert post_events(client, BOUNCE, secret="None").status_code == 403
    assert suppressed() == []


@pytest.mark.settings(MAIL_EVENTS_SECRET=WEBHOOK_SECRET)
@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ("{not json", "object"),
        ('"a string"', "object"),
        ("null", "object"),
        ({**BOUNCE, "event": "opened"}, "event"),
        ({key: value for key, value in BOUNCE.items() if key != "event"}, "event"),
        ({**BOUNCE, "time": "yesterday"}, "time"),
        ({**BOUNCE, "time": "2025-03-10T08:00:00"}, "time"),  # no time zone
        ({key: value for key, value in BOUNCE.items() if key != "time"}, "time"),
        ({**BOUNCE, "address": "not an address"}, "address"),
        ({**BOUNCE, "address": ""}, "address"),
        ({**BOUNCE, "address": ["bounce@example.com"]}, "address"),
        ([BOUNCE, {**BOUNCE, "address": "other@example.com", "event": "spam"}], "event"),
    ],
)
def test_a_malformed_event_is_refused_with_a_message_and_nothing_recorded(client, body, mentions):
    response = post_events(client, body)
    assert response.status_code == 422
    answer = response.get_json()
    assert mentions in str(answer)
    assert suppressed() == []


@pytest.mark.settings(MAIL_EVENTS_SECRET=WEBHOOK_SECRET)
def test_a_list_of_events_is_recorded_with_addresses_normalised(client):
    events = [
        {"address": "Bounce@EXAMPLE.com", "event": "bounce", "time": "2025-03-10T08:00:00Z"},
        {"address": "angry@example.com", "event": "complaint", "time": "2025-03-10T09:00:00+01:00"},
    ]
    response = post_events(client, events)
    assert response.status_code == 200
    assert response.get_json()["recorded"] == 2
    assert suppressed() == ["angry@example.com", "bounce@example.com"]
    # The same address reported again stays one row, with the newest event.
    again = {"address": "bounce@example.com", "event": "complaint", "time": "2025-03-11T08:00:00Z"}
    assert post_events(client, again).status_code == 200
    assert suppressed() == ["angry@example.com", "bounce@example.com"]
    row = db.session.scalar(select(Suppression).where(Suppression.email == "bounce@example.com"))
    assert row.event == "complaint"


@pytest.mark.settings(MAIL_EVENTS_SECRET=WEBHOOK_SECRET)
def test_a_bounce_stops_the_edition_until_the_reader_clears_it(
    app, reader, client, runner, smtp_server
):
    publish()
    reader.sign_in("bounce@example.com", newsletter=True)
    new_reader("fine@example.com")
    account = client.get("/account").get_data(as_text=True)
    assert "/account/mail-problem/clear" not in account

    assert post_events(app.test_client(), BOUNCE).status_code == 200

    first = send_and_deliver(runner, smtp_server, DAY)
    assert [m["To"] for m in first] == ["fine@example.com"]
    account = client.get("/account").get_data(as_text=True)
    assert "/account/mail-problem/clear" in account
    assert "bounce@example.com" in account
    cleared = client.post(
        "/account/mail-problem/clear", data={"csrf_token": csrf_token(client, "/account")}
    )
    assert cleared.status_code == 303
    assert "/account/mail-problem/clear" not in client.get("/account").get_data(as_text=True)
    assert suppressed() == []

    second = send_and_deliver(runner, smtp_server, NEXT_DAY)
    assert sorted(m["To"] for m in second) == ["bounce@example.com", "fine@example.com"]


@pytest.mark.settings(MAIL_EVENTS_SECRET=WEBHOOK_SECRET)
def test_a_bounce_reported_for_the_ascii_form_of_a_domain_stops_the_unicode_one(
    app, runner, smtp_server
):
    publish()
    new_reader("lecteur@bücher.de")
    new_reader("fine@example.com")
    event = {"address": "lecteur@xn--bcher-kva.de", "event": "bounce", "time": "2025-03-10T08:00Z"}

    assert post_events(app.test_client(), event).status_code == 200

    assert suppressed() == ["lecteur@bücher.de"]
    assert [m["To"] for m in send_and_deliver(runner, smtp_server)] == ["fine@example.com"]


@pytest.mark.settings(MAIL_EVENTS_SECRET=WEBHOOK_SECRET)
def test_clearing_a_bounce_needs_the_reader_signed_in_and_a_csrf_token(app, reader, client):
    reader.sign_in("bounce@example.com")
    post_events(app.test_client(), BOUNCE)
    assert app.test_client().post("/account/mail-problem/clear").status_code != 303
    assert client.post("/account/mail-problem/clear").status_code == 400
    assert suppressed() == ["bounce@example.com"]


# --- The staff preview ----------------------------------------------------------------------

PREVIEW = f"/newsletter/daily/preview?date={DAY.isoformat()}"


@pytest.mark.settings(NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY)
def test_the_preview_with_the_key_shows_the_edition_of_that_day(client):
    publish()
    response = client.get(PREVIEW, headers={"X-API-Key": PREVIEW_KEY})
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    positions = [page.index(html.escape(title, quote=False)) for title in DAY_TITLES]
    assert positions == sorted(positions)
    for title in NOT_THAT_DAY:
        assert html.escape(title, quote=False) not in page
    assert '<html lang="fr">' in page and "@@" not in page
    english = client.get(PREVIEW + "&lang=en", headers={"X-API-Key": PREVIEW_KEY})
    assert '<html lang="en">' in english.get_data(as_text=True)


@pytest.mark.settings(NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY)
@pytest.mark.parametrize("key", [None, "", "wrong", PREVIEW_KEY[:-1], PREVIEW_KEY + " ", "clé"])
def test_the_preview_is_refused_without_the_right_key(client, key):
    publish()
    headers = {} if key is None else {"X-API-Key": key}
    response = client.get(PREVIEW, headers=headers)
    assert response.status_code == 403
    assert "Minuit" not in response.get_data(as_text=True)


@pytest.mark.settings(NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY)
def test_a_non_ascii_key_header_is_refused_not_a_crash(client):
    publish()
    for value in ("clé-ünïcode", "ключ", "\u00ff" * 40):
        response = client.get(PREVIEW, environ_overrides={"HTTP_X_API_KEY": value})
        assert response.status_code == 403, value


def test_the_preview_is_refused_when_no_key_is_configured(client):
    for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "None"}):
        assert client.get(PREVIEW, headers=headers).status_code == 403


def test_a_staff_reader_signed_in_sees_the_preview_and_others_do_not(reader, client):
    publish()
    reader.sign_in("newsroom@example.com")
    assert client.get(PREVIEW).status_code == 403
    reader_named("newsroom@example.com").is_staff = True
    db.session.commit()

    response = client.get(PREVIEW)

    assert response.status_code == 200
    assert "Le train de nuit revient" in response.get_data(as_text=True)


@pytest.mark.settings(NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY)
@pytest.mark.parametrize("day", ["2025-02-30", "10/03/2025", "demain", "2025-13-01", "é"])
def test_a_bad_preview_date_is_a_400(client, day):
    response = client.get(
        f"/newsletter/daily/preview?date={day}", headers={"X-API-Key": PREVIEW_KEY}
    )
    assert response.status_code == 400
    assert "2026-11-28" in response.get_data(as_text=True)  # the expected format, shown


@pytest.mark.settings(NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY)
def test_the_preview_of_an_unknown_newsletter_is_a_404(client):
    response = client.get("/newsletter/weekly/preview", headers={"X-API-Key": PREVIEW_KEY})
    assert response.status_code == 404
