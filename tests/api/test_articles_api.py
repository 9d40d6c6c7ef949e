"""GET /api/v1/articles/<slug>, the meter, CORS and the OpenAPI document (contract §7)."""

from __future__ import annotations

import pytest
from support.articles import ARTICLES, GATED_SENTENCE, OPENING, PUBLIC_SENTENCE
from support.web import Visitor, text_of

from auth_service.articles.store import import_articles
from auth_service.extensions import db

SITE = "http://www.news.test"
GATED, PUBLIC, LATER = "train-de-nuit", "rivieres", "a-venir"

pytestmark = pytest.mark.settings(ALLOWED_ORIGINS=[SITE])


def more_gated(count: int) -> list[str]:
    """``count`` more registered articles beside the test ones; their slugs."""
    extra = [{**ARTICLES[0], "slug": f"suite-{n}", "title": f"Suite {n}"} for n in range(count)]
    import_articles(extra)
    db.session.commit()
    return [item["slug"] for item in extra]


def article(client, slug: str, **headers):
    response = client.get(f"/api/v1/articles/{slug}", headers=headers)
    return response, response.get_json()


# --- The article as the wall shows it ---------------------------------------------------


def test_a_signed_out_reader_gets_the_opening_and_no_body(client, articles):
    response, body = article(client, GATED)
    assert response.status_code == 200
    assert body["entitled"] is False and body["signed_in"] is False and "body_html" not in body
    assert OPENING in body["opening_html"] and GATED_SENTENCE not in response.get_data(True)
    assert body["access"] == "registered"
    assert body["meter"] == {"free_articles": 0, "left": 0, "period_days": 30}
    assert "auth_meter" not in response.headers.get("Set-Cookie", "")


def test_a_signed_in_reader_gets_the_body_never_cached(app, client, articles):
    Visitor(app, client).sign_in()
    response, body = article(client, GATED)
    assert body["entitled"] is True and body["signed_in"] is True
    assert GATED_SENTENCE in body["body_html"]
    assert "no-store" in response.headers["Cache-Control"]


def test_a_public_article_gives_everyone_its_body(client, articles):
    _response, body = article(client, PUBLIC)
    assert body["entitled"] is True and PUBLIC_SENTENCE in body["body_html"]
    assert "<script" not in body["body_html"]


@pytest.mark.parametrize("slug", [LATER, "nothing-here", "a" * 300, "Ça-va", "..%2f..%2fetc"])
def test_an_unknown_or_unpublished_article_is_a_json_404(client, articles, slug):
    response, body = article(client, slug)
    assert response.status_code == 404
    assert body["error"]["code"] == "not_found"


# --- Metering ---------------------------------------------------------------------------


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], PAYWALL_FREE_ARTICLES=2)
def test_the_meter_opens_two_articles_then_the_wall(client, articles):
    first, second, third = more_gated(3)
    seen = []
    for slug in (first, second, third):
        _response, body = article(client, slug)
        seen.append((body["entitled"], body["meter"]["left"]))
    assert seen == [(True, 1), (True, 0), (False, 0)]


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], PAYWALL_FREE_ARTICLES=2)
def test_reading_an_article_again_costs_nothing(client, articles):
    [other] = more_gated(1)
    for _ in range(3):
        assert article(client, GATED)[1]["entitled"] is True
    assert article(client, GATED)[1]["meter"]["left"] == 1
    assert article(client, other)[1]["entitled"] is True
    assert article(client, GATED)[1]["entitled"] is True  # read before: still free


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], PAYWALL_FREE_ARTICLES=1)
def test_the_meter_cookie_is_signed_httponly_and_a_tampered_one_counts_nothing(client, articles):
    [other] = more_gated(1)
    response, _body = article(client, GATED)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("auth_meter="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=" in cookie
    assert article(client, other)[1]["entitled"] is False
    # A forged meter claiming nothing was read: refused, read as a fresh meter.
    value = client.get_cookie("auth_meter").value
    client.set_cookie("auth_meter", value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB"))
    response, body = article(client, other)
    assert response.status_code == 200 and body["meter"]["left"] == 0


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], PAYWALL_FREE_ARTICLES=1)
def test_public_articles_and_signed_in_readers_spend_no_meter(app, client, articles):
    article(client, PUBLIC)
    assert article(client, PUBLIC)[1]["meter"]["left"] == 1
    Visitor(app, client).sign_in()
    article(client, GATED)
    client.post("/logout", data={"csrf_token": ""})  # CSRF-refused: still signed in
    assert article(client, GATED)[1]["meter"]["left"] == 1


def test_with_no_free_articles_no_meter_cookie_is_ever_set(client, articles):
    for slug in (GATED, PUBLIC):
        response, _body = article(client, slug)
        assert not any(c.startswith("auth_meter=") for c in response.headers.getlist("Set-Cookie"))


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], PAYWALL_FREE_ARTICLES=2)
def test_the_article_page_and_the_api_spend_one_meter(client, articles):
    page = client.get(f"/articles/{GATED}")
    assert GATED_SENTENCE in text_of(page)
    assert article(client, GATED)[1]["meter"]["left"] == 1  # the same article: once


@pytest.mark.settings(PAYWALL_FREE_ARTICLES=1)
def test_the_article_page_says_how_many_free_articles_are_left(client, articles):
    [other] = more_gated(1)
    client.set_cookie("lang", "en")
    metered = text_of(client.get(f"/articles/{GATED}"))
    assert GATED_SENTENCE in metered
    assert "This was your last free article" in metered
    walled = text_of(client.get(f"/articles/{other}"))
    assert "You have read your free article for now" in walled


# --- Search engines -----------------------------------------------------------------------


def test_a_gated_page_tells_search_engines_which_part_is_for_registered_readers(client, articles):
    page = client.get(f"/articles/{GATED}").get_data(as_text=True)
    assert '"isAccessibleForFree": false' in page
    assert '"cssSelector": ".paywalled"' in page
    assert 'class="paywalled' in page or "paywalled" in page.split("<article", 1)[1]


def test_a_public_page_claims_no_paywall(client, articles):
    page = client.get(f"/articles/{PUBLIC}").get_data(as_text=True)
    assert "isAccessibleForFree" not in page


# --- CORS -----------------------------------------------------------------------------------


def test_an_allowed_origin_gets_cors_with_credentials(client, articles):
    response, _body = article(client, GATED, Origin=SITE)
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize("origin", ["http://evil.test", "null", "http://news.test.evil", ""])
def test_no_other_origin_gets_an_allow_origin(client, articles, origin):
    response, _body = article(client, GATED, Origin=origin)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]


def test_a_preflight_from_an_allowed_origin_allows_json_posts(client):
    response = client.options(
        "/api/v1/login",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"].lower() == "content-type"


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], PAYWALL_FREE_ARTICLES=1)
def test_a_head_request_spends_no_free_article(client, articles):
    """A HEAD shows nothing (a cross-site navigation could send one): it counts nothing."""
    [other] = more_gated(1)
    for _ in range(3):
        assert client.head(f"/api/v1/articles/{other}").status_code == 200
        assert client.head(f"/articles/{other}").status_code == 200
    _response, body = article(client, GATED)
    assert body["entitled"] is True and body["meter"]["left"] == 0


def test_a_meter_of_zero_days_with_free_articles_is_refused_at_start():
    from auth_service import create_app
    from auth_service.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="PAYWALL_METER_DAYS"):
        create_app({"SECRET_KEY": "k" * 40, "PAYWALL_FREE_ARTICLES": 3, "PAYWALL_METER_DAYS": 0})
