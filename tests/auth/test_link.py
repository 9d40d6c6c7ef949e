"""GET, HEAD and POST /login/verify: same browser, other browser, used, expired, forged."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import update
from support.web import (
    ADDRESS,
    assert_calm_page,
    forms_of,
    in_english,
    is_signed_in,
    post_form,
    rows,
    text_of,
)

from auth_service.auth import signin
from auth_service.extensions import db
from auth_service.models import LoginAttempt, utcnow


def test_link_in_the_same_browser_signs_in_and_returns_to_next(reader, client):
    reader.ask_for_link(ADDRESS, next_url="/articles/x?y=1")
    response = client.get(f"/login/verify?token={reader.last_mail().token}")
    assert response.status_code == 303
    assert response.location == "/articles/x?y=1"
    assert is_signed_in(client)
    assert client.get_cookie("auth_attempts", path="/login") is None


def test_link_in_another_browser_shows_a_confirm_button(reader, browser):
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    response = browser.get(f"/login/verify?token={token}")
    assert_calm_page(response, 200)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    [form] = forms_of(response, "/login/verify")
    assert form.method == "post"
    assert form.field("token")["value"] == token
    assert form.field("csrf_token")["value"]
    assert not is_signed_in(browser)


def test_link_opened_elsewhere_first_still_works_in_the_asking_browser(reader, client, browser):
    reader.ask_for_link(ADDRESS, next_url="/articles/x")
    token = reader.last_mail().token
    for _ in range(3):  # a mail scanner, a preview, another device
        browser.get(f"/login/verify?token={token}")
    assert rows(LoginAttempt)[0].used_at is None
    assert client.get(f"/login/verify?token={token}").location == "/articles/x"
    assert is_signed_in(client)


def test_confirm_button_signs_in_the_other_browser(reader, browser):
    reader.ask_for_link(ADDRESS, next_url="/articles/x")
    confirm = browser.get(f"/login/verify?token={reader.last_mail().token}")
    [form] = forms_of(confirm, "/login/verify")
    data = {attrs["name"]: attrs["value"] for attrs in form.inputs if attrs.get("name")}
    response = browser.post("/login/verify", data=data)
    assert response.status_code == 303
    assert response.location == "/articles/x"
    assert is_signed_in(browser)


def test_head_of_the_link_changes_nothing_even_in_the_same_browser(reader, client):
    reader.ask_for_link(ADDRESS, next_url="/articles/x")
    token = reader.last_mail().token
    response = client.head(f"/login/verify?token={token}")
    assert response.status_code == 200
    assert rows(LoginAttempt)[0].used_at is None
    assert not is_signed_in(client)
    assert client.get(f"/login/verify?token={token}").location == "/articles/x"


def test_used_link_shows_a_new_link_offer(reader, client, browser):
    in_english(browser)
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    client.get(f"/login/verify?token={token}")
    response = browser.get(f"/login/verify?token={token}")
    assert_calm_page(response, 410)
    assert "This link has already been used" in text_of(response)
    [offer] = forms_of(response, "/login")
    assert offer.field("email")["value"] == ADDRESS
    assert response.headers["Cache-Control"] == "no-store"


def test_used_link_again_in_the_same_browser_says_used(reader, client):
    in_english(client)
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    client.get(f"/login/verify?token={token}")
    response = client.get(f"/login/verify?token={token}")
    assert_calm_page(response, 410)
    assert "This link has already been used" in text_of(response)


def test_confirming_a_used_link_says_used(reader, client, browser):
    in_english(browser)
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    confirm = browser.get(f"/login/verify?token={token}")
    client.get(f"/login/verify?token={token}")  # the asking browser wins the race
    csrf = forms_of(confirm, "/login/verify")[0].field("csrf_token")["value"]
    response = browser.post("/login/verify", data={"token": token, "csrf_token": csrf})
    assert_calm_page(response, 410)
    assert "This link has already been used" in text_of(response)
    assert not is_signed_in(browser)


def test_signing_in_voids_the_other_links_of_the_address(reader, client, browser):
    in_english(browser)
    reader.ask_for_link(ADDRESS)
    older = reader.last_mail()
    reader.ask_for_link(ADDRESS)
    client.get(f"/login/verify?token={reader.last_mail().token}")
    response = browser.get(f"/login/verify?token={older.token}")
    assert_calm_page(response, 410)
    assert "This link has already been used" in text_of(response)


def _expired_link(app) -> str:
    """A link whose attempt expired a minute ago."""
    issued = signin.issue(
        ADDRESS,
        next_url="/articles/x",
        now=utcnow() - timedelta(seconds=app.config["LOGIN_TOKEN_MAX_AGE"] + 60),
    )
    db.session.commit()
    return f"/login/verify?token={issued.token}"


def test_expired_link_says_expired_and_offers_a_new_one(app, browser):
    in_english(browser)
    response = browser.get(_expired_link(app))
    assert_calm_page(response, 410)
    assert "This link has expired" in text_of(response)
    [offer] = forms_of(response, "/login")
    assert offer.field("email")["value"] == ADDRESS


def test_confirming_an_expired_link_says_expired(app, browser):
    in_english(browser)
    token = _expired_link(app).split("token=")[1]
    response = post_form(browser, "/login/verify", {"token": token})
    assert_calm_page(response, 410)
    assert "This link has expired" in text_of(response)
    assert not is_signed_in(browser)


def test_expired_link_in_the_asking_browser_says_expired(reader, client):
    in_english(client)
    reader.ask_for_link(ADDRESS)
    db.session.execute(update(LoginAttempt).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = client.get(f"/login/verify?token={reader.last_mail().token}")
    assert_calm_page(response, 410)
    assert "This link has expired" in text_of(response)
    assert not is_signed_in(client)


@pytest.mark.settings(LOGIN_TOKEN_MAX_AGE=1)
def test_link_past_its_signed_age_says_expired(reader, browser):
    in_english(browser)
    reader.ask_for_link(ADDRESS)
    time.sleep(2.1)  # itsdangerous counts whole seconds
    response = browser.get(f"/login/verify?token={reader.last_mail().token}")
    assert_calm_page(response, 410)
    assert "This link has expired" in text_of(response)
    assert 'href="/login"' in response.get_data(as_text=True)  # a way to a new link


def _tampered(token: str) -> str:
    """``token`` with one character of its payload changed."""
    position = len(token.split(".")[0]) // 2
    swapped = "B" if token[position] != "B" else "C"
    return token[:position] + swapped + token[position + 1 :]


@pytest.mark.parametrize("same_browser", [True, False])
def test_tampered_link_says_invalid(reader, client, browser, same_browser):
    reader.ask_for_link(ADDRESS)
    opener = in_english(client if same_browser else browser)
    response = opener.get(f"/login/verify?token={_tampered(reader.last_mail().token)}")
    assert_calm_page(response, 400)
    assert "This link is not valid" in text_of(response)
    assert forms_of(response, "/login/verify") == []
    assert rows(LoginAttempt)[0].used_at is None
    assert not is_signed_in(opener)


def test_link_signed_with_another_key_says_invalid(reader, browser):
    reader.ask_for_link(ADDRESS)
    attempt = rows(LoginAttempt)[0]
    forged = URLSafeTimedSerializer("not-our-key-" * 4, salt=signin.LINK_SALT).dumps(
        {"a": attempt.id, "r": "guess"}
    )
    response = in_english(browser).get(f"/login/verify?token={forged}")
    assert_calm_page(response, 400)
    assert "This link is not valid" in text_of(response)


@pytest.mark.parametrize("query", ["", "?token=", "?token=abc", "?token=a.b.c"])
def test_link_without_a_real_token_says_invalid(client, query):
    response = in_english(client).get(f"/login/verify{query}")
    assert_calm_page(response, 400)
    assert "This link is not valid" in text_of(response)


def test_tampered_token_in_the_confirm_form_says_invalid(reader, browser):
    reader.ask_for_link(ADDRESS)
    response = post_form(
        in_english(browser), "/login/verify", {"token": _tampered(reader.last_mail().token)}
    )
    assert_calm_page(response, 400)
    assert "This link is not valid" in text_of(response)


def test_link_mailed_before_a_key_rotation_still_signs_in(app, reader, client):
    reader.ask_for_link(ADDRESS, next_url="/articles/x")
    old_key = app.config["SECRET_KEY"]
    app.config.update(
        SECRET_KEY="a-brand-new-secret-key-0123456789abcdef", SECRET_KEY_FALLBACKS=[old_key]
    )
    response = client.get(f"/login/verify?token={reader.last_mail().token}")
    assert response.status_code == 303
    assert response.location == "/articles/x"
    assert is_signed_in(client)


@pytest.mark.settings(PUBLIC_URL="https://news.test")
def test_confirm_button_works_over_https_where_the_page_sends_no_referer(app, reader):
    """The confirm page is ``no-referrer`` (its URL holds a token), so its button posts
    with no Referer; over https Flask-WTF's Referer check used to refuse it (400)."""
    other = app.test_client()
    secure = {"base_url": "https://news.test"}
    reader.ask_for_link(ADDRESS, next_url="/articles/x")
    confirm = other.get(f"/login/verify?token={reader.last_mail().token}", **secure)
    assert confirm.headers["Referrer-Policy"] == "no-referrer"
    [form] = forms_of(confirm, "/login/verify")
    data = {attrs["name"]: attrs["value"] for attrs in form.inputs if attrs.get("name")}
    response = other.post("/login/verify", data=data, **secure)
    assert response.status_code == 303
    assert response.location == "/articles/x"
