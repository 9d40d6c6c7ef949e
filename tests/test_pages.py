"""Every route of the contract (docs/contract.md §2) through the test client, as a reader sees it.

Each test drives one or more browsers (Flask test clients, each with its own cookies)
and asserts on what comes back: status, the HTML the reader gets, headers, cookies, and
what the service stored or queued. Hostile input has its own file,
``test_hostile_input.py``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from html import unescape
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from conftest import Visitor, csrf_token
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update

from auth_service.articles.store import import_articles
from auth_service.auth import signin
from auth_service.cli import demo_articles
from auth_service.extensions import db
from auth_service.models import LoginAttempt, NewsletterConsent, OutboxMessage, SignInEvent, utcnow
from auth_service.models import Reader as ReaderAccount

ADDRESS = "reader@example.com"


# --- Browsers ---------------------------------------------------------------------
"""Each request in its own application context, as in production.

The ``app`` fixture keeps one application context pushed for the whole test, and Flask
reuses a pushed context for the requests of the same app. ``g`` would then be shared
by every request of a test, and by every browser: Flask-Login's cached current user,
Flask-WTF's CSRF token and the language would leak from one browser to the next (a
second browser would see the first reader's account). These tests give each request
a fresh context instead.
"""


@pytest.fixture
def browser(app):
    """A second browser: its own cookies, nothing shared with ``client``."""
    return app.test_client()


def in_english(browser):
    """Set the language cookie to English, so messages can be read in one language."""
    browser.set_cookie("lang", "en")
    return browser


def sign_in(app, browser, email=ADDRESS, *, next_url="/", newsletter=False):
    """Sign ``browser`` in with the link of a fresh mail; return the final response."""
    return Visitor(app, browser).sign_in(email, next_url=next_url, newsletter=newsletter)


def is_signed_in(browser) -> bool:
    """Whether the account page opens for ``browser``."""
    return browser.get("/account").status_code == 200


def post_form(browser, path, data, *, page="/login"):
    """Post ``data`` to ``path`` with the CSRF token the form on ``page`` carries."""
    return browser.post(path, data={**data, "csrf_token": csrf_token(browser, page)})


def rows(model, *where) -> list:
    """Rows of ``model`` as the database holds them now."""
    db.session.rollback()  # drop anything this session cached before the requests
    return list(db.session.scalars(select(model).where(*where)))


# --- Reading pages ------------------------------------------------------------------
"""Small readers of the HTML: forms and their fields, errors that must never show."""


@dataclass
class Form:
    """A form of a page: where it goes and its fields' attributes."""

    action: str
    method: str
    inputs: list[dict] = field(default_factory=list)

    def field(self, name: str) -> dict | None:
        """The attributes of the first input named ``name``."""
        return next((attrs for attrs in self.inputs if attrs.get("name") == name), None)


