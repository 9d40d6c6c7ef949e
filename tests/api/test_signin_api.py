"""POST /api/v1/login and /api/v1/login/code: the wall's sign-in as the news site's page
calls it (docs/contract.md §7), through the same rules as the HTML form."""

from __future__ import annotations

import re

import pytest
from support.web import Visitor, csrf_token, rows

from auth_service.models import LoginAttempt, OutboxMessage, Reader

SITE = "http://www.news.test"  # an allowed origin: the news site's pages
FROM_SITE = {"Origin": SITE}
ADDRESS = "lea@example.com"

pytestmark = pytest.mark.settings(ALLOWED_ORIGINS=[SITE])


def ask(client, body, **headers):
    """POST /api/v1/login as the news site's page does."""
    return client.post("/api/v1/login", json=body, headers={**FROM_SITE, **headers})


def enter(client, code: str, **headers):
    """POST /api/v1/login/code."""
    return client.post("/api/v1/login/code", json={"code": code}, headers={**FROM_SITE, **headers})


def error_of(response) -> dict:
    """The JSON error of a refused request, after checking its shape."""
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def queued() -> int:
    return len(rows(OutboxMessage))


# --- Asking for a link ----------------------------------------------------------------


def test_a_valid_address_gets_a_mail_a_202_and_the_attempt_cookie(app, client):
    response = ask(client, {"email": "  Lea@Example.COM ", "newsletters": ["daily"]})
    assert response.status_code == 202
    assert response.get_json() == {"sent_to": ADDRESS}
    assert response.headers["Cache-Control"].startswith("no-store")
    cookies = response.headers.getlist("Set-Cookie")
    assert any(c.startswith("auth_attempts=") and "HttpOnly" in c for c in cookies)
    [mail] = Visitor(app, client).outbox()
    assert mail.to == ADDRESS
    [attempt] = rows(LoginAttempt)
    assert attempt.newsletter is True


def test_the_answer_is_the_same_whether_the_address_has_an_account(app, client, browser):
    Visitor(app, browser).sign_in(ADDRESS)
    known = ask(app.test_client(), {"email": ADDRESS})
    unknown = ask(app.test_client(), {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.get_json()["sent_to"] == ADDRESS
    assert unknown.get_json() == {"sent_to": "nobody@example.com"}
    assert sorted(known.headers.keys()) == sorted(unknown.headers.keys())


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "   ",
        "lea",
        "lea@",
        "@example.com",
        "lea@@example.com",
        "lé a@example.com",
        "a" * 65 + "@example.com",
        "x@" + "d" * 250 + ".com",
        "lea@example.com\u202e",
    ],
)
def test_an_invalid_address_is_a_422_with_the_hint_and_sends_nothing(client, typed):
    response = ask(client, {"email": typed})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_email"
    assert error["hint"] == "example@domain.com"
    assert queued() == 0


def test_a_likely_typo_is_offered_a_correction_then_sent_as_typed_on_request(client):
    response = ask(client, {"email": "lea@yahou.fr"})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_email" and error["suggestion"] == "lea@yahoo.fr"
    assert queued() == 0
    assert ask(client, {"email": "lea@yahou.fr", "as_typed": True}).status_code == 202
    assert queued() == 1


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], BLOCKED_DOMAINS=["blocked.example"])
def test_a_refused_domain_says_why_and_sends_nothing(client):
    response = ask(client, {"email": "lea@blocked.example"}, **{"Accept-Language": "en"})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "address_refused"
    assert "cannot be used" in error["message"]
    assert queued() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"email": 3}, "email"),
        ({"email": ["lea@example.com"]}, "email"),
        ({"email": {"a": 1}}, "email"),
        ({"email": "a" * 100_00}, "email"),
        ({"email": ADDRESS, "next": 7}, "next"),
        ({"email": ADDRESS, "next": "/" + "a" * 5000}, "next"),
        ({"email": ADDRESS, "newsletters": "daily"}, "newsletters"),
        ({"email": ADDRESS, "newsletters": ["weekly"]}, "newsletters"),
        ({"email": ADDRESS, "newsletters": [None]}, "newsletters"),
        ({"email": ADDRESS, "as_typed": "yes"}, "as_typed"),
    ],
)
def test_a_field_of_the_wrong_type_or_size_is_a_422_naming_it(client, body, field):
    response = ask(client, body)
    assert response.status_code == 422
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert queued() == 0 and rows(LoginAttempt) == []


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"lea@example.com"', b"null", b"{'a': 1}"])
def test_a_body_that_is_not_a_json_object_is_a_400(client, raw):
    response = client.post(
        "/api/v1/login", data=raw, content_type="application/json", headers=FROM_SITE
    )
    assert response.status_code == 400
    assert error_of(response)["code"] in ("invalid_json", "bad_request")
    assert queued() == 0


def test_a_body_too_deep_or_holding_a_nul_is_a_400_in_the_json_shape(client):
    deep = client.post(
        "/api/v1/login",
        data=b"[" * 100_000,
        content_type="application/json",
        headers=FROM_SITE,
    )
    assert deep.status_code in (400, 413)
    error_of(deep)
    nul = ask(client, {"email": "lea\x00@example.com"})
    assert nul.status_code == 400 and error_of(nul)["code"] == "unstorable_text"
    assert queued() == 0


