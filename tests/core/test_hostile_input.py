"""Hostile input on every form field and query parameter: a clear 4xx, never a 500.

Fields and parameters: ``email``, ``newsletter``, ``next``, ``code``, ``token``,
``confirm``, ``lang``, the article ``slug``, ``csrf_token``, and the two headers the
service reads or stores (``Accept-Language``, ``User-Agent``). Each gets header
injection, long strings, NUL bytes, unusual Unicode, markup, SQL and repeated values.
Whatever comes back is a calm page (no trace, no SQL, no raw ``<script``), and an
address that is not valid never gets mail; a valid but unusual one signs in. Text the
database cannot store (a NUL character) is refused before any view, with the same 400
page whatever the field: see the last section, and ``core/test_unstorable_input.py`` for
every route.
"""

from __future__ import annotations

from urllib.parse import quote, urljoin, urlsplit

import pytest
from itsdangerous import URLSafeTimedSerializer
from support.web import (
    ADDRESS,
    Visitor,
    assert_calm_page,
    csrf_token,
    forms_of,
    in_english,
    is_signed_in,
    post_form,
    rows,
    sign_in,
)

from auth_service.auth import signin
from auth_service.models import LoginAttempt, OutboxMessage, Reader

HOSTILE = {
    "crlf-header-injection": "a@b.com\r\nBcc: x@y.z",
    "lf-header-injection": "a@b.com\nBcc: x@y.z",
    "10-kb": "a" * 10_000,
    "10-kb-of-accents": "é" * 5_000,
    "emoji": "📰🗞️📰",
    "rtl-override": "reader\u202e@example.com",
    "leading-combining-mark": "\u0301\u0301reader@example.com",
    "full-width-at": "reader＠example.com",
    "script": "<script>alert(1)</script>@example.com",
    "attribute-breakout": '"><img src=x onerror=alert(1)>',
    "sql-or": "' OR '1'='1' --",
    "sql-drop": "x@example.com'; DROP TABLE readers; --",
    "percent-nul": "%00",
    "zero-width": "rea\u200bder@example.com",
}
HOSTILE_IDS = list(HOSTILE)
HOSTILE_VALUES = list(HOSTILE.values())
# PostgreSQL cannot store these: the guard refuses them in any field (last section).
UNSTORABLE = {"nul-byte": "a\x00b@example.com", "only-nul": "\x00", "nul-after": ADDRESS + "\x00"}
TOO_LARGE = "a" * 100_000  # over MAX_CONTENT_LENGTH in a form; fine in a query string


def assert_no_raw_markup(response) -> None:
    """No value sent by the reader comes back as live markup."""
    body = response.get_data(as_text=True)
    assert "<script" not in body
    assert "<img src=x" not in body


def hostile(**marks):
    """Parametrize a test over every hostile value."""
    return pytest.mark.parametrize("value", HOSTILE_VALUES, ids=HOSTILE_IDS, **marks)


# --- email --------------------------------------------------------------------------
"""POST /login ``email``: refused inline and nothing sent; valid odd addresses work."""


@hostile()
def test_hostile_email_is_refused_and_sends_nothing(reader, value):
    response = reader.ask_for_link(value)
    assert_calm_page(response, 422)
    assert_no_raw_markup(response)
    assert rows(OutboxMessage) == []
    assert rows(LoginAttempt) == []


@pytest.mark.parametrize(
    "typed", ["<script>alert(1)</script>@example.com", '"><img src=x onerror=alert(1)>']
)
def test_markup_in_the_email_is_given_back_escaped(reader, typed):
    response = reader.ask_for_link(typed)
    assert response.status_code == 422
    assert forms_of(response, "/login")[0].field("email")["value"] == typed
    assert_no_raw_markup(response)


def test_email_over_the_size_limit_is_a_413_page(reader):
    response = reader.ask_for_link(TOO_LARGE + "@example.com")
    assert_calm_page(response, 413)
    assert rows(OutboxMessage) == []


@pytest.mark.parametrize(
    "values",
    [["<script>@x", ADDRESS], [ADDRESS, "a@b.com\r\nBcc: x@y.z"], [ADDRESS, "other@example.com"]],
    ids=repr,
)
def test_repeated_email_field_sends_at_most_one_mail(client, values):
    response = post_form(client, "/login", {"email": values})
    assert response.status_code in (303, 422)
    assert_no_raw_markup(response)
    mails = rows(OutboxMessage)
    assert len(mails) == (1 if response.status_code == 303 else 0)
    assert all("\n" not in mail.to_address and "\r" not in mail.to_address for mail in mails)


