"""The JSON side of social sign-in: the providers the wall lists and the start of a
round trip from the news site's page (docs/api.md), against the scripted provider."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from support.scripted_provider import provider
from support.web import is_signed_in, rows

from auth_service.models import NewsletterConsent, Reader

SITE = "http://www.news.test"
FROM_SITE = {"Origin": SITE}
ARTICLE = f"{SITE}/2026/train-de-nuit"

# The scripted provider's fixture, imported so that pytest finds it in this module.
__all__ = ["provider"]


@pytest.fixture
def settings(settings, provider):
    return {
        **settings,
        "ALLOWED_ORIGINS": [SITE],
        "OIDC_PROVIDERS": {"scripted": provider.settings(style="google", icon="/g.svg")},
    }


def start(client, body=None, **headers):
    return client.post(
        "/api/v1/login/with/scripted", json=body or {}, headers={**FROM_SITE, **headers}
    )


def test_the_wall_lists_the_providers_with_their_branding(client):
    answer = client.get("/api/v1/providers", headers=FROM_SITE)
    assert answer.json == {
        "providers": [
            {"name": "scripted", "label": "Scripted ID", "brand": "google", "icon": "/g.svg"}
        ]
    }


def test_a_round_trip_started_from_the_news_site_leads_back_to_its_article(app, client):
    answer = start(client, {"next": ARTICLE, "newsletters": ["daily"]})
    assert answer.status_code == 200
    at_provider = requests.get(answer.json["url"], allow_redirects=False, timeout=10)
    callback = urlsplit(at_provider.headers["Location"])
    back = client.get(f"{callback.path}?{callback.query}")
    assert back.status_code == 303 and back.location == ARTICLE
    assert is_signed_in(client)
    assert len(rows(Reader)) == 1
    (consent,) = rows(NewsletterConsent)
    assert consent.source == ARTICLE


def test_a_next_elsewhere_leads_back_to_the_front_page(app, client):
    url = start(client, {"next": "https://evil.example/phish"}).json["url"]
    at_provider = requests.get(url, allow_redirects=False, timeout=10)
    callback = urlsplit(at_provider.headers["Location"])
    assert client.get(f"{callback.path}?{callback.query}").location == "/"


def test_a_page_of_another_site_cannot_start_a_round_trip(client, provider):
    answer = start(client, {}, Origin="http://evil.test")
    assert answer.status_code == 403
    assert answer.json["error"]["code"] == "origin_not_allowed"
    assert provider.requests == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"next": 5}, "next"),
        ({"newsletters": ["weekly-spam"]}, "newsletters"),
        ({"next": "x" * 5000}, "next"),
    ],
)
def test_a_wrong_member_is_named(client, body, field):
    answer = start(client, body)
    assert answer.status_code == 422
    assert answer.json["error"]["field"] == field


def test_an_unknown_provider_is_not_found(client):
    answer = client.post("/api/v1/login/with/nobody", json={}, headers=FROM_SITE)
    assert answer.status_code == 404
    assert answer.json["error"]["code"] == "not_found"


def test_a_provider_down_is_a_503_with_a_message(client, provider):
    provider.stop()
    answer = start(client, {}, **{"Accept-Language": "en"})
    assert answer.status_code == 503
    assert answer.json["error"] == {
        "code": "provider_unavailable",
        "message": "Scripted ID is not answering",
    }


def test_the_state_went_into_the_session_cookie(client):
    url = start(client, {}).json["url"]
    state = parse_qs(urlsplit(url).query)["state"][0]
    with client.session_transaction() as session:
        assert any(state in key for key in session)
