"""GET / and GET /articles/<slug>: the list, the wall, the body only for the entitled."""

from __future__ import annotations

from support.articles import GATED_SENTENCE, OPENING, PUBLIC_SENTENCE, STANDFIRST
from support.web import assert_calm_page, forms_of, in_english, sign_in, text_of

from auth_service.articles.store import import_articles
from auth_service.cli import demo_articles


def test_front_page_lists_published_articles_linking_to_their_pages(client, articles):
    response = client.get("/")
    assert_calm_page(response, 200)
    body = response.get_data(as_text=True)
    assert 'href="/articles/train-de-nuit"' in body
    assert 'href="/articles/rivieres"' in body
    assert "Le train de nuit revient" in body


def test_front_page_hides_articles_scheduled_for_later(client, articles):
    assert "/articles/a-venir" not in client.get("/").get_data(as_text=True)
    assert_calm_page(client.get("/articles/a-venir"), 404)


def test_front_page_lists_the_demo_articles(client, app):
    import_articles(demo_articles())
    body = client.get("/").get_data(as_text=True)
    for article in demo_articles():
        assert f'href="/articles/{article["slug"]}"' in body


def test_signed_out_reader_sees_only_the_opening_and_the_wall(client, articles):
    response = client.get("/articles/train-de-nuit")
    assert_calm_page(response, 200)
    assert GATED_SENTENCE.encode() not in response.data
    assert b"Dernier paragraphe" not in response.data
    assert OPENING in response.get_data(as_text=True)
    assert STANDFIRST in response.get_data(as_text=True)


def test_wall_form_posts_to_login_with_this_article_as_next(client, articles):
    response = client.get("/articles/train-de-nuit")
    [wall] = forms_of(response, "/login")
    assert wall.method == "post"
    assert wall.field("next")["type"] == "hidden"
    assert wall.field("next")["value"] == "/articles/train-de-nuit"
    assert wall.field("email")["type"] == "email"
    assert wall.field("newsletter")["type"] == "checkbox"
    assert wall.field("csrf_token")["value"]


def test_wall_invites_to_sign_up_with_terms_newsletter_and_a_line_for_members(client, articles):
    page = text_of(in_english(client).get("/articles/train-de-nuit"))
    assert "Sign up for free to keep reading" in page
    assert "terms of use" in page
    assert "daily front page newsletter" in page
    assert "Already have an account?" in page


def test_signed_in_reader_sees_the_whole_body_never_cached(app, client, articles):
    sign_in(app, client)
    response = client.get("/articles/train-de-nuit")
    assert_calm_page(response, 200)
    assert GATED_SENTENCE in response.get_data(as_text=True)
    assert forms_of(response, "/login") == []
    assert response.headers["Cache-Control"] == "no-store"


def test_signing_in_from_the_wall_returns_to_the_unlocked_article(app, client, articles):
    wall = forms_of(client.get("/articles/train-de-nuit"), "/login")[0]
    arrived = sign_in(app, client, next_url=wall.field("next")["value"])
    assert arrived.status_code == 303
    assert arrived.location == "/articles/train-de-nuit"
    assert GATED_SENTENCE in client.get(arrived.location).get_data(as_text=True)


def test_public_article_shows_the_whole_body_to_everyone(client, articles):
    response = client.get("/articles/rivieres")
    assert_calm_page(response, 200)
    assert PUBLIC_SENTENCE in response.get_data(as_text=True)
    assert forms_of(response, "/login") == []
    assert b"<script" not in response.data  # sanitised on import


def test_unknown_article_shows_a_not_found_page(client, articles):
    response = client.get("/articles/no-such-article")
    assert_calm_page(response, 404)
    assert "Page not found" in text_of(in_english(client).get("/articles/no-such-article"))
