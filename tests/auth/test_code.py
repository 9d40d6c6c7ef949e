"""POST /login/code: the right code signs in; wrong codes cost one of five tries."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
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

from auth_service.extensions import db
from auth_service.models import LoginAttempt, SignInEvent, utcnow


def _enter_code(browser, code):
    """Type ``code`` into the form of the check-your-email page."""
    return post_form(browser, "/login/code", {"code": code})


def test_right_code_signs_in_and_returns_to_next(reader, client):
    reader.ask_for_link(ADDRESS, next_url="/articles/x")
    response = _enter_code(client, reader.last_mail().code)
    assert response.status_code == 303
    assert response.location == "/articles/x"
    assert is_signed_in(client)
    assert [event.method for event in rows(SignInEvent)] == ["code"]


def test_code_typed_with_spaces_still_signs_in(reader, client):
    reader.ask_for_link(ADDRESS)
    code = reader.last_mail().code
    response = _enter_code(client, f" {code[:3]} {code[3:]} ")
    assert response.status_code == 303
    assert is_signed_in(client)


def _wrong(code: str) -> str:
    """A six-digit code that is not ``code``."""
    return f"{(int(code) + 1) % 10**6:06d}"


def test_wrong_code_says_so_and_how_many_tries_are_left(reader, client):
    in_english(client)
    reader.ask_for_link(ADDRESS)
    response = _enter_code(client, _wrong(reader.last_mail().code))
    assert_calm_page(response, 422)
    page = text_of(response)
    assert "This code is not the one in the email." in page
    assert "You can try 4 more times." in page
    assert ADDRESS in page  # the page still names the address, never a blank
    assert forms_of(response, "/login/code")[0].field("code")["aria-invalid"] == "true"
    assert not is_signed_in(client)


def test_code_that_is_not_six_digits_shows_an_example(reader, client):
    in_english(client)
    reader.ask_for_link(ADDRESS)
    response = _enter_code(client, "abc")
    assert response.status_code == 422
    assert "The code is the 6 digits in the email, for example 123456." in text_of(response)


def test_five_wrong_codes_kill_the_attempt_and_its_link(reader, client):
    in_english(client)
    reader.ask_for_link(ADDRESS)
    mail = reader.last_mail()
    statuses = [_enter_code(client, _wrong(mail.code)).status_code for _ in range(5)]
    assert statuses == [422, 422, 422, 422, 410]
    assert _enter_code(client, mail.code).status_code in (400, 410)
    link = client.get(f"/login/verify?token={mail.token}")
    assert_calm_page(link, 410)
    assert "Too many wrong codes" in text_of(link)
    assert not is_signed_in(client)


def test_last_try_says_one_more_time_and_the_right_code_still_works(reader, client):
    in_english(client)
    reader.ask_for_link(ADDRESS)
    mail = reader.last_mail()
    for _ in range(3):
        _enter_code(client, _wrong(mail.code))
    assert "You can try one more time." in text_of(_enter_code(client, _wrong(mail.code)))
    assert _enter_code(client, mail.code).status_code == 303
    assert is_signed_in(client)


def test_code_in_a_browser_that_did_not_ask_is_refused(reader, browser):
    reader.ask_for_link(ADDRESS)
    response = post_form(browser, "/login/code", {"code": reader.last_mail().code})
    assert_calm_page(response, 400)
    assert not is_signed_in(browser)


def test_code_of_an_expired_attempt_says_expired(reader, client):
    in_english(client)
    reader.ask_for_link(ADDRESS)
    db.session.execute(update(LoginAttempt).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = _enter_code(client, reader.last_mail().code)
    assert_calm_page(response, 410)
    assert "This link has expired" in text_of(response)


@pytest.mark.settings(LOGIN_TOKEN_MAX_AGE=1)
def test_code_entered_after_the_link_ran_out_says_expired_not_invalid(reader, client):
    in_english(client)
    reader.ask_for_link(ADDRESS)
    time.sleep(2.1)  # past the attempt's life; the browser's attempt cookie outlives it
    response = _enter_code(client, reader.last_mail().code)
    assert_calm_page(response, 410)
    assert "This link has expired" in text_of(response)