class _FormFinder(HTMLParser):
    """Collects forms and the inputs and buttons inside them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []

    def handle_starttag(self, tag, attrs):
        """Open a form, or add a control to the open one."""
        attrs = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append(Form(attrs.get("action", ""), attrs.get("method", "get").lower()))
        elif tag in {"input", "button", "textarea", "select"} and self.forms:
            self.forms[-1].inputs.append({"tag": tag, **attrs})


def forms_of(response, action: str) -> list[Form]:
    """The forms of the page in ``response`` that are sent to ``action``."""
    finder = _FormFinder()
    finder.feed(response.get_data(as_text=True))
    return [form for form in finder.forms if form.action == action]


def text_of(response) -> str:
    """The page as text, with character references decoded."""
    return unescape(response.get_data(as_text=True))


def assert_calm_page(response, status: int) -> None:
    """An HTML page with ``status`` that shows no stack trace and no SQL."""
    body = response.get_data(as_text=True)
    assert response.status_code == status, (response.status_code, body[:300])
    assert response.mimetype == "text/html"
    assert body.lstrip().startswith("<!doctype html>")
    for leak in ("Traceback", 'File "', "sqlalchemy", "psycopg", "Werkzeug Debugger"):
        assert leak not in body


def query_of(location: str) -> dict:
    """The query parameters of a redirect target."""
    return parse_qs(urlsplit(location).query)


# --- Articles -----------------------------------------------------------------------

OPENING = "Le premier train de nuit depuis dix ans a quitté Port-Ardent hier soir."
GATED_SENTENCE = "Seuls les lecteurs inscrits apprennent que le voyage a duré onze heures."
PUBLIC_SENTENCE = "Cette suite reste lisible par tous les lecteurs du site."
STANDFIRST = "La ligne rouvre après une décennie de silence."
ARTICLES = [
    {
        "slug": "train-de-nuit",
        "title": "Le train de nuit revient",
        "kicker": "Transports",
        "standfirst": STANDFIRST,
        "body_html": f"<p>{OPENING}</p><p>{GATED_SENTENCE}</p><p>Dernier paragraphe.</p>",
        "image": {
            "url": "/static/demo/train-de-nuit.svg",
            "caption": "Un quai de gare",
            "credit": "Photo : Rédaction",
        },
        "tags": ["Rail"],
        "access": "registered",
        "published_at": "2025-01-05T07:00:00Z",
    },
    {
        "slug": "rivieres",
        "title": "Les rivières retrouvent leurs méandres",
        "standfirst": "Une réussite.",
        "body_html": f"<p>Ouverture publique.</p><p>{PUBLIC_SENTENCE}</p>"
        "<script>alert('body')</script>",
        "access": "public",
        "published_at": "2025-01-04T07:00:00Z",
    },
    {
        "slug": "a-venir",
        "title": "Un article programmé pour plus tard",
        "body_html": "<p>Pas encore.</p>",
        "access": "public",
        "published_at": "2099-01-01T07:00:00Z",
    },
]


@pytest.fixture
def articles(app):
    """The test articles, stored the way ``auth-service articles import`` stores them."""
    import_articles(ARTICLES)
    return ARTICLES


# --- Front page and article pages ---------------------------------------------------
"""GET / and GET /articles/<slug>: the list, the wall, the body only for the entitled."""


def test_front_page_lists_published_articles_linking_to_their_pages(client, articles):
    response = client.get("/")
    assert_calm_page(response, 200)
    body = response.get_data(as_text=True)
    assert 'href="/articles/train-de-nuit"' in body
    assert 'href="/articles/rivieres"' in body
    assert "Le train de nuit revient" in body


def test_front_page_hides_articles_scheduled_for_later(client, articles):
    assert "/articles/a-venir" not in client.get("/").get_data(as_text=True)
    assert_calm_page(client.get("/articles/a-venir"), 404)


def test_front_page_lists_the_demo_articles(client, app):
    import_articles(demo_articles())
    body = client.get("/").get_data(as_text=True)
    for article in demo_articles():
        assert f'href="/articles/{article["slug"]}"' in body


def test_signed_out_reader_sees_only_the_opening_and_the_wall(client, articles):
    response = client.get("/articles/train-de-nuit")
    assert_calm_page(response, 200)
    assert GATED_SENTENCE.encode() not in response.data
    assert b"Dernier paragraphe" not in response.data
    assert OPENING in response.get_data(as_text=True)
    assert STANDFIRST in response.get_data(as_text=True)


def test_wall_form_posts_to_login_with_this_article_as_next(client, articles):
    response = client.get("/articles/train-de-nuit")
    [wall] = forms_of(response, "/login")
    assert wall.method == "post"
    assert wall.field("next")["type"] == "hidden"
    assert wall.field("next")["value"] == "/articles/train-de-nuit"
    assert wall.field("email")["type"] == "email"
    assert wall.field("newsletter")["type"] == "checkbox"
    assert wall.field("csrf_token")["value"]


def test_wall_invites_to_sign_up_with_terms_newsletter_and_a_line_for_members(client, articles):
    page = text_of(in_english(client).get("/articles/train-de-nuit"))
    assert "Sign up for free to keep reading" in page
    assert "terms of use" in page
    assert "daily front page newsletter" in page
    assert "Already have an account?" in page


def test_signed_in_reader_sees_the_whole_body_never_cached(app, client, articles):
    sign_in(app, client)
    response = client.get("/articles/train-de-nuit")
    assert_calm_page(response, 200)
    assert GATED_SENTENCE in response.get_data(as_text=True)
    assert forms_of(response, "/login") == []
    assert response.headers["Cache-Control"] == "no-store"


def test_signing_in_from_the_wall_returns_to_the_unlocked_article(app, client, articles):
    wall = forms_of(client.get("/articles/train-de-nuit"), "/login")[0]
    arrived = sign_in(app, client, next_url=wall.field("next")["value"])
    assert arrived.status_code == 303
    assert arrived.location == "/articles/train-de-nuit"
    assert GATED_SENTENCE in client.get(arrived.location).get_data(as_text=True)


def test_public_article_shows_the_whole_body_to_everyone(client, articles):
    response = client.get("/articles/rivieres")
    assert_calm_page(response, 200)
    assert PUBLIC_SENTENCE in response.get_data(as_text=True)
    assert forms_of(response, "/login") == []
    assert b"<script" not in response.data  # sanitised on import


def test_unknown_article_shows_a_not_found_page(client, articles):
    response = client.get("/articles/no-such-article")
    assert_calm_page(response, 404)
    assert "Page not found" in text_of(in_english(client).get("/articles/no-such-article"))


# --- The sign-up-or-sign-in form ----------------------------------------------------
"""GET and POST /login: the form, the inline error, the redirect to "check your email"."""


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
    response = reader.ask_for_link(ADDRESS)
    [cookie] = [
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("auth_attempts=")
    ]
    attributes = {
        part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]
    }
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == "Path=/login"


def test_asking_for_a_link_creates_no_account(reader):
    reader.ask_for_link(ADDRESS, newsletter=True)
    assert rows(ReaderAccount) == []
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


# --- Check your email ---------------------------------------------------------------
"""GET /login/sent: the exact address, the code form, "send again"."""


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


# --- The 6-digit code ---------------------------------------------------------------
"""POST /login/code: the right code signs in; wrong codes cost one of five tries."""


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


# --- The link -----------------------------------------------------------------------
"""GET, HEAD and POST /login/verify: same browser, other browser, used, expired, forged."""


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


# --- Where the reader goes back -----------------------------------------------------
"""``next`` is followed only when it is a path on this site; anything else goes to /."""

LEAVING_THE_SITE = [
    "https://evil.example/",
    "http://evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "https:evil",
    "https:/evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<b>x</b>",
    "%2F%2Fevil.example",
    "https%3A%2F%2Fevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "%00//evil.example",
    "evil.example",
    "articles/x",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("target", LEAVING_THE_SITE, ids=repr)
def test_next_that_leaves_the_site_goes_to_the_front_page(app, client, target):
    response = sign_in(app, client, next_url=target)
    assert response.status_code == 303
    assert response.location == "/"


@pytest.mark.parametrize(
    "target",
    [
        "/articles/x?y=1",
        "/account",
        "/articles/été#suite",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
    ],
    ids=repr,
)
def test_next_on_this_site_is_kept_and_stays_on_the_site(app, client, target):
    response = sign_in(app, client, next_url=target)
    assert response.status_code == 303
    landing = urljoin("http://news.test/articles/here", response.location)
    assert urlsplit(landing).netloc == "news.test"
    if target.isascii():
        assert response.location == target


# --- Sessions -----------------------------------------------------------------------
"""A sign-in rotates the session; a cookie from before it opens nothing."""


def _session_cookie(browser) -> str | None:
    """The value of the browser's session cookie, if it has one."""
    cookie = browser.get_cookie("auth_session")
    return cookie.value if cookie else None


