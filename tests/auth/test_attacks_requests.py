"""Attacks on sign-in and on every page: guessing, tampering, redirects, CSRF, headers.

Each test plays the attacker through the test client and checks what the service did
(the database, the session, the response). Its docstring names the defence it proves,
in the form ``Defence: ...``; ``docs/security.md`` points at these names. Remove the
defence and the test fails.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import pytest
from flask import abort
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes
from support.articles import ARTICLES
from support.web import (
    ADDRESS,
    Visitor,
    app_without_database,
    assert_calm_page,
    csrf_token,
    in_english,
    is_signed_in,
    post_form,
    rows,
    sign_in,
    text_of,
)

from auth_service.articles.store import import_articles
from auth_service.auth import signin
from auth_service.auth.browser import COOKIE_SALT
from auth_service.extensions import db, limiter
from auth_service.models import LoginAttempt, OutboxMessage, Reader, utcnow


@pytest.fixture(autouse=True)
def no_request_counted_yet(app):
    """Start every test with empty rate-limit counters (the limiter is process-wide)."""
    if app.config["RATELIMIT_ENABLED"]:
        limiter.reset()


def attempts() -> list[tuple]:
    """Every attempt as the database holds it: id, used or not, tries left."""
    return [(a.id, a.used_at, a.tries_left) for a in rows(LoginAttempt)]


# --- Guessing the code ----------------------------------------------------------------


def _wrong_codes(mails, count: int) -> list[str]:
    """``count`` six-digit codes that none of ``mails`` holds."""
    codes = {mail.code for mail in mails}
    return [code for code in (f"{n:06d}" for n in range(100)) if code not in codes][:count]


@pytest.mark.parametrize(
    "addresses",
    [[ADDRESS] * 3, [f"t{n}@example.com" for n in range(3)]],
    ids=["one-address-thrice", "three-addresses"],
)
def test_asking_for_more_links_gives_no_more_code_guesses(reader, client, addresses):
    """Defence: a wrong code costs a try on every open attempt of the browser, so after
    5 wrong guesses all of them are dead, however many links it asked for."""
    for address in addresses:
        reader.ask_for_link(address)
    mails = reader.outbox()
    statuses = [
        post_form(client, "/login/code", {"code": code}).status_code
        for code in _wrong_codes(mails, 5)
    ]
    assert statuses == [422, 422, 422, 422, 410]
    assert [tries for _, _, tries in attempts()] == [0, 0, 0]
    for mail in mails:  # not the right code, not the link: nothing opens any more
        assert post_form(client, "/login/code", {"code": mail.code}).status_code in (400, 410)
        assert client.get(f"/login/verify?token={mail.token}").status_code == 410
    assert not is_signed_in(client)


def test_guessing_from_another_browser_is_refused_and_costs_no_try(reader, browser):
    """Defence: a code only counts in the browser holding the signed attempt cookie;
    elsewhere even the right code is refused, and no try is spent."""
    reader.ask_for_link(ADDRESS)
    for code in ("000000", "123456", reader.last_mail().code):
        assert_calm_page(post_form(browser, "/login/code", {"code": code}), 400)
    assert [tries for _, _, tries in attempts()] == [5]
    assert not is_signed_in(browser)


@pytest.mark.parametrize("signed_with", ["another-deployments-key-0123456789", None])
def test_forged_attempt_cookie_opens_no_guessing(app, reader, browser, signed_with):
    """Defence: the attempt cookie is signed with SECRET_KEY and its own salt; a cookie
    forged with another key, or not signed at all, names no attempt."""
    reader.ask_for_link(ADDRESS)
    [(attempt_id, _, _)] = attempts()
    forged = (
        URLSafeTimedSerializer(signed_with, salt=COOKIE_SALT).dumps([attempt_id])
        if signed_with
        else f'["{attempt_id}"]'
    )
    browser.set_cookie("auth_attempts", forged, path="/login")
    response = post_form(browser, "/login/code", {"code": reader.last_mail().code})
    assert_calm_page(response, 400)
    assert attempts() == [(attempt_id, None, 5)]
    assert not is_signed_in(browser)


# --- Tampering with and replaying the link --------------------------------------------


def _flip(text: str, position: int) -> str:
    """``text`` with the base64 character at ``position`` changed (all 6 bits count)."""
    return text[:position] + ("A" if text[position] != "A" else "B") + text[position + 1 :]


def _timestamp(*, days: int) -> str:
    """An itsdangerous timestamp ``days`` from now: a link made to live longer."""
    seconds = int(utcnow().timestamp()) + days * 86_400
    return base64_encode(int_to_bytes(seconds)).decode()


def _resigned(app, token: str, key: str, salt: str = signin.LINK_SALT) -> str:
    """The payload of ``token`` signed again with ``key`` and ``salt``."""
    payload = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=signin.LINK_SALT).loads(token)
    return URLSafeTimedSerializer(key, salt=salt).dumps(payload)


TAMPERINGS = {
    "signature-byte-flipped": lambda app, token, other: _flip(token, len(token) - 10),
    "payload-byte-flipped": lambda app, token, other: _flip(token, 10),
    "payload-of-another-link": lambda app, token, other: (
        other.split(".")[0] + "." + token.split(".", 1)[1]
    ),
    "timestamp-renewed": lambda app, token, other: ".".join(
        [token.split(".")[0], _timestamp(days=10), token.split(".")[2]]
    ),
    "another-deployments-key": lambda app, token, other: _resigned(
        app, token, "another-deployments-secret-key-0123456789"
    ),
    "our-key-another-salt": lambda app, token, other: _resigned(
        app, token, app.config["SECRET_KEY"], salt=COOKIE_SALT
    ),
    "truncated-by-one": lambda app, token, other: token[:-1],
    "truncated-in-half": lambda app, token, other: token[: len(token) // 2],
    "signature-dropped": lambda app, token, other: token.rsplit(".", 1)[0],
}


@pytest.mark.parametrize("tamper", list(TAMPERINGS.values()), ids=list(TAMPERINGS))
def test_tampered_link_signs_nobody_in(app, reader, client, browser, tamper):
    """Defence: the itsdangerous signature (own salt, SECRET_KEY) plus the hashed random
    part: any change to the link is refused, in the asking browser and in any other."""
    reader.ask_for_link(ADDRESS)
    reader.ask_for_link("other@example.com")
    mine, other = (mail.token for mail in reader.outbox())
    forged = tamper(app, mine, other)
    assert forged not in (mine, other)
    before = attempts()
    assert client.get("/login/verify", query_string={"token": forged}).status_code == 400
    assert post_form(browser, "/login/verify", {"token": forged}).status_code == 400
    assert attempts() == before
    assert not is_signed_in(client) and not is_signed_in(browser)


def test_used_link_replayed_signs_nobody_in(app, reader, client, browser):
    """Defence: single use, consumed by one conditional UPDATE (used_at IS NULL): a
    replay gets 410 in any browser, by GET or by the confirm button."""
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    assert client.get(f"/login/verify?token={token}").status_code == 303
    thief = app.test_client()
    assert thief.get(f"/login/verify?token={token}").status_code == 410
    assert post_form(thief, "/login/verify", {"token": token}).status_code == 410
    assert not is_signed_in(thief)


def test_link_replayed_after_sign_out_everywhere_opens_nothing(app, reader, client):
    """Defence: "sign out everywhere" replaces the reader's alternative id, and a used
    link stays used: neither an old session nor the old link signs in again."""
    reader.ask_for_link(ADDRESS)
    token, code = reader.last_mail().token, reader.last_mail().code
    client.get(f"/login/verify?token={token}")
    old_session = client.get_cookie("auth_session").value
    post_form(client, "/account/sign-out-everywhere", {}, page="/account")
    thief = app.test_client()
    thief.set_cookie("auth_session", old_session)
    assert not is_signed_in(thief)
    assert client.get(f"/login/verify?token={token}").status_code == 410
    assert post_form(thief, "/login/verify", {"token": token}).status_code == 410
    assert post_form(client, "/login/code", {"code": code}).status_code == 400
    assert not is_signed_in(client) and not is_signed_in(thief)


# --- Open redirects -------------------------------------------------------------------

ELSEWHERE = [
    "//evil.example",
    "///evil.example",
    "////evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "%2F%2Fevil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "%5C%5Cevil.example",
    "/%5Cevil.example",
    "https:evil.example",
    "https:/evil.example",
    "https:\\\\evil.example",
    "HTTPS://evil.example",
    "http://news.test@evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "\x0b//evil.example",
    "/%09/evil.example",
    "/\u2215evil.example",
    "\u2215\u2215evil.example",
    "/\uff0fevil.example",
    "\uff0f\uff0fevil.example",
    "/\u2044evil.example",
    "/.//evil.example",
    "/./\\evil.example",
    "/..//evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    " javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
]


def lands_on_this_site(location: str) -> bool:
    """Whether a browser following ``location`` stays on this site.

    Read as the URL standard makes browsers read it: leading and trailing spaces and
    control characters dropped, tabs and newlines removed, "\\" taken for "/".
    """
    seen = re.sub(r"[\t\n\r]", "", location.strip("".join(map(chr, range(33)))))
    seen = seen.replace("\\", "/")
    if not seen.startswith("/") or seen.startswith("//"):
        return False
    landing = urlsplit(urljoin("http://news.test/login/verify", seen))
    return landing.scheme == "http" and landing.netloc == "news.test"


def _by_link(app, client, target):
    """The link, opened in the browser that asked."""
    return Visitor(app, client).sign_in(ADDRESS, next_url=target)


def _by_confirm(app, client, target):
    """The link, opened elsewhere and confirmed with the button."""
    asking = Visitor(app, app.test_client())
    asking.ask_for_link(ADDRESS, next_url=target)
    return post_form(client, "/login/verify", {"token": asking.last_mail().token})


def _by_code(app, client, target):
    """The code, typed in the browser that asked."""
    reader = Visitor(app, client)
    reader.ask_for_link(ADDRESS, next_url=target)
    return post_form(client, "/login/code", {"code": reader.last_mail().code})


def _by_form_when_signed_in(app, client, target):
    """The form's ``?next=``, which sends a signed-in reader straight on."""
    sign_in(app, client)
    return client.get("/login", query_string={"next": target})


