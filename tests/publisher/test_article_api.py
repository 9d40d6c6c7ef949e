"""The publisher's CMS pushes articles with an API key (contract §9):
PUT/DELETE /api/v1/articles/<slug>, and the api-keys commands."""

from __future__ import annotations

import pytest
from support.articles import ARTICLE
from support.web import rows, sign_in

from auth_service.models import ApiKey, Article, ArticleChange

SLUG = ARTICLE["slug"]


@pytest.fixture
def key(runner) -> str:
    """A live key made with the CLI, as a publisher would."""
    result = runner.invoke(args=["api-keys", "create", "cms"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[0]


def put(client, slug: str, body, key: str | None, **headers):
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return client.put(f"/api/v1/articles/{slug}", json=body, headers=headers)


def delete(client, slug: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return client.delete(f"/api/v1/articles/{slug}", headers=headers)


def test_a_key_is_shown_once_and_kept_as_a_hash(key, runner):
    assert key.startswith("pk_") and len(key) > 40
    [row] = rows(ApiKey)
    assert key not in row.key_hash and len(row.key_hash) == 64
    listing = runner.invoke(args=["api-keys", "list"]).output
    assert "cms" in listing and "live" in listing and key not in listing
    again = runner.invoke(args=["api-keys", "create", "cms"])
    assert again.exit_code != 0 and "exists already" in again.output


def test_put_creates_then_replaces_the_article_and_records_each_change(client, key):
    created = put(client, SLUG, ARTICLE, key)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["slug"] == SLUG
    replaced = put(client, SLUG, {**ARTICLE, "title": "Un autre titre"}, key)
    assert replaced.status_code == 200
    [article] = rows(Article)
    assert article.title == "Un autre titre"
    changes = [(c.slug, c.action) for c in rows(ArticleChange)]
    assert changes == [(SLUG, "created"), (SLUG, "updated")]
    assert {c.api_key_id for c in rows(ArticleChange)} == {rows(ApiKey)[0].id}


def test_a_script_in_body_html_never_reaches_a_page(client, key):
    hostile = {
        **ARTICLE,
        "body_html": '<p>Un.</p><script>alert(1)</script><p onclick="x()">Deux '
        '<a href="javascript:alert(1)">lien</a><img src=x onerror=alert(1)></p>',
        "access": "public",
    }
    assert put(client, SLUG, hostile, key).status_code == 201
    page = client.get(f"/articles/{SLUG}").get_data(as_text=True)
    body = page.split('class="article__body', 1)[1]
    assert "<script>alert" not in body and "onclick" not in body and "onerror" not in body
    assert "javascript:" not in body
    api_body = client.get(f"/api/v1/articles/{SLUG}").get_json()["body_html"]
    assert "<script" not in api_body and "javascript:" not in api_body


def test_delete_removes_the_article_and_records_it(client, key):
    put(client, SLUG, ARTICLE, key)
    assert delete(client, SLUG, key).status_code == 204
    assert rows(Article) == []
    assert [c.action for c in rows(ArticleChange)] == ["created", "deleted"]
    gone = delete(client, SLUG, key)
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer pk_wrong", "Basic cGs6eA==", "Bearer " + "a" * 500],
)
def test_a_missing_or_wrong_key_is_a_401_and_changes_nothing(client, key, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.put(f"/api/v1/articles/{SLUG}", json=ARTICLE, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_api_key"
    assert rows(Article) == [] and rows(ArticleChange) == []


def test_a_revoked_key_opens_nothing(client, key, runner):
    put(client, SLUG, ARTICLE, key)
    assert runner.invoke(args=["api-keys", "revoke", "cms"]).exit_code == 0
    assert put(client, SLUG, {**ARTICLE, "title": "Changé"}, key).status_code == 401
    assert delete(client, SLUG, key).status_code == 401
    assert rows(Article)[0].title == ARTICLE["title"]
    assert "revoked" in runner.invoke(args=["api-keys", "list"]).output


def test_a_signed_in_reader_s_cookies_open_nothing(app, client, key):
    sign_in(app, client, "lea@example.com")
    response = put(client, SLUG, ARTICLE, None, Origin="http://news.test")
    assert response.status_code == 401
    assert rows(Article) == []


@pytest.mark.parametrize(
    "body, says",
    [
        ({**ARTICLE, "title": ""}, "title"),
        ({**ARTICLE, "title": 3}, "title"),
        ({**ARTICLE, "access": "vip"}, "access"),
        ({**ARTICLE, "published_at": "hier"}, "published_at"),
        ({**ARTICLE, "published_at": "0001-01-01T00:00:00Z"}, "published_at"),
        ({**ARTICLE, "tags": "un"}, "tags"),
        ({**ARTICLE, "image": {"url": "javascript:alert(1)"}}, "image.url"),
        ({**ARTICLE, "slug": "un-autre"}, "slug"),
        ({**ARTICLE, "title": "x" * 600}, "title"),
    ],
)
def test_a_bad_article_is_a_422_saying_why_and_nothing_is_stored(client, key, body, says):
    response = put(client, SLUG, body, key)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_article" and (says in error["message"] or says == "slug")
    assert rows(Article) == [] and rows(ArticleChange) == []


@pytest.mark.parametrize("raw", [b"[]", b"null", b"{", b'"x"'])
def test_a_body_that_is_not_an_object_is_a_400(client, key, raw):
    response = client.put(
        f"/api/v1/articles/{SLUG}",
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400
    assert rows(Article) == []


def test_unstorable_text_and_a_bad_slug_are_refused(client, key):
    nul = put(client, SLUG, {**ARTICLE, "title": "a\x00b"}, key)
    assert nul.status_code == 400 and nul.get_json()["error"]["code"] == "unstorable_text"
    upper = put(client, "Pas-Un-Slug", ARTICLE, key)
    assert upper.status_code == 422
    assert rows(Article) == []


def test_no_browser_gets_cors_for_these_routes(client, key):
    preflight = client.options(
        f"/api/v1/articles/{SLUG}",
        headers={"Origin": "http://www.news.test", "Access-Control-Request-Method": "PUT"},
    )
    assert "PUT" not in preflight.headers.get("Access-Control-Allow-Methods", "")
    assert "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.settings(RATELIMIT_ENABLED=True, PUBLISHER_LIMIT_PER_KEY="2 per minute")
def test_each_key_has_its_own_rate_limit(client, key, runner):
    other = runner.invoke(args=["api-keys", "create", "other"]).stdout.strip().splitlines()[0]
    assert put(client, SLUG, ARTICLE, key).status_code == 201
    assert put(client, SLUG, ARTICLE, key).status_code == 200
    limited = put(client, SLUG, ARTICLE, key)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert put(client, "un-autre", {**ARTICLE, "slug": "un-autre"}, other).status_code == 201


@pytest.mark.parametrize("slug", ["un-article%0A", "%20un-article", "un-article%20"])
def test_a_slug_with_spaces_is_refused_not_stored_under_another_name(client, key, slug):
    response = put(client, slug, ARTICLE, key)
    assert response.status_code == 422
    assert rows(Article) == [] and rows(ArticleChange) == []


def test_a_long_article_fits(client, key):
    long_body = "<p>" + "Un long paragraphe, avec des accents : é è à ç. " * 5000 + "</p>"
    assert len(long_body) > 200_000
    response = put(client, SLUG, {**ARTICLE, "body_html": long_body}, key)
    assert response.status_code == 201
    assert len(rows(Article)[0].body_html) > 200_000


@pytest.mark.settings(RATELIMIT_ENABLED=True, PUBLISHER_LIMIT_PER_KEY="3 per minute")
def test_guessed_keys_are_limited_per_address_too(client, key):
    statuses = [put(client, SLUG, ARTICLE, f"pk_guess{number}").status_code for number in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
    assert put(client, SLUG, ARTICLE, key).status_code == 201  # the real key: its own