@pytest.mark.parametrize(
    ("typed", "shown", "sent_to"),
    [
        ("élodie@exemple.fr", "élodie@exemple.fr", "élodie@exemple.fr"),
        ("e\u0301lodie@exemple.fr", "élodie@exemple.fr", "élodie@exemple.fr"),
        ("noel@bücher.example", "noel@bücher.example", "noel@xn--bcher-kva.example"),
        ("noel@xn--bcher-kva.example", "noel@bücher.example", "noel@xn--bcher-kva.example"),
        ("reader@ｅｘａｍｐｌｅ.com", "reader@example.com", "reader@example.com"),
        ("📰@example.com", "📰@example.com", "📰@example.com"),
        ("Reader+News@Example.COM", "reader+news@example.com", "reader+news@example.com"),
        ("a" * 64 + "@example.com", "a" * 64 + "@example.com", "a" * 64 + "@example.com"),
    ],
    ids=[
        "accented-local-part",
        "decomposed-accent",
        "idn-domain",
        "punycode-domain",
        "full-width-domain",
        "emoji-local-part",
        "plus-and-capitals",
        "64-character-local",
    ],
)
def test_valid_but_unusual_address_signs_in(reader, client, typed, shown, sent_to):
    response = reader.ask_for_link(typed, next_url="/account")
    assert response.status_code == 303
    assert f'<strong class="address">{shown}</strong>' in client.get("/login/sent").get_data(
        as_text=True
    )
    mail = reader.last_mail()
    assert mail.to == sent_to
    assert client.get(f"/login/verify?token={mail.token}").location == "/account"
    assert shown in client.get("/account").get_data(as_text=True)
    assert [account.email for account in rows(Reader)] == [shown]


# --- newsletter ---------------------------------------------------------------------
"""POST /login ``newsletter``: a tick box; any value is read as ticked or not, no more."""


@hostile()
def test_hostile_newsletter_value_is_only_a_tick(client, value):
    response = post_form(client, "/login", {"email": ADDRESS, "newsletter": value})
    assert response.status_code == 303
    [attempt] = rows(LoginAttempt)
    assert attempt.newsletter in (True, False)
    assert value not in (attempt.newsletter_wording or "")
    assert len(rows(OutboxMessage)) == 1


def test_repeated_newsletter_field_sends_one_mail(client):
    response = post_form(client, "/login", {"email": ADDRESS, "newsletter": ["y", "<x>", ""]})
    assert response.status_code == 303
    assert len(rows(OutboxMessage)) == 1


# --- next ---------------------------------------------------------------------------
"""``next`` in the form and in the query: escaped, and only ever a path on this site."""


@hostile()
def test_hostile_next_in_the_form_lands_on_the_front_page(app, client, value):
    response = sign_in(app, client, next_url=value)
    assert response.status_code == 303
    assert response.location == "/"


@hostile()
def test_hostile_path_in_next_stays_on_this_site(app, client, value):
    response = sign_in(app, client, next_url="/" + value)
    assert response.status_code == 303
    landing = urljoin("http://news.test/articles/here", response.location)
    assert urlsplit(landing).netloc == "news.test"
    assert "\r" not in response.location and "\n" not in response.location


@hostile()
def test_hostile_next_in_the_query_is_escaped_in_the_form(client, value):
    for target in (value, "/" + value):
        response = client.get("/login", query_string={"next": target})
        assert_calm_page(response, 200)
        assert_no_raw_markup(response)
        kept = forms_of(response, "/login")[0].field("next")["value"]
        assert kept == "/" or kept == target


def test_huge_next_is_dropped_or_refused(app, client):
    response = client.get("/login", query_string={"next": "/" + TOO_LARGE})
    assert forms_of(response, "/login")[0].field("next")["value"] == "/"
    too_large = post_form(client, "/login", {"email": ADDRESS, "next": "/" + TOO_LARGE})
    assert_calm_page(too_large, 413)
    assert rows(OutboxMessage) == []


