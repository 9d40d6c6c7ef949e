"""Sessions live on the server: each can be ended on its own, copies included.

A session cookie copied off a reader's machine used to stay valid for 30 days whatever
the reader did short of "sign out everywhere". Each sign-in now opens a row of
``reader_sessions``; the cookie carries its key, and signing out deletes the row.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest
from support.articles import GATED_SENTENCE
from support.web import Visitor, csrf_token, forms_of, post_form, session_cookie, statements

from auth_service.extensions import db
from auth_service.models import ReaderSession, utcnow

ADDRESS = "reader@example.com"


@pytest.fixture
def browser(app):
    """A second browser: its own cookies."""
    return app.test_client()


def sign_in(app, browser, email: str = ADDRESS, ua: str = "Mozilla/5.0 (X11; Linux) Firefox/130"):
    """Sign ``browser`` in by the link of a fresh mail."""
    browser.environ_base["HTTP_USER_AGENT"] = ua
    assert Visitor(app, browser).sign_in(email).status_code == 303


def is_signed_in(browser) -> bool:
    """Whether the account page opens for ``browser``."""
    return browser.get("/account").status_code == 200


def copy_of(app, browser):
    """A thief's browser holding a copy of ``browser``'s session cookie."""
    thief = app.test_client()
    name = app.config["SESSION_COOKIE_NAME"]
    thief.set_cookie(name, browser.get_cookie(name).value)
    return thief


def device_forms(page: str) -> list[str]:
    """The actions of the "sign out" buttons of the devices list."""
    return re.findall(r'action="(/account/devices/[0-9a-f]{64}/sign-out)"', page)


def test_signing_out_ends_a_copied_session_cookie(app, client):
    """Defence: sign-out deletes the server-side session, so a copy of the cookie made
    before is signed out as well (it used to stay valid for 30 days)."""
    sign_in(app, client)
    thief = copy_of(app, client)
    assert is_signed_in(thief)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account")})
    assert not is_signed_in(client)
    assert not is_signed_in(thief)
    assert db.session.query(ReaderSession).count() == 0


def test_sign_out_everywhere_ends_every_session_and_their_copies(app, client, browser):
    sign_in(app, client)
    sign_in(app, browser)
    thief = copy_of(app, browser)
    client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(client, "/account")})
    assert [is_signed_in(b) for b in (client, browser, thief)] == [False, False, False]


def test_the_account_page_lists_each_device_and_signs_one_out(app, client, browser):
    """The reader sees their signed-in browsers and ends one from another."""
    sign_in(app, client, ua="Mozilla/5.0 (Windows NT 10.0) Firefox/130")
    sign_in(app, browser, ua="Mozilla/5.0 (iPhone; CPU iPhone OS 17) Safari/604")
    page = client.get("/account", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Signed-in devices" in page
    assert "Firefox – Windows" in page and "Safari – iPhone" in page
    assert page.count("(this device)") == 1
    assert len(device_forms(page)) == 2
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    assert "(this device)" in next(row for row in rows if "Firefox – Windows" in row)
    phone_row = next(row for row in rows if "Safari – iPhone" in row)
    other = re.search(r'action="(/account/devices/[0-9a-f]{64}/sign-out)"', phone_row).group(1)
    response = client.post(other, data={"csrf_token": csrf_token(client, "/account")})
    assert response.status_code == 303 and response.location == "/account"
    assert is_signed_in(client)
    assert not is_signed_in(browser)


def test_signing_out_this_device_from_the_list_signs_this_browser_out(app, client):
    sign_in(app, client)
    [action] = device_forms(client.get("/account").get_data(as_text=True))
    response = client.post(action, data={"csrf_token": csrf_token(client, "/account")})
    assert response.status_code == 303 and response.location == "/"
    assert not is_signed_in(client)


def test_another_readers_device_cannot_be_signed_out(app, client, browser):
    """Defence: a device id belongs to its reader; another reader's is "not found"."""
    sign_in(app, client, "first@example.com")
    sign_in(app, browser, "second@example.com")
    [theirs] = device_forms(browser.get("/account").get_data(as_text=True))
    response = client.post(theirs, data={"csrf_token": csrf_token(client, "/account")})
    assert response.status_code == 404
    assert is_signed_in(browser)


@pytest.mark.parametrize(
    "device",
    ["99999999999999999999999", str(2**31), "0" * 64, "F" * 64, "x" * 500, "%00"],
    ids=["huge-number", "past-int32", "no-such-hash", "capitals", "long", "nul"],
)
def test_a_device_that_is_not_one_of_the_readers_is_not_found(app, client, device):
    """Whatever is put where the device goes, the answer is a calm 4xx, never a 5xx,
    and the reader's own session stays."""
    sign_in(app, client)
    response = client.post(
        f"/account/devices/{device}/sign-out", data={"csrf_token": csrf_token(client, "/account")}
    )
    assert response.status_code in (400, 404)
    assert is_signed_in(client)


