"""GET and POST /login: the form, the inline error, the redirect to "check your email"."""

from __future__ import annotations

import re

import pytest
from support.web import (
    ADDRESS,
    Visitor,
    assert_calm_page,
    forms_of,
    in_english,
    rows,
    sign_in,
    text_of,
)

from auth_service.models import LoginAttempt, NewsletterConsent, OutboxMessage, Reader


def test_login_form_has_email_newsletter_and_hidden_next(client):
    response = client.get("/login?next=/articles/x%3Fy%3D1")
    assert_calm_page(response, 200)
    [form] = forms_of(response, "/login")
    assert form.method == "post"
    assert form.field("email")["type"] == "email"
    assert form.field("newsletter")["type"] == "checkbox"
    assert "checked" not in form.field("newsletter")  # consent is never pre-ticked
    assert form.field("next") == {
        "tag": "input",
        "type": "hidden",
        "name": "next",
        "value": "/articles/x?y=1",
    }


def test_login_form_drops_a_next_that_leaves_the_site(client):
    [form] = forms_of(client.get("/login?next=https://evil.example/"), "/login")
    assert form.field("next")["value"] == "/"


def test_signed_in_reader_opening_the_form_goes_to_next(app, client):
    sign_in(app, client)
    response = client.get("/login?next=/account")
    assert response.status_code == 303
    assert response.location == "/account"


@pytest.mark.parametrize(
    "typed", ["jean", "jean@", "@example.com", "jean@example", "jean dupont@example.com", "", "   "]
)
def test_invalid_address_shows_the_format_hint_and_sends_nothing(reader, client, typed):
    response = reader.ask_for_link(typed)
    assert_calm_page(response, 422)
    error = re.search(r'id="email-error">(.*?)</p>', response.get_data(as_text=True))
    assert error and "example@domain.com" in error.group(1)
    assert rows(OutboxMessage) == []
    assert rows(LoginAttempt) == []
    assert client.get_cookie("auth_attempts", path="/login") is None


def test_invalid_address_keeps_what_was_typed_escaped(reader):
    typed = 'jean"><b>gras</b>@exemple'
    response = reader.ask_for_link(typed)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "<b>gras</b>" not in body
    assert forms_of(response, "/login")[0].field("email")["value"] == typed


def test_invalid_address_error_is_tied_to_the_field(reader):
    response = reader.ask_for_link("pas-une-adresse")
    email = forms_of(response, "/login")[0].field("email")
    assert email["aria-invalid"] == "true"
    described_by = email["aria-describedby"].split()
    assert "email-error" in described_by
    assert 'id="email-error"' in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("a" * 65 + "@example.com", "64"),
        ("a@" + "b" * 250 + ".com", "254"),
    ],
)
def test_too_long_address_says_the_limit(reader, client, typed, says):
    in_english(client)
    response = reader.ask_for_link(typed)
    assert response.status_code == 422
    assert f"at most {says} characters" in text_of(response)
    assert rows(OutboxMessage) == []


def test_valid_address_goes_to_check_your_email_with_one_mail(reader):
    response = reader.ask_for_link("Jean.Dupont@Example.COM", next_url="/articles/x")
    assert response.status_code == 303
    assert response.location == "/login/sent"
    [mail] = reader.outbox()
    assert mail.to == "jean.dupont@example.com"
    assert re.fullmatch(r"\d{6}", mail.code)


def test_attempt_cookie_is_httponly_lax_and_only_for_login_pages(reader):
    """The login pages and the API's sign-in (the wall embedded in the news site) read
    it; no other page is sent it."""
    response = reader.ask_for_link(ADDRESS)
    cookies = [
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("auth_attempts=")
    ]
    paths = []
    for cookie in cookies:
        attributes = {
            part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]
        }
        assert "httponly" in attributes
        assert attributes["samesite"].lower() == "samesite=lax"
        paths.append(attributes["path"])
    assert paths == ["Path=/login", "Path=/api/v1/login"]


def test_asking_for_a_link_creates_no_account(reader):
    reader.ask_for_link(ADDRESS, newsletter=True)
    assert rows(Reader) == []
    assert rows(NewsletterConsent) == []


def _without_secrets(page: str, *secrets: str) -> str:
    """A page or mail with its per-browser and per-attempt values blanked out."""
    page = re.sub(r'name="csrf_token" value="[^"]+"', "CSRF", page)
    for secret in secrets:
        page = page.replace(secret, "SECRET")
    return page


def test_pages_and_mail_do_not_tell_whether_an_account_exists(app, reader, browser):
    sign_in(app, browser, "known@example.com")
    pages, mails = [], []
    for address in ("known@example.com", "new@example.com"):
        someone = app.test_client()
        Visitor(app, someone).ask_for_link(address)
        pages.append(_without_secrets(someone.get("/login/sent").get_data(as_text=True), address))
        mail = reader.last_mail()
        mails.append(_without_secrets(mail.text, address, mail.link, mail.code))
        mails.append(mail.subject)
    assert pages[0] == pages[1]
    assert mails[:2] == mails[2:]