def test_repeated_next_field_lands_on_this_site(app, client):
    data = {"email": ADDRESS, "next": ["//evil.example", "/articles/x"]}
    assert post_form(client, "/login", data).status_code == 303
    landing = client.get(f"/login/verify?token={Visitor(app, client).last_mail().token}")
    assert urlsplit(urljoin("http://news.test/", landing.location)).netloc == "news.test"


# --- code ---------------------------------------------------------------------------
"""POST /login/code ``code``: refused with a message; never a crash.

None of the hostile values is six digits, so none can be a guess: they cost no try.
"""


@hostile()
def test_hostile_code_is_refused_without_costing_a_try(reader, client, value):
    reader.ask_for_link(ADDRESS)
    response = post_form(client, "/login/code", {"code": value})
    assert_calm_page(response, 422)
    assert_no_raw_markup(response)
    assert rows(LoginAttempt)[0].tries_left == 5
    assert not is_signed_in(client)


@hostile()
def test_hostile_code_in_a_browser_that_did_not_ask_is_refused(browser, value):
    response = post_form(browser, "/login/code", {"code": value})
    assert_calm_page(response, 400)
    assert_no_raw_markup(response)


@pytest.mark.parametrize(
    "code",
    ["１２３４５６", "١٢٣٤٥٦", "12345６", "+12345", "-12345", "1e5", "0x1234", "123456" * 1000],
)
def test_look_alike_digits_are_a_wrong_code(reader, client, code):
    reader.ask_for_link(ADDRESS)
    response = post_form(client, "/login/code", {"code": code})
    assert_calm_page(response, 422)
    assert not is_signed_in(client)


def test_code_over_the_size_limit_is_a_413_page(reader, client):
    reader.ask_for_link(ADDRESS)
    assert_calm_page(post_form(client, "/login/code", {"code": TOO_LARGE}), 413)
    assert rows(LoginAttempt)[0].tries_left == 5


def test_repeated_code_field_signs_in_at_most_once(reader, client):
    reader.ask_for_link(ADDRESS)
    right = reader.last_mail().code
    response = post_form(
        client, "/login/code", {"code": ["000000" if right != "000000" else "111111", right]}
    )
    assert response.status_code in (303, 422)
    assert is_signed_in(client) == (response.status_code == 303)


# --- token --------------------------------------------------------------------------
"""GET, HEAD and POST /login/verify ``token``: refused as not valid, nothing consumed."""


@hostile()
@pytest.mark.parametrize("same_browser", [True, False], ids=["asking-browser", "other"])
def test_hostile_token_in_the_link_is_not_valid(reader, client, browser, value, same_browser):
    reader.ask_for_link(ADDRESS)
    opener = client if same_browser else browser
    assert opener.head("/login/verify", query_string={"token": value}).status_code == 400
    response = opener.get("/login/verify", query_string={"token": value})
    assert_calm_page(response, 400)
    assert_no_raw_markup(response)
    assert rows(LoginAttempt)[0].used_at is None


@hostile()
def test_hostile_token_in_the_confirm_form_is_not_valid(browser, value):
    response = post_form(browser, "/login/verify", {"token": value})
    assert_calm_page(response, 400)
    assert_no_raw_markup(response)
    assert not is_signed_in(browser)


def test_huge_token_is_not_valid_or_too_large(client):
    assert_calm_page(client.get("/login/verify", query_string={"token": TOO_LARGE}), 400)
    assert_calm_page(post_form(client, "/login/verify", {"token": TOO_LARGE}), 413)


@pytest.mark.parametrize("order", ["junk-first", "real-first"])
def test_repeated_token_signs_in_at_most_once(reader, client, order):
    reader.ask_for_link(ADDRESS)
    real = reader.last_mail().token
    tokens = ["junk", real] if order == "junk-first" else [real, "junk"]
    response = client.get("/login/verify", query_string=[("token", token) for token in tokens])
    assert response.status_code in (303, 400)
    assert is_signed_in(client) == (response.status_code == 303)