@pytest.mark.parametrize("target", ELSEWHERE, ids=ascii)
@pytest.mark.parametrize(
    "way",
    [_by_link, _by_confirm, _by_code, _by_form_when_signed_in],
    ids=["link", "confirm", "code", "form-signed-in"],
)
def test_next_never_leads_off_the_site(app, client, way, target):
    """Defence: safe_next: ``next`` is followed only when it is a plain path on this
    site, whatever the encoding; anything else goes to "/"."""
    response = way(app, client, target)
    assert response.status_code == 303
    assert lands_on_this_site(response.headers["Location"]), response.headers["Location"]


@pytest.mark.parametrize(
    "location",
    [
        "//evil.example",
        "/\\evil.example",
        "\t//evil.example",
        "https:evil.example",
        "javascript:x",
        "/\t/evil.example",
    ],
)
def test_the_redirect_check_itself_catches_ways_off_the_site(location):
    """Defence: (the yardstick of the redirect tests) ``lands_on_this_site`` reads a
    Location as a browser does, so it would catch each of these tricks."""
    assert not lands_on_this_site(location)


# --- CSRF on every state-changing route ----------------------------------------------


def _victim_at(app, client, route):
    """Prepare the victim's browser for ``route``; return what the attacker posts."""
    if route == "/login":
        return {"email": "victim@example.com"}
    if route == "/login/verify":  # login CSRF: the attacker's own link
        attacker = Visitor(app, app.test_client())
        attacker.ask_for_link("attacker@example.com")
        return {"token": attacker.last_mail().token}
    if route == "/login/code":
        Visitor(app, client).ask_for_link(ADDRESS)
        return {"code": Visitor(app, client).last_mail().code}
    sign_in(app, client)
    return {"confirm": ADDRESS} if route == "/account/delete" else {}


