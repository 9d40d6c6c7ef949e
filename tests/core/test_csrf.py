"""Every POST without its ``csrf_token`` gets a clear 400 page and changes nothing."""

from __future__ import annotations

import pytest
from support.web import (
    ADDRESS,
    assert_calm_page,
    csrf_token,
    in_english,
    is_signed_in,
    rows,
    sign_in,
    text_of,
)

from auth_service.models import LoginAttempt, OutboxMessage, Reader


def assert_refused_form(response) -> None:
    """The page of a form sent without a valid CSRF token."""
    assert_calm_page(response, 400)
    assert "This form has expired" in text_of(response)


@pytest.mark.parametrize("token", [None, "", "forged-token", "a.b.c"])
def test_login_without_a_valid_form_token_sends_nothing(client, token):
    in_english(client).get("/login")
    data = {"email": ADDRESS} if token is None else {"email": ADDRESS, "csrf_token": token}
    assert_refused_form(client.post("/login", data=data))
    assert rows(OutboxMessage) == [] and rows(LoginAttempt) == []


def test_form_token_of_another_browser_is_refused(client, browser):
    token = csrf_token(browser)
    in_english(client).get("/login")
    assert_refused_form(client.post("/login", data={"email": ADDRESS, "csrf_token": token}))
    assert rows(OutboxMessage) == []


def test_code_without_form_token_signs_nothing_in(reader, client):
    reader.ask_for_link(ADDRESS)
    response = in_english(client).post("/login/code", data={"code": reader.last_mail().code})
    assert_refused_form(response)
    assert rows(LoginAttempt)[0].tries_left == 5
    assert rows(LoginAttempt)[0].used_at is None
    assert not is_signed_in(client)


def test_confirm_without_form_token_consumes_nothing(reader, browser):
    reader.ask_for_link(ADDRESS)
    response = in_english(browser).post("/login/verify", data={"token": reader.last_mail().token})
    assert_refused_form(response)
    assert rows(LoginAttempt)[0].used_at is None
    assert not is_signed_in(browser)


def test_logout_without_form_token_keeps_the_reader_signed_in(app, client):
    sign_in(app, client)
    assert_refused_form(in_english(client).post("/logout"))
    assert is_signed_in(client)


def test_sign_out_everywhere_without_form_token_ends_nothing(app, client, browser):
    sign_in(app, client)
    sign_in(app, browser)
    assert_refused_form(in_english(client).post("/account/sign-out-everywhere"))
    assert is_signed_in(client) and is_signed_in(browser)


def test_delete_without_form_token_deletes_nothing(app, client):
    sign_in(app, client)
    assert_refused_form(in_english(client).post("/account/delete", data={"confirm": ADDRESS}))
    assert len(rows(Reader)) == 1
    assert is_signed_in(client)