@pytest.mark.parametrize(
    "payload",
    [
        ["a", "b"],
        "just a string",
        None,
        12,
        {"a": 1, "r": 2},
        {"a": "x"},
        {"a": "x" * 10_000, "r": "y"},
        {"a": "a\x00b", "r": "x"},
        {"a": "' OR 1=1 --", "r": "x"},
    ],
    ids=repr,
)
def test_signed_token_with_a_strange_payload_is_not_valid(app, browser, payload):
    forged = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=signin.LINK_SALT)
    response = browser.get("/login/verify", query_string={"token": forged.dumps(payload)})
    assert_calm_page(response, 400)
    response = post_form(browser, "/login/verify", {"token": forged.dumps(payload)})
    assert_calm_page(response, 400)


# --- confirm ------------------------------------------------------------------------
"""POST /account/delete ``confirm``: anything but the address deletes nothing."""


@hostile()
def test_hostile_confirm_deletes_nothing(app, client, value):
    sign_in(app, client)
    response = post_form(client, "/account/delete", {"confirm": value}, page="/account")
    assert_calm_page(response, 422)
    assert_no_raw_markup(response)
    assert len(rows(Reader)) == 1
    assert is_signed_in(client)


def test_confirm_over_the_size_limit_deletes_nothing(app, client):
    sign_in(app, client)
    response = post_form(client, "/account/delete", {"confirm": TOO_LARGE}, page="/account")
    assert_calm_page(response, 413)
    assert len(rows(Reader)) == 1


def test_confirm_with_the_address_after_junk_deletes_nothing(app, client):
    sign_in(app, client)
    data = {"confirm": ["<script>", ADDRESS]}
    response = post_form(client, "/account/delete", data, page="/account")
    assert response.status_code == 422
    assert len(rows(Reader)) == 1


def test_confirm_with_the_address_in_another_form_deletes_nothing(app, client):
    sign_in(app, client)
    for typed in (
        "reader\u202e@example.com",
        "reader＠example.com",
        "reader@example.com\r\nBcc: x@y.z",
    ):
        response = post_form(client, "/account/delete", {"confirm": typed}, page="/account")
        assert response.status_code == 422
    assert len(rows(Reader)) == 1


# --- lang ---------------------------------------------------------------------------
"""``?lang=``, the language cookie and Accept-Language: unknown values mean French."""


@hostile()
def test_hostile_lang_parameter_falls_back_to_french(client, value):
    response = client.get("/login", query_string={"lang": value})
    assert_calm_page(response, 200)
    assert '<html lang="fr">' in response.get_data(as_text=True)
    assert_no_raw_markup(response)
    assert client.get_cookie("lang") is None


def test_repeated_lang_parameter_is_one_language(client):
    response = client.get("/login", query_string=[("lang", "<script>"), ("lang", "en")])
    assert_calm_page(response, 200)
    assert '<html lang="fr">' in response.get_data(as_text=True) or (
        '<html lang="en">' in response.get_data(as_text=True)
    )


@pytest.mark.parametrize(
    "value",
    [
        "<script>",
        "x" * 4000,
        "📰",
        "' OR 1=1 --",
        "en\x00",
        "a\r\nSet-Cookie: x=y",
        "../../etc/passwd",
    ],
    ids=repr,
)
def test_hostile_language_cookie_falls_back_to_french(client, value):
    client.set_cookie("lang", value)
    response = client.get("/login")
    assert_calm_page(response, 200)
    assert '<html lang="fr">' in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "value",
    [
        "en;q=abc",
        "*",
        "x" * 10_000,
        "en-US;q=2, fr;q=-1",
        "<script>",
        ",,,;;;",
        "zh-Hant-TW-x-private-verylongtag",
        "en;q=0.5, en;q=0.9" * 500,
    ],
    ids=lambda v: repr(v[:30]),
)
def test_strange_accept_language_still_gives_a_page(client, value):
    response = client.get("/login", headers={"Accept-Language": value})
    assert_calm_page(response, 200)
    assert_no_raw_markup(response)


# --- slug ---------------------------------------------------------------------------
"""GET /articles/<slug>: anything that is not an article is the not-found page."""


@hostile()
def test_hostile_slug_is_a_not_found_page(client, value):
    response = client.get("/articles/" + quote(value, safe=""))
    assert_calm_page(response, 404)
    assert_no_raw_markup(response)


@pytest.mark.parametrize(
    "slug",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "a" * 100_000,
        "TRAIN-DE-NUIT",
        "train-de-nuit%20",
        "%C0%AE",
    ],
    ids=repr,
)
def test_odd_article_paths_are_not_found_pages(client, slug):
    response = client.get(f"/articles/{slug}")
    assert_calm_page(response, 404)