def test_sign_in_gives_the_browser_a_new_session_cookie(app, client):
    client.get("/login")  # the form puts its CSRF secret in the session
    before = _session_cookie(client)
    assert before
    sign_in(app, client)
    assert _session_cookie(client) not in (None, before)


def test_session_cookie_from_before_sign_in_opens_nothing(app, client, browser, articles):
    client.get("/login")
    captured = _session_cookie(client)
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


# --- Signing out --------------------------------------------------------------------
"""POST /logout signs out this browser, and only this one."""


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


# --- The account page ---------------------------------------------------------------
"""GET /account and its three actions: sign out everywhere, export, delete."""


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
    captured = _session_cookie(client)
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
    assert len(rows(ReaderAccount)) == 1 and len(rows(NewsletterConsent)) == 1
    assert is_signed_in(client)


@pytest.mark.parametrize("typed", ["", "reader", "reader@example.co"])
def test_delete_without_the_exact_address_deletes_nothing(app, client, typed):
    sign_in(app, client)
    response = post_form(client, "/account/delete", {"confirm": typed}, page="/account")
    assert response.status_code == 422
    assert len(rows(ReaderAccount)) == 1


def test_delete_removes_the_account_its_data_and_every_session(app, client, browser):
    sign_in(app, client, newsletter=True)
    sign_in(app, browser)
    Visitor(app, app.test_client()).ask_for_link(ADDRESS)  # a link still waiting
    response = post_form(
        client, "/account/delete", {"confirm": "  Reader@EXAMPLE.com "}, page="/account"
    )
    assert response.status_code == 303
    assert response.location == "/"
    assert rows(ReaderAccount) == []
    assert rows(NewsletterConsent) == [] and rows(SignInEvent) == []
    assert rows(LoginAttempt, LoginAttempt.email == ADDRESS) == []
    assert not is_signed_in(client)
    assert not is_signed_in(browser)


def test_delete_leaves_other_readers_alone(app, client, browser):
    sign_in(app, client)
    sign_in(app, browser, "someone.else@example.com", newsletter=True)
    post_form(client, "/account/delete", {"confirm": ADDRESS}, page="/account")
    [left] = rows(ReaderAccount)
    assert left.email == "someone.else@example.com"
    assert len(rows(NewsletterConsent)) == 1
    assert is_signed_in(browser)