def _state(client) -> tuple:
    """All a forged form could change: mail, attempts, accounts and their sessions, this
    browser's sign-in."""
    accounts = [(a.email, a.public_id, len(a.sessions)) for a in rows(Reader)]
    return len(rows(OutboxMessage)), attempts(), accounts, is_signed_in(client)


def _own_token(client) -> str:
    """The browser's own valid form token, from a page it can open."""
    return csrf_token(client, "/account" if is_signed_in(client) else "/login")


FORM_TOKENS = {
    "missing": lambda app, client: None,
    "another-session": lambda app, client: csrf_token(app.test_client()),
    "garbled": lambda app, client: _flip(token := _own_token(client), len(token) - 8),
    "empty": lambda app, client: "",
}


@pytest.mark.parametrize("token", list(FORM_TOKENS.values()), ids=list(FORM_TOKENS))
@pytest.mark.parametrize(
    "route",
    [
        "/login",
        "/login/code",
        "/login/verify",
        "/logout",
        "/account/sign-out-everywhere",
        "/account/delete",
    ],
)
def test_forged_form_changes_nothing(app, client, route, token):
    """Defence: CSRFProtect (Flask-WTF) on every POST: a form without this session's
    token gets 400 and changes nothing."""
    data = _victim_at(app, client, route)
    value = token(app, client)
    if value is not None:
        data["csrf_token"] = value
    before = _state(client)
    response = in_english(client).post(route, data=data)
    assert_calm_page(response, 400)
    assert "This form has expired" in text_of(response)
    assert _state(client) == before