def test_an_oversized_body_is_a_413_in_the_json_shape(client):
    response = ask(client, {"email": ADDRESS, "padding": "x" * 100_000})
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"
    assert queued() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://evil.test"},
        {"Origin": "null"},
        {"Origin": "http://www.news.test.evil"},
    ],
)
def test_a_post_from_a_page_elsewhere_is_refused_and_changes_nothing(client, headers):
    response = client.post("/api/v1/login", json={"email": ADDRESS}, headers=headers)
    assert response.status_code == 403
    assert error_of(response)["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert queued() == 0


def test_a_cookie_carrying_form_post_is_refused_even_from_the_site(client):
    response = client.post("/api/v1/login", data={"email": ADDRESS}, headers=FROM_SITE)
    assert response.status_code == 415
    assert error_of(response)["code"] == "json_required"
    assert queued() == 0


def test_errors_are_in_the_readers_language(client):
    french = error_of(ask(client, {"email": "lea"}))
    english = error_of(ask(client, {"email": "lea"}, **{"Accept-Language": "en"}))
    assert "n’est pas valide" in french["message"]
    assert "is not a valid email address" in english["message"]


def test_an_accented_address_is_accepted_and_named_as_the_reader_wrote_it(client):
    response = ask(client, {"email": "léa@exämple.com"})
    assert response.status_code == 202
    assert response.get_json()["sent_to"] == "léa@exämple.com"


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], RATELIMIT_ENABLED=True)
def test_the_html_form_and_the_api_share_one_allowance_per_address(app, client):
    Visitor(app, client).ask_for_link(ADDRESS)
    response = ask(app.test_client(), {"email": ADDRESS})
    assert response.status_code == 429
    assert error_of(response)["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    assert queued() == 1


# --- The code -------------------------------------------------------------------------


def _code_of(app, client) -> str:
    return Visitor(app, client).last_mail().code


def test_the_code_signs_in_the_browser_that_asked(app, client):
    ask(client, {"email": ADDRESS, "next": "/articles/un-article"})
    response = enter(client, _code_of(app, client))
    assert response.status_code == 200
    assert response.get_json() == {
        "signed_in": True,
        "email": ADDRESS,
        "newsletters": [],
        "next": "/articles/un-article",
    }
    assert client.get("/api/v1/me").get_json()["signed_in"] is True
    assert len(rows(Reader)) == 1


def test_the_newsletter_ticked_on_the_wall_is_subscribed_at_sign_in(app, client):
    ask(client, {"email": ADDRESS, "newsletters": ["daily"]})
    assert enter(client, _code_of(app, client)).get_json()["newsletters"] == ["daily"]


def test_a_wrong_code_says_how_many_tries_are_left_then_the_attempt_dies(app, client):
    ask(client, {"email": ADDRESS})
    right = _code_of(app, client)
    wrong = "000000" if right != "000000" else "111111"
    for left in (4, 3, 2, 1):
        response = enter(client, wrong)
        assert response.status_code == 422
        assert error_of(response) | {"message": ""} == {
            "code": "wrong_code",
            "message": "",
            "tries_left": left,
        }
    last = enter(client, wrong)
    assert last.status_code in (410, 422)
    dead = enter(client, right)
    assert dead.status_code == 410 and error_of(dead)["code"] == "too_many_tries"
    assert client.get("/api/v1/me").get_json() == {"signed_in": False}


@pytest.mark.parametrize("code", ["12345", "abcdef", "1234567", "", "١٢٣٤٥٦"])
def test_a_code_that_is_not_six_digits_costs_no_try(app, client, code):
    ask(client, {"email": ADDRESS})
    response = enter(client, code)
    assert response.status_code == 422 and error_of(response)["code"] == "malformed_code"
    assert rows(LoginAttempt)[0].tries_left == app.config["LOGIN_CODE_TRIES"]


def test_a_code_from_a_browser_that_asked_nothing_is_refused(app, client, browser):
    ask(client, {"email": ADDRESS})
    response = enter(browser, _code_of(app, client))
    assert response.status_code == 400 and error_of(response)["code"] == "no_attempt"
    assert rows(LoginAttempt)[0].tries_left == app.config["LOGIN_CODE_TRIES"]


def test_a_code_whose_link_was_used_elsewhere_is_a_410(app, client, browser):
    ask(client, {"email": ADDRESS})
    mail = Visitor(app, client).last_mail()
    Visitor(app, browser).client.get(f"/login/verify?token={mail.token}")
    confirm = browser.post(
        "/login/verify",
        data={
            "token": mail.token,
            "csrf_token": csrf_token(browser, f"/login/verify?token={mail.token}"),
        },
    )
    assert confirm.status_code == 303
    response = enter(client, mail.code)
    assert response.status_code == 410 and error_of(response)["code"] == "used"


def test_after_signing_in_the_browser_holds_no_attempt_to_enter_a_code_for(app, client):
    ask(client, {"email": ADDRESS})
    code = _code_of(app, client)
    assert enter(client, code).status_code == 200
    again = enter(client, code)
    assert again.status_code == 400 and error_of(again)["code"] == "no_attempt"


@pytest.mark.parametrize("body", [{"code": 123456}, {"code": None, "x": 1}, {"code": ["1"]}])
def test_a_code_of_the_wrong_type_is_a_422(app, client, body):
    ask(client, {"email": ADDRESS})
    response = client.post("/api/v1/login/code", json=body, headers=FROM_SITE)
    assert response.status_code in (400, 422)
    error_of(response)


def test_the_link_of_a_mail_asked_through_the_api_signs_in_at_once_in_that_browser(app, client):
    ask(client, {"email": ADDRESS, "next": "/articles/un-article"})
    link = Visitor(app, client).last_mail().link
    response = client.get(link.replace("http://news.test", ""))
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/articles/un-article")
    assert client.get("/api/v1/me").get_json()["email"] == ADDRESS


# --- Who is signed in, signing out ----------------------------------------------------


def test_me_is_never_stored_by_a_cache(client):
    response = client.get("/api/v1/me")
    assert response.get_json() == {"signed_in": False}
    assert "no-store" in response.headers["Cache-Control"]


def test_logout_signs_this_browser_out(app, client):
    Visitor(app, client).sign_in(ADDRESS)
    assert client.post("/api/v1/logout", json={}, headers=FROM_SITE).status_code == 204
    assert client.get("/api/v1/me").get_json() == {"signed_in": False}


def test_logout_from_a_page_elsewhere_is_refused(app, client):
    Visitor(app, client).sign_in(ADDRESS)
    response = client.post("/api/v1/logout", json={}, headers={"Origin": "http://evil.test"})
    assert response.status_code == 403
    assert client.get("/api/v1/me").get_json()["signed_in"] is True


def test_an_unknown_api_route_is_a_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert re.search(r"\bOrigin\b", response.headers["Vary"])


@pytest.mark.parametrize(
    "asked, lands",
    [
        (
            f"{SITE}/2026/12/01/un-article.html?x=1#top",
            f"{SITE}/2026/12/01/un-article.html?x=1#top",
        ),
        ("HTTP://WWW.NEWS.TEST/a", "http://www.news.test/a"),
        ("http://evil.test/a", "/"),
        (f"{SITE}@evil.test/a", "/"),
        ("http://user@www.news.test/a", "/"),
        ("https://www.news.test/a", "/"),  # another scheme: another origin
        ("http://www.news.test:8080/a", "/"),
        ("http://www.news.test:bad/a", "/"),
        ("javascript:alert(1)", "/"),
        ("//www.news.test/a", "/"),
    ],
)
def test_the_link_leads_back_to_a_page_of_an_allowed_origin_only(app, client, asked, lands):
    ask(client, {"email": ADDRESS, "next": asked})
    token = Visitor(app, client).last_mail().token
    response = client.get(f"/login/verify?token={token}")
    assert response.status_code == 303
    assert response.headers["Location"] == lands


def test_the_api_speaks_the_language_the_page_asks_for_over_the_services_cookie(client):
    """The wall speaks its page's language: a lang cookie chosen on the service's own
    pages does not turn its messages into the other language."""
    client.set_cookie("lang", "fr")
    english = error_of(ask(client, {"email": "lea"}, **{"Accept-Language": "en"}))
    assert "is not a valid email address" in english["message"]
    client.set_cookie("lang", "en")
    assert (
        "n’est pas valide"
        in error_of(ask(client, {"email": "lea"}, **{"Accept-Language": "fr"}))["message"]
    )


def test_the_confirm_page_may_lead_on_to_the_news_site(client):
    """Its button's answer redirects to the article on the news site: the CSP's
    form-action must allow that origin, or Chromium stays on the confirm page."""
    policy = client.get("/login").headers["Content-Security-Policy"]
    [form_action] = [part for part in policy.split("; ") if part.startswith("form-action")]
    assert form_action.split()[1:] == ["'self'", SITE]


@pytest.mark.settings(ALLOWED_ORIGINS=[SITE], RATELIMIT_ENABLED=True)
@pytest.mark.parametrize(
    "refused",
    [
        {"newsletters": "nope"},
        {"next": 7},
        {"next": "/" + "a" * 5000},
        {"as_typed": "yes"},
        {"website": ["x"]},
    ],
)
def test_a_body_the_api_refuses_spends_nothing_of_the_address_allowance(app, refused):
    """Strangers on other networks send requests for the victim's address that the API
    refuses (422) before mailing: the address limits must not count them, or they
    would lock the reader out, and tell when the address last asked, with no mail."""
    for network in range(1, 6):
        stranger = app.test_client()
        stranger.environ_base["REMOTE_ADDR"] = f"198.51.{network}.7"
        response = ask(stranger, {"email": ADDRESS, **refused})
        assert response.status_code == 422, response.get_json()
    reader = app.test_client()
    reader.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert ask(reader, {"email": ADDRESS}).status_code == 202
    assert queued() == 1