def test_signing_in_again_in_a_signed_in_browser_ends_its_earlier_session(app, client, browser):
    """A browser that signs in again (the same reader, or another) leaves no earlier
    session behind that a copy of its old cookie could still use."""
    sign_in(app, client, "first@example.com")
    old_copy = copy_of(app, client)
    reader = Visitor(app, browser)
    reader.ask_for_link("second@example.com")
    confirm = client.get(f"/login/verify?token={reader.last_mail().token}")
    token = re.search(r'name="token" value="([^"]+)"', confirm.get_data(as_text=True)).group(1)
    response = client.post(
        "/login/verify",
        data={"token": token, "csrf_token": csrf_token(client, f"/login/verify?token={token}")},
    )
    assert response.status_code == 303
    assert not is_signed_in(old_copy)
    assert db.session.query(ReaderSession).count() == 1


def test_expired_sessions_are_deleted_when_anyone_signs_in(app, client, browser):
    sign_in(app, client, "first@example.com")
    db.session.query(ReaderSession).update(
        {ReaderSession.created_at: utcnow() - app.config["PERMANENT_SESSION_LIFETIME"]}
    )
    db.session.commit()
    sign_in(app, browser, "second@example.com")
    assert db.session.query(ReaderSession).count() == 1


def test_a_signed_in_page_costs_one_query_for_the_reader(app, client):
    """The session lookup replaces the reader lookup: one statement, the session joined
    to its reader, and nothing written while the reader reads."""
    sign_in(app, client)
    signed_out = app.test_client()
    with statements() as anonymous:
        signed_out.get("/")
    with statements() as signed_in:
        client.get("/")
    extra = [s for s in signed_in if s not in anonymous]
    assert len(signed_in) == len(anonymous) + 1, extra
    [lookup] = extra
    assert "reader_sessions" in lookup and "JOIN" in lookup.upper()
    assert not any(s.lstrip().upper().startswith(("UPDATE", "INSERT")) for s in signed_in)


def test_the_export_lists_the_readers_sessions(app, client, browser):
    sign_in(app, client)
    sign_in(app, browser)
    data = json.loads(client.get("/account/export").get_data(as_text=True))
    assert len(data["sessions"]) == 2
    assert {"signed_in_at", "user_agent", "network"} <= set(data["sessions"][0])


# --- The session cookie ---


def test_sign_in_gives_the_browser_a_new_session_cookie(app, client):
    client.get("/login")  # the form puts its CSRF secret in the session
    before = session_cookie(client)
    assert before
    sign_in(app, client)
    assert session_cookie(client) not in (None, before)


def test_session_cookie_from_before_sign_in_opens_nothing(app, client, browser, articles):
    client.get("/login")
    captured = session_cookie(client)
    sign_in(app, client)
    browser.set_cookie("auth_session", captured)
    assert browser.get("/account").status_code in (302, 303)
    article = browser.get("/articles/train-de-nuit")
    assert article.status_code == 200 and forms_of(article, "/login")  # the wall
    assert GATED_SENTENCE not in article.get_data(as_text=True)


def test_session_cookie_is_httponly_lax_and_lasts_thirty_days(reader):
    reader.ask_for_link(ADDRESS)
    response = reader.client.get(f"/login/verify?token={reader.last_mail().token}")
    [cookie] = [
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("auth_session=")
    ]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1))
    assert abs(expires - utcnow() - timedelta(days=30)) < timedelta(minutes=5)


def test_reading_signed_in_sends_the_session_cookie_no_more(app, client, articles):
    """The cookie lasts thirty days from the sign-in, like the session's row: pages do
    not re-sign it, once it holds the CSRF secret the first page put there."""
    sign_in(app, client)
    first = client.get("/articles/train-de-nuit")
    assert GATED_SENTENCE in first.get_data(as_text=True)

    for path in ("/articles/train-de-nuit", "/", "/account"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers.getlist("Set-Cookie") == [], path


# --- Signing out ---


def test_sign_out_signs_out_this_browser_only(app, client, browser):
    sign_in(app, client)
    sign_in(app, browser)
    response = post_form(client, "/logout", {}, page="/account")
    assert response.status_code == 303
    assert response.location == "/"
    assert not is_signed_in(client)
    assert is_signed_in(browser)


def test_signed_out_reader_sees_the_wall_again(app, client, articles):
    sign_in(app, client)
    post_form(client, "/logout", {}, page="/account")
    page = client.get("/articles/train-de-nuit")
    assert GATED_SENTENCE.encode() not in page.data
    assert forms_of(page, "/login")
