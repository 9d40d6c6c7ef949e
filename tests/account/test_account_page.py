"""GET /account and its three actions: sign out everywhere, export, delete."""

from __future__ import annotations

import json
import re
from html import unescape
from urllib.parse import urlsplit

import pytest
from support.web import (
    ADDRESS,
    Visitor,
    assert_calm_page,
    forms_of,
    in_english,
    is_signed_in,
    post_form,
    query_of,
    rows,
    session_cookie,
    sign_in,
    text_of,
)

from auth_service.models import LoginAttempt, NewsletterConsent, Reader, SignInEvent


@pytest.mark.parametrize("path", ["/account", "/account/export"])
def test_account_pages_ask_a_signed_out_reader_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code in (302, 303)
    assert urlsplit(response.location).path == "/login"
    assert query_of(response.location) == {"next": [path]}


def test_sign_in_from_the_account_redirect_returns_to_the_account(app, client):
    form_page = client.get(client.get("/account").location)
    next_url = forms_of(form_page, "/login")[0].field("next")["value"]
    assert next_url == "/account"
    assert sign_in(app, client, next_url=next_url).location == "/account"


def test_account_shows_address_newsletters_and_recent_sign_ins(app, client):
    in_english(client)
    sign_in(app, client, newsletter=True)
    response = client.get("/account")
    assert_calm_page(response, 200)
    page = text_of(response)
    assert ADDRESS in page
    assert re.search(r'id="nl-daily"[^>]*checked', page)
    assert re.search(
        r"<table class=\"sign-ins\">.*?<tbody>\s*<tr>", response.get_data(as_text=True), re.DOTALL
    )
    assert response.headers["Cache-Control"] == "no-store"


def test_account_offers_the_three_actions(app, client):
    sign_in(app, client)
    response = client.get("/account")
    assert forms_of(response, "/account/sign-out-everywhere")[0].method == "post"
    [delete] = forms_of(response, "/account/delete")
    assert delete.method == "post" and delete.field("confirm") is not None
    assert 'href="/account/export"' in response.get_data(as_text=True)


def test_account_without_newsletter_shows_its_box_unticked(app, client):
    in_english(client)
    sign_in(app, client)
    page = text_of(client.get("/account"))
    assert "Today's front page" in page
    assert re.search(r'id="nl-daily"[^>]*>', page)
    assert not re.search(r'id="nl-daily"[^>]*checked', page)


def test_sign_out_everywhere_ends_every_session_of_the_reader(app, client, browser):
    sign_in(app, client)
    sign_in(app, browser)
    stranger = app.test_client()
    sign_in(app, stranger, "someone.else@example.com")
    response = post_form(client, "/account/sign-out-everywhere", {}, page="/account")
    assert response.status_code == 303
    assert not is_signed_in(client)
    assert not is_signed_in(browser)
    assert is_signed_in(stranger)


def test_session_cookie_from_before_sign_out_everywhere_opens_nothing(app, client, browser):
    sign_in(app, client)
    captured = session_cookie(client)
    post_form(client, "/account/sign-out-everywhere", {}, page="/account")
    browser.set_cookie("auth_session", captured)
    assert not is_signed_in(browser)
    assert sign_in(app, client).status_code == 303  # a new sign-in works again
    assert is_signed_in(client)


def test_export_is_a_json_download_of_the_readers_data(app, client):
    label = re.search(
        r'<label for="newsletter">(.*?)</label>',  # as the reader saw it
        client.get("/login").get_data(as_text=True),
        re.DOTALL,
    ).group(1)
    sign_in(app, client, newsletter=True)
    response = client.get("/account/export")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert ".json" in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert data["email"] == ADDRESS
    [consent] = data["newsletter_consents"]
    assert consent["newsletter"] == "daily" and consent["wording"] == unescape(label)
    assert [event["method"] for event in data["sign_ins"]] == ["link"]


def test_export_holds_only_this_readers_data(app, client, browser):
    sign_in(app, client)
    sign_in(app, browser, "someone.else@example.com", newsletter=True)
    body = client.get("/account/export").get_data(as_text=True)
    assert "someone.else" not in body
    assert json.loads(body)["newsletter_consents"] == []


def test_delete_with_the_wrong_address_deletes_nothing(app, client):
    in_english(client)
    sign_in(app, client, newsletter=True)
    response = post_form(
        client, "/account/delete", {"confirm": "other@example.com"}, page="/account"
    )
    assert_calm_page(response, 422)
    assert "Type your email address exactly as shown above" in text_of(response)
    assert forms_of(response, "/account/delete")[0].field("confirm")["aria-invalid"] == "true"
    assert len(rows(Reader)) == 1 and len(rows(NewsletterConsent)) == 1
    assert is_signed_in(client)


@pytest.mark.parametrize("typed", ["", "reader", "reader@example.co"])
def test_delete_without_the_exact_address_deletes_nothing(app, client, typed):
    sign_in(app, client)
    response = post_form(client, "/account/delete", {"confirm": typed}, page="/account")
    assert response.status_code == 422
    assert len(rows(Reader)) == 1


def test_delete_removes_the_account_its_data_and_every_session(app, client, browser):
    sign_in(app, client, newsletter=True)
    sign_in(app, browser)
    Visitor(app, app.test_client()).ask_for_link(ADDRESS)  # a link still waiting
    response = post_form(
        client, "/account/delete", {"confirm": "  Reader@EXAMPLE.com "}, page="/account"
    )
    assert response.status_code == 303
    assert response.location == "/"
    assert rows(Reader) == []
    assert rows(NewsletterConsent) == [] and rows(SignInEvent) == []
    assert rows(LoginAttempt, LoginAttempt.email == ADDRESS) == []
    assert not is_signed_in(client)
    assert not is_signed_in(browser)


def test_delete_leaves_other_readers_alone(app, client, browser):
    sign_in(app, client)
    sign_in(app, browser, "someone.else@example.com", newsletter=True)
    post_form(client, "/account/delete", {"confirm": ADDRESS}, page="/account")
    [left] = rows(Reader)
    assert left.email == "someone.else@example.com"
    assert len(rows(NewsletterConsent)) == 1
    assert is_signed_in(browser)


def test_signing_in_after_delete_creates_a_fresh_account(app, client):
    sign_in(app, client, newsletter=True)
    [before] = rows(Reader)
    created, public_id = before.created_at, before.public_id
    post_form(client, "/account/delete", {"confirm": ADDRESS}, page="/account")
    assert sign_in(app, client).status_code == 303
    [after] = rows(Reader)
    assert after.created_at > created and after.public_id != public_id
    assert rows(NewsletterConsent) == []
    assert len(rows(SignInEvent)) == 1