# --- Headers --------------------------------------------------------------------------


def _every_page(app, client) -> dict:
    """One response of each kind of HTML page, signed out and then signed in."""
    import_articles(ARTICLES)
    other, reader = app.test_client(), Visitor(app, client)
    pages = {
        "front": client.get("/"),
        "wall": client.get("/articles/train-de-nuit"),
        "public": client.get("/articles/rivieres"),
        "form": client.get("/login"),
        "bad-address": post_form(client, "/login", {"email": "nope"}),
        "typo": post_form(client, "/login", {"email": "jean@gmial.com"}),
        "not-found": client.get("/no-such-page"),
    }
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    pages.update(
        {
            "sent": client.get("/login/sent"),
            "bad-code": post_form(client, "/login/code", {"code": "abc"}),
            "confirm": other.get(f"/login/verify?token={token}"),
            "bad-link": other.get("/login/verify?token=junk"),
        }
    )
    client.get(f"/login/verify?token={token}")
    pages.update(
        {
            "account": client.get("/account"),
            "used-link": other.get(f"/login/verify?token={token}"),
            "unlocked": client.get("/articles/train-de-nuit"),
        }
    )
    return pages


def csp_of(response) -> dict[str, list[str]]:
    """The Content-Security-Policy of ``response``, by directive."""
    directives = response.headers["Content-Security-Policy"].split(";")
    return {d.split()[0]: d.split()[1:] for d in directives if d.strip()}


def test_every_page_has_a_csp_that_forbids_inline_script(app, client):
    """Defence: the Content-Security-Policy (security.py): script only from this site,
    never inline or eval'd, no plugins, no <base> hijack."""
    for name, response in _every_page(app, client).items():
        csp = csp_of(response)
        scripts = csp.get("script-src", csp.get("default-src"))
        assert scripts == ["'self'"], (name, scripts)
        assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], name
        assert "frame-ancestors" in csp, name


def test_no_page_carries_inline_script(app, client):
    """Defence: templates without inline script or event handlers, and imported bodies
    sanitised, so the strict CSP never has to be loosened."""
    for name, response in _every_page(app, client).items():
        body = response.get_data(as_text=True)
        # Only data blocks (JSON-LD), which no browser runs, may be inline.
        inline = r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/ld\+json\")"
        assert not re.search(inline, body, re.IGNORECASE), name
        assert not re.search(r"\son[a-z]+\s*=", body, re.IGNORECASE), name
        assert "javascript:" not in body.lower(), name


