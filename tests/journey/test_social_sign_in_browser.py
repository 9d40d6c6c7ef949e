"""Social sign-in in a real browser against a real OpenID Connect provider.

The provider is the npm package ``oidc-provider`` run by tests/node/provider.mjs on
127.0.0.1 (support.oidc_provider); it requires PKCE with S256, so every sign-in here
also proves the service sends it. The service runs on a real threaded HTTP server;
Debian's Chromium clicks the button on the wall, logs in at the provider and comes
back. Nothing is mocked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from support.chromium import chromium, snap
from support.in_process import app_at, served
from support.network import free_port
from support.oidc_provider import start_provider

from auth_service.cli import demo_articles
from auth_service.extensions import db
from auth_service.models import NewsletterConsent, Reader, SignInEvent

pytestmark = pytest.mark.browser
__all__ = ["chromium"]

GATED = next(item for item in demo_articles() if item["access"] == "registered")
ARTICLE_PATH = f"/articles/{GATED['slug']}"
ACCOUNTS = {
    "alice": {"email": "alice@example.org", "email_verified": True, "name": "Alice"},
    "bob": {"email": "bob@example.org", "email_verified": False, "name": "Bob"},
}


@pytest.fixture
def live_port() -> int:
    return free_port()


@pytest.fixture
def provider(live_port, tmp_path):
    """oidc-provider with one client per way of answering: query and form_post."""
    callbacks = {
        name: f"http://127.0.0.1:{live_port}/login/with/{name}/callback"
        for name in ("idp", "idppost")
    }
    started = start_provider(
        {
            "clients": [
                {
                    "client_id": "news-site",
                    "client_secret": "a-client-secret-of-the-tests",
                    "redirect_uris": list(callbacks.values()),
                }
            ],
            "accounts": ACCOUNTS,
        },
        log_dir=tmp_path / "provider",
    )
    yield started
    started.stop()


@pytest.fixture
def app(database_url, provider, live_port, tmp_path):
    """The service, public at the live server's address, with both providers."""
    client = {"client_id": "news-site", "client_secret": "a-client-secret-of-the-tests"}
    providers = {
        "idp": {"issuer": provider.issuer, "label": "Identité test", **client},
        "idppost": {
            "issuer": provider.issuer,
            "label": "Identité POST",
            "response_mode": "form_post",
            **client,
        },
    }
    with app_at(
        database_url, live_port, tmp_path, demo_articles(), OIDC_PROVIDERS=providers
    ) as application:
        yield application


@pytest.fixture
def live_server(app, live_port):
    with served(app, live_port) as url:
        yield url


@pytest.fixture
def open_page(chromium):
    contexts = []

    def open_one(**options) -> Page:
        context = chromium.new_context(**{"locale": "fr-FR", **options})
        contexts.append(context)
        return context.new_page()

    yield open_one
    for context in contexts:
        context.close()


def press_button(page: Page, server: str, label: str, *, newsletter: bool = False) -> None:
    """On the gated article, signed out: tick the box if asked and press the button."""
    page.goto(server + ARTICLE_PATH)
    wall = page.locator("section.wall")
    if newsletter:
        wall.locator("input[name=newsletter]").check()
    wall.get_by_role("button", name=f"Se connecter avec {label}").click()


def log_in_at_provider(page: Page, login: str) -> None:
    """The provider's own login page: one field, one button."""
    expect(page.locator("form#login-form")).to_be_visible()
    page.locator("#login").fill(login)
    page.locator("#login-submit").click()


def assert_unlocked(page: Page, server: str) -> None:
    expect(page).to_have_url(server + ARTICLE_PATH)
    expect(page.locator("section.wall")).to_have_count(0)
    expect(page.locator(".article__body p").nth(1)).to_be_visible()


def test_reader_signs_in_with_a_provider_in_two_clicks_and_reads_the_article(
    open_page, live_server
):
    page = open_page()
    press_button(page, live_server, "Identité test", newsletter=True)  # click one
    snap(page, "social-provider-login.png")
    log_in_at_provider(page, "alice")  # click two
    assert_unlocked(page, live_server)
    snap(page, "social-unlocked.png")
    reader = db.session.scalar(select(Reader))
    assert reader.email == "alice@example.org"
    assert db.session.scalar(select(SignInEvent.method)) == "idp"
    (consent,) = db.session.scalars(select(NewsletterConsent)).all()
    assert consent.source == ARTICLE_PATH


def test_the_round_trip_works_with_javascript_off(open_page, live_server):
    page = open_page(java_script_enabled=False)
    press_button(page, live_server, "Identité test")
    log_in_at_provider(page, "alice")
    assert_unlocked(page, live_server)


def test_a_provider_answering_by_form_post_signs_in_too(open_page, live_server):
    # Apple's way: the provider's page POSTs the code across sites, without the
    # SameSite=Lax session cookie; the service turns it into a GET that carries it.
    page = open_page()
    press_button(page, live_server, "Identité POST")
    log_in_at_provider(page, "alice")
    assert_unlocked(page, live_server)


def test_an_existing_reader_signs_in_to_the_same_account(open_page, live_server):
    db.session.add(Reader(email="alice@example.org", locale="fr"))
    db.session.commit()
    page = open_page()
    press_button(page, live_server, "Identité test")
    log_in_at_provider(page, "alice")
    assert_unlocked(page, live_server)
    assert len(db.session.scalars(select(Reader)).all()) == 1


def test_an_unverified_address_gets_a_clear_page_in_french(open_page, live_server):
    page = open_page()
    press_button(page, live_server, "Identité test")
    log_in_at_provider(page, "bob")
    expect(page.locator("h1")).to_have_text(re.compile("n’a pas vérifié votre adresse"))
    expect(page.get_by_role("link", name="Retour à la connexion")).to_be_visible()
    assert db.session.scalar(select(Reader)) is None


def test_a_reader_who_cancels_at_the_provider_gets_back_to_the_form(open_page, live_server):
    page = open_page()
    press_button(page, live_server, "Identité test")
    page.locator("a#cancel").click()
    expect(page.locator("h1")).to_have_text(re.compile("annulée"))
    page.get_by_role("link", name="Retour à la connexion").click()
    expect(page.locator("input[name=next]")).to_have_value(ARTICLE_PATH)


def test_the_buttons_are_announced_with_their_words(open_page, live_server):
    page = open_page()
    page.goto(live_server + "/login")
    group = page.get_by_role("group", name=re.compile("compte que vous avez déjà"))
    expect(group.get_by_role("button")).to_have_count(2)


AXE = Path(__file__).resolve().parents[1] / "node" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.mark.parametrize("locale", ["fr-FR", "en-GB"])
@pytest.mark.parametrize("path", ["/login", ARTICLE_PATH])
def test_axe_finds_nothing_on_the_pages_with_buttons(open_page, live_server, locale, path):
    page = open_page(locale=locale, bypass_csp=True)  # to load axe itself into the page
    page.goto(live_server + path)
    expect(page.locator(".social-button")).to_have_count(2)
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "(tags) => axe.run({runOnly: {type: 'tag', values: tags}}).then((r) =>"
        " r.violations.map((v) => v.id + ': ' + v.nodes.map((n) => n.target).join(' ')))",
        WCAG_AA,
    )
    assert found == []