def test_signing_in_after_delete_creates_a_fresh_account(app, client):
    sign_in(app, client, newsletter=True)
    [before] = rows(ReaderAccount)
    created, public_id = before.created_at, before.public_id
    post_form(client, "/account/delete", {"confirm": ADDRESS}, page="/account")
    assert sign_in(app, client).status_code == 303
    [after] = rows(ReaderAccount)
    assert after.created_at > created and after.public_id != public_id
    assert rows(NewsletterConsent) == []
    assert len(rows(SignInEvent)) == 1


# --- CSRF ---------------------------------------------------------------------------
"""Every POST without its ``csrf_token`` gets a clear 400 page and changes nothing."""


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
    assert len(rows(ReaderAccount)) == 1
    assert is_signed_in(client)


# --- Languages ----------------------------------------------------------------------
"""French by default; English by ``?lang=``, then the cookie, then Accept-Language."""


def test_pages_are_in_french_by_default(client):
    response = client.get("/login")
    body = response.get_data(as_text=True)
    assert '<html lang="fr">' in body
    assert "S’inscrire ou se connecter" in body
    assert "Sign up or sign in" not in body


def test_lang_parameter_switches_to_english_and_sticks(client):
    response = client.get("/login?lang=en")
    body = response.get_data(as_text=True)
    assert '<html lang="en">' in body and "Sign up or sign in" in body
    cookie = client.get_cookie("lang")
    assert cookie is not None and cookie.value == "en"
    later = client.get("/").get_data(as_text=True)
    assert '<html lang="en">' in later and "Front page" in later


def test_lang_parameter_switches_back_to_french(client):
    client.get("/login?lang=en")
    body = client.get("/login?lang=fr").get_data(as_text=True)
    assert '<html lang="fr">' in body and "S’inscrire ou se connecter" in body
    assert client.get_cookie("lang").value == "fr"


def test_browser_asking_for_english_gets_english(client):
    body = client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(
        as_text=True
    )
    assert '<html lang="en">' in body and "Sign up or sign in" in body


def test_chosen_language_beats_the_browsers_language(client):
    client.get("/?lang=fr")
    body = client.get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="fr">' in body


def test_unknown_language_falls_back_to_french_without_a_cookie(client):
    body = client.get("/login?lang=de").get_data(as_text=True)
    assert '<html lang="fr">' in body
    assert client.get_cookie("lang") is None


def test_check_your_email_is_translated(reader, client):
    reader.ask_for_link(ADDRESS)
    french = text_of(client.get("/login/sent"))
    assert "Nous avons envoyé un e-mail à" in french
    assert "We sent an email to" in text_of(client.get("/login/sent?lang=en"))


def test_mail_is_in_the_language_of_the_page(reader, client, browser):
    reader.ask_for_link(ADDRESS)
    assert reader.last_mail().subject == "Votre lien de connexion pour Le Quotidien"
    reader.ask_for_link(ADDRESS, client=in_english(browser))
    assert reader.last_mail().subject == "Your sign-in link for Le Quotidien"


def test_error_pages_are_translated(client, browser):
    assert "Page introuvable" in text_of(client.get("/nowhere"))
    assert "Page not found" in text_of(in_english(browser).get("/nowhere"))


# --- Health and error pages ---------------------------------------------------------
"""/healthz, and the 404, 405 and 413 pages: HTML, calm, no stack trace."""


def test_health_check_answers_json(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    assert response.get_json()["status"] == "ok"


def test_unknown_page_is_a_404_page(client):
    assert_calm_page(client.get("/no/such/page"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/logout"),
        ("GET", "/login/code"),
        ("GET", "/account/delete"),
        ("GET", "/account/sign-out-everywhere"),
        ("PUT", "/login"),
        ("DELETE", "/account"),
        ("POST", "/healthz"),
        ("POST", "/"),
    ],
)
def test_wrong_method_is_a_405_page(client, method, path):
    response = in_english(client).open(path, method=method)
    assert_calm_page(response, 405)
    assert "Not allowed" in text_of(response)


def test_wrong_method_page_says_which_methods_are_allowed(client):
    response = client.get("/logout")
    assert response.status_code == 405
    assert "POST" in response.headers.get("Allow", "")  # RFC 9110: a 405 names them


def test_too_large_form_is_a_413_page_and_sends_nothing(client):
    token = csrf_token(in_english(client))
    response = client.post(
        "/login", data={"email": "x" * 70_000 + "@example.com", "csrf_token": token}
    )
    assert_calm_page(response, 413)
    assert "Too much data" in text_of(response)
    assert rows(OutboxMessage) == []


@pytest.mark.parametrize("path", ["/", "/login", "/articles/nope", "/healthz"])
def test_every_response_has_the_protective_headers(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