@pytest.mark.parametrize(
    ("ancestors", "x_frame_options"),
    [
        pytest.param(
            "'self' https://www.news.example",
            None,
            marks=pytest.mark.settings(FRAME_ANCESTORS="'self' https://www.news.example"),
        ),
        pytest.param("'self'", "SAMEORIGIN"),
        pytest.param("'none'", "DENY", marks=pytest.mark.settings(FRAME_ANCESTORS="'none'")),
    ],
    ids=["news-site", "default", "none"],
)
def test_who_may_frame_the_pages_comes_from_the_settings(client, ancestors, x_frame_options):
    """Defence: CSP frame-ancestors from FRAME_ANCESTORS (clickjacking), and
    X-Frame-Options only where it can say the same thing (it cannot list sites)."""
    for path in ("/login", "/no-such-page"):
        response = client.get(path)
        assert csp_of(response)["frame-ancestors"] == ancestors.split()
        assert response.headers.get("X-Frame-Options") == x_frame_options


def test_every_response_forbids_content_sniffing(app, client):
    """Defence: X-Content-Type-Options: nosniff on every response, downloads included."""
    responses = list(_every_page(app, client).values())
    responses += [client.get("/account/export"), client.get("/healthz")]
    assert {response.headers.get("X-Content-Type-Options") for response in responses} == {"nosniff"}


def test_pages_reached_with_a_link_token_send_no_referrer(app, reader, client, browser):
    """Defence: Referrer-Policy: no-referrer on every page reached with a sign-in token
    (confirm, failures, the sign-in redirect), so the token never leaks to other sites."""
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    expired = signin.issue(ADDRESS, now=utcnow() - timedelta(hours=1)).token
    db.session.commit()
    pages = {
        "confirm": browser.get(f"/login/verify?token={token}"),
        "invalid": browser.get("/login/verify?token=junk"),
        "invalid-confirm": post_form(browser, "/login/verify", {"token": token[:-3]}),
        "expired": browser.get(f"/login/verify?token={expired}"),
        "signed-in": client.get(f"/login/verify?token={token}"),
        "used": browser.get(f"/login/verify?token={token}"),
        "used-confirm": post_form(browser, "/login/verify", {"token": token}),
    }
    assert {name: r.headers.get("Referrer-Policy") for name, r in pages.items()} == {
        name: "no-referrer" for name in pages
    }


def test_personal_pages_and_unlocked_bodies_are_never_stored(app, reader, client, browser):
    """Defence: Cache-Control: no-store on every page with personal data or a gated body
    for a signed-in reader, so no shared cache or back button hands them to someone else."""
    import_articles(ARTICLES)
    reader.ask_for_link(ADDRESS)
    token = reader.last_mail().token
    pages = {
        "/login/sent": client.get("/login/sent"),
        "confirm": browser.get(f"/login/verify?token={token}"),
    }
    client.get(f"/login/verify?token={token}")
    for path in ("/account", "/account/export", "/articles/train-de-nuit"):
        pages[path] = client.get(path)
    assert {name: r.headers.get("Cache-Control") for name, r in pages.items()} == {
        name: "no-store" for name in pages
    }


@pytest.mark.parametrize(
    "https",
    [
        pytest.param(True, marks=pytest.mark.settings(PUBLIC_URL="https://auth.news.example")),
        pytest.param(False, marks=pytest.mark.settings(PUBLIC_URL="http://news.test")),
    ],
    ids=["https", "http"],
)
def test_hsts_is_sent_only_when_the_public_url_is_https(client, https):
    """Defence: Strict-Transport-Security on every response when PUBLIC_URL is https
    (error pages too), and never on a plain-http deployment, which it would lock out."""
    for path in ("/", "/login", "/no-such-page", "/healthz"):
        hsts = client.get(path).headers.get("Strict-Transport-Security")
        assert (hsts is not None and hsts.startswith("max-age=")) if https else hsts is None


# --- Oversized bodies -----------------------------------------------------------------