# --- csrf_token and headers ---------------------------------------------------------
"""The form token and the User-Agent the sign-in records: refused or stored safely."""


@hostile()
def test_hostile_form_token_is_refused(client, value):
    csrf_token(client)  # the browser has a session with a real token
    response = client.post("/login", data={"email": ADDRESS, "csrf_token": value})
    assert_calm_page(response, 400)
    assert rows(OutboxMessage) == []


def test_repeated_form_token_is_refused_or_accepted_once(client):
    real = csrf_token(client)
    response = client.post("/login", data={"email": ADDRESS, "csrf_token": ["junk", real]})
    assert response.status_code in (303, 400)
    assert len(rows(OutboxMessage)) == (1 if response.status_code == 303 else 0)


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0\x00evil",
        "x" * 10_000,
        "📰 Firefox/128.0 (Windows)",
        "<script>alert(1)</script>",
        "'); DROP TABLE sign_in_events; --",
    ],
    ids=repr,
)
def test_sign_in_from_a_strange_browser_is_recorded_safely(reader, client, agent):
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    response = client.get(f"/login/verify?token={token}", headers={"User-Agent": agent})
    assert response.status_code == 303
    account = in_english(client).get("/account")
    assert_calm_page(account, 200)
    assert_no_raw_markup(account)


# --- Text the database cannot store -------------------------------------------------
"""A NUL character in any field or parameter: the guard's 400 page, before any view runs,
so nothing is sent, consumed, deleted or changed (PostgreSQL cannot store it; it was a
500 there where a view passed it to a query)."""

REFUSED = "Texte impossible à enregistrer"


def unstorable(**marks):
    """Parametrize a test over every value the database cannot store."""
    return pytest.mark.parametrize(
        "value", list(UNSTORABLE.values()), ids=list(UNSTORABLE), **marks
    )


def assert_refused(response) -> None:
    """The guard's calm page: a 400 that says the text cannot be saved."""
    assert_calm_page(response, 400)
    assert REFUSED in response.get_data(as_text=True)


@unstorable()
@pytest.mark.parametrize("field", ["email", "newsletter", "next", "website", "as_typed"])
def test_nul_in_a_login_field_is_refused_and_sends_nothing(client, field, value):
    """Defence: the input guard of ``security.py`` (form fields)."""
    data = {"email": ADDRESS, field: value}
    assert_refused(post_form(client, "/login", data))
    assert rows(OutboxMessage) == [] and rows(LoginAttempt) == []


@unstorable()
@pytest.mark.parametrize("parameter", ["next", "lang", "unread"])
def test_nul_in_a_login_page_parameter_is_refused(client, parameter, value):
    """Defence: the input guard of ``security.py`` (query string)."""
    assert_refused(client.get("/login", query_string={parameter: value}))


@unstorable()
def test_nul_in_a_code_is_refused_without_costing_a_try(reader, client, value):
    """Defence: the input guard of ``security.py``, before the code is checked."""
    reader.ask_for_link(ADDRESS)
    assert_refused(post_form(client, "/login/code", {"code": value}))
    assert rows(LoginAttempt)[0].tries_left == 5


@unstorable()
def test_nul_beside_a_real_token_consumes_nothing(reader, client, value):
    """Defence: the input guard of ``security.py``: the link is left unused."""
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    assert_refused(client.get("/login/verify", query_string={"token": token + value}))
    assert_refused(client.get("/login/verify", query_string={"token": token, "x": value}))
    assert_refused(post_form(client, "/login/verify", {"token": token, "next": value}))
    assert rows(LoginAttempt)[0].used_at is None
    assert not is_signed_in(client)


@unstorable()
def test_nul_in_the_delete_confirmation_deletes_nothing(app, client, value):
    """Defence: the input guard of ``security.py``, before the account is looked at."""
    sign_in(app, client)
    response = post_form(client, "/account/delete", {"confirm": value}, page="/account")
    assert_refused(response)
    assert len(rows(Reader)) == 1
    assert is_signed_in(client)


@unstorable()
def test_nul_in_an_article_slug_is_refused(client, value):
    """Defence: the input guard of ``security.py`` (the path's arguments)."""
    assert_refused(client.get("/articles/" + quote(value, safe="")))
