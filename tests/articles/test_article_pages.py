"""GET / and GET /articles/<slug>: the list, the wall, the body only for the entitled."""

from __future__ import annotations

import time

import pytest
from support.articles import ARTICLES, GATED_SENTENCE, OPENING, PUBLIC_SENTENCE, STANDFIRST
from support.web import assert_calm_page, forms_of, in_english, sign_in, statements, text_of

from auth_service import create_app
from auth_service.articles.store import Shelf, delete, import_articles
from auth_service.cli import demo_articles
from auth_service.config import ConfigurationError
from auth_service.extensions import db
from auth_service.models import Article


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


# --- The shelf: an article read once serves a process's pages for a few seconds ------


def article_reads(app, client, path: str) -> int:
    """How many statements read the articles table while ``client`` GETs ``path``."""
    with statements() as sent:
        assert client.get(path).status_code == 200
    return sum("FROM articles" in statement for statement in sent)


def renamed(title: str) -> list[dict]:
    """The test's gated article with another title."""
    return [{**ARTICLES[0], "title": title}]


@pytest.mark.settings(ARTICLE_CACHE_SECONDS=600)  # no expiry on a slow machine
def test_an_article_page_asks_the_database_once_per_interval(app, client, articles):
    assert article_reads(app, client, "/articles/train-de-nuit") == 1
    assert article_reads(app, client, "/articles/train-de-nuit") == 0
    assert article_reads(app, client, "/api/v1/articles/train-de-nuit") == 0
    assert article_reads(app, client, "/articles/rivieres") == 1


@pytest.mark.settings(ARTICLE_CACHE_SECONDS=0)
def test_with_no_interval_every_page_asks_the_database(app, client, articles):
    assert article_reads(app, client, "/articles/train-de-nuit") == 1
    assert article_reads(app, client, "/articles/train-de-nuit") == 1


@pytest.mark.settings(ARTICLE_CACHE_SECONDS=600)
def test_a_shelved_article_still_shows_each_reader_only_what_they_may_read(app, client, articles):
    sign_in(app, client)
    assert GATED_SENTENCE in client.get("/articles/train-de-nuit").get_data(as_text=True)
    stranger = app.test_client()

    page = stranger.get("/articles/train-de-nuit")

    assert GATED_SENTENCE not in page.get_data(as_text=True)
    assert forms_of(page, "/login")  # the wall


@pytest.mark.settings(ARTICLE_CACHE_SECONDS=600)
def test_a_change_made_through_this_process_shows_at_once(app, client, articles):
    client.get("/articles/train-de-nuit")
    import_articles(renamed("Le train de nuit repart"))

    assert "Le train de nuit repart" in client.get("/articles/train-de-nuit").get_data(as_text=True)


def rename_elsewhere(app, title: str) -> None:
    """Rename the gated article through another process's app (its own shelf)."""
    elsewhere = create_app(dict(app.config))
    with elsewhere.app_context():
        import_articles(renamed(title))
        db.session.remove()
        db.engine.dispose()


@pytest.mark.settings(ARTICLE_CACHE_SECONDS=600)
def test_a_change_made_by_another_process_waits_for_the_interval(app, client, articles):
    assert "Le train de nuit revient" in text_of(client.get("/articles/train-de-nuit"))
    rename_elsewhere(app, "Le train de nuit repart")

    assert "Le train de nuit revient" in text_of(client.get("/articles/train-de-nuit"))


@pytest.mark.settings(ARTICLE_CACHE_SECONDS=1)
def test_a_change_made_by_another_process_shows_once_the_interval_is_over(app, client, articles):
    assert "Le train de nuit revient" in text_of(client.get("/articles/train-de-nuit"))
    rename_elsewhere(app, "Le train de nuit repart")
    time.sleep(1.1)

    assert "Le train de nuit repart" in text_of(client.get("/articles/train-de-nuit"))


@pytest.mark.settings(ARTICLE_CACHE_SECONDS=600)
def test_an_article_deleted_by_the_publisher_is_gone_at_once_from_this_process(
    app, client, articles
):
    client.get("/articles/train-de-nuit")
    assert delete("train-de-nuit")
    db.session.commit()

    assert_calm_page(client.get("/articles/train-de-nuit"), 404)


def test_the_shelf_keeps_the_newest_read_and_forgets_the_oldest():
    shelf = Shelf(seconds=5, size=2)
    first, second, third = Article(slug="a"), Article(slug="b"), Article(slug="c")
    shelf.put("a", first, now=0)
    shelf.put("b", second, now=0)
    assert shelf.get("a", now=1) is first  # read lately: kept over "b"
    shelf.put("c", third, now=1)

    assert shelf.get("b", now=1) is None
    assert shelf.get("a", now=1) is first and shelf.get("c", now=1) is third
    assert shelf.get("a", now=5) is None  # five seconds after it was shelved


@pytest.mark.parametrize("value", ["-1", "soon", "1.5"])
def test_the_interval_must_be_a_whole_number_of_seconds(value):
    with pytest.raises(ConfigurationError, match="ARTICLE_CACHE_SECONDS"):
        create_app({"SECRET_KEY": "x" * 32, "ARTICLE_CACHE_SECONDS": value})