@pytest.mark.parametrize(("lang", "says"), [("fr", "Trop de données"), ("en", "Too much data")])
@pytest.mark.parametrize("encoding", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_oversized_form_is_refused_before_anything_is_queued(client, encoding, lang, says):
    """Defence: MAX_CONTENT_LENGTH: a body over the limit gets a 413 page in the reader's
    language before the form is read; even a valid address gets no mail."""
    data = {"email": ADDRESS, "csrf_token": csrf_token(client), "padding": "x" * 100_000}
    response = client.post(
        "/login", data=data, content_type=encoding, headers={"Accept-Language": lang}
    )
    assert_calm_page(response, 413)
    assert f'<html lang="{lang}">' in response.get_data(as_text=True)
    assert says in text_of(response)
    assert rows(OutboxMessage) == [] and rows(LoginAttempt) == []


# --- Error pages ----------------------------------------------------------------------

LEAKS = (
    "Traceback",
    "SELECT",
    "FROM readers",
    "RuntimeError",
    "OperationalError",
    "sqlite3",
    "unable to open",
    "Connection refused",
    "connection failed",
)


def _crash():
    """A view with a bug whose message holds SQL."""
    raise RuntimeError("SELECT email FROM readers WHERE id = 1 -- Traceback follows")


@pytest.fixture
def failing_app(app):
    """The app with two faulty routes, added before its first request as Flask requires."""
    app.add_url_rule("/test/forbidden", "test_forbidden", lambda: abort(403))
    app.add_url_rule("/test/crash", "test_crash", _crash)
    return app


def _too_many(client):
    """The second link for one address within a minute."""
    post_form(client, "/login", {"email": ADDRESS})
    return post_form(client, "/login", {"email": ADDRESS})


PROVOKE = {
    400: lambda client: client.post("/login", data={"email": ADDRESS}),
    403: lambda client: client.get("/test/forbidden"),
    404: lambda client: client.get("/no-such-page"),
    405: lambda client: client.get("/logout"),
    413: lambda client: client.post("/login", data={"email": "a" * 100_000}),
    429: _too_many,
    500: lambda client: client.get("/test/crash"),
}
TITLES = {
    400: ("Ce formulaire a expiré", "This form has expired"),
    403: ("Accès refusé", "Access refused"),
    404: ("Page introuvable", "Page not found"),
    405: ("Action non autorisée", "Not allowed"),
    413: ("Trop de données", "Too much data"),
    429: ("Trop de tentatives", "Too many tries"),
    500: ("Un problème est survenu de notre côté", "Something went wrong on our side"),
    503: ("Service indisponible", "Service unavailable"),
}


@pytest.mark.settings(RATELIMIT_ENABLED=True, PROPAGATE_EXCEPTIONS=False)
@pytest.mark.parametrize("lang", ["fr", "en"])
@pytest.mark.parametrize("status", sorted(PROVOKE))
def test_error_pages_are_calm_and_in_the_readers_language(failing_app, client, status, lang):
    """Defence: the error handlers (errors.py): an HTML page for each status in the
    reader's language; never a stack trace, an exception's text or SQL."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    response = PROVOKE[status](client)
    assert_calm_page(response, status)
    body = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in body
    assert TITLES[status][0 if lang == "fr" else 1] in text_of(response)
    assert not [leak for leak in LEAKS if leak in body]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_database_outage_shows_a_calm_503_page(app, monkeypatch, tmp_path, lang):
    """Defence: the OperationalError handler: a database that does not answer gives a
    503 page in the reader's language, without the driver's message."""
    gone = app_without_database(app, monkeypatch, tmp_path)
    response = gone.test_client().get("/", headers={"Accept-Language": lang})
    assert_calm_page(response, 503)
    body = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in body
    assert TITLES[503][0 if lang == "fr" else 1] in text_of(response)
    assert not [leak for leak in LEAKS if leak in body]


def test_signed_in_reader_also_gets_the_calm_503_page(app, reader, client, monkeypatch, tmp_path):
    """Defence: the session's reader is looked up without failing when the database is
    down, so the error page itself does not crash on ``current_user``."""
    reader.sign_in()
    session_cookie = client.get_cookie("auth_session")
    gone = app_without_database(app, monkeypatch, tmp_path)
    browser = gone.test_client()
    browser.set_cookie("auth_session", session_cookie.value)
    response = browser.get("/")
    assert_calm_page(response, 503)
