"""GET /login/sent: the exact address, the code form, "send again"."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import update
from support.web import ADDRESS, assert_calm_page, forms_of, is_signed_in

from auth_service.extensions import db
from auth_service.models import LoginAttempt, utcnow


def test_check_your_email_names_the_exact_address(reader, client):
    reader.ask_for_link("Élodie.Martin@Exemple.fr")
    response = client.get("/login/sent")
    assert_calm_page(response, 200)
    named = re.search(r'<strong class="address">(.*?)</strong>', response.get_data(as_text=True))
    assert named and named.group(1) == "élodie.martin@exemple.fr"
    assert response.headers["Cache-Control"] == "no-store"


def test_check_your_email_has_the_code_form_and_send_again(reader, client):
    reader.ask_for_link(ADDRESS, next_url="/articles/x", newsletter=True)
    response = client.get("/login/sent")
    [code_form] = forms_of(response, "/login/code")
    assert code_form.method == "post"
    assert code_form.field("code")["type"] == "text"
    assert code_form.field("csrf_token")["value"]
    [send_again] = forms_of(response, "/login")
    assert send_again.method == "post"
    assert send_again.field("email")["value"] == ADDRESS
    assert send_again.field("next")["value"] == "/articles/x"
    assert send_again.field("newsletter")["value"] == "y"


def test_check_your_email_without_a_request_goes_to_the_form(client):
    response = client.get("/login/sent")
    assert response.status_code in (302, 303)
    assert urlsplit(response.location).path == "/login"


def test_check_your_email_in_another_browser_goes_to_the_form(reader, browser):
    reader.ask_for_link(ADDRESS)
    response = browser.get("/login/sent")
    assert response.status_code in (302, 303)
    assert urlsplit(response.location).path == "/login"


def _send_again(browser):
    """Press "send again" on the check-your-email page."""
    page = browser.get("/login/sent")
    [form] = forms_of(page, "/login")
    data = {attrs["name"]: attrs.get("value", "") for attrs in form.inputs if attrs.get("name")}
    return browser.post("/login", data=data)


def test_send_again_sends_a_second_mail_and_keeps_the_first_link(reader, client, browser):
    reader.ask_for_link(ADDRESS, next_url="/articles/x")
    first = reader.last_mail()
    response = _send_again(client)
    assert response.status_code == 303 and response.location == "/login/sent"
    second = reader.last_mail()
    assert len(reader.outbox()) == 2 and second.token != first.token
    for mail in (first, second):  # both still open: another browser gets the button
        assert browser.get(f"/login/verify?token={mail.token}").status_code == 200
    arrived = client.get(f"/login/verify?token={first.token}")
    assert arrived.status_code == 303 and arrived.location == "/articles/x"
    assert is_signed_in(client)


def test_the_latest_link_works_after_send_again(reader, client):
    reader.ask_for_link(ADDRESS)
    _send_again(client)
    arrived = client.get(f"/login/verify?token={reader.last_mail().token}")
    assert arrived.status_code == 303
    assert is_signed_in(client)


def test_check_your_email_after_the_link_expired_goes_to_the_form(reader, client):
    reader.ask_for_link(ADDRESS)
    db.session.execute(update(LoginAttempt).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = client.get("/login/sent")
    assert response.status_code in (302, 303)
    assert urlsplit(response.location).path == "/login"
