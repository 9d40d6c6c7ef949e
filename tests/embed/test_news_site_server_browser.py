"""The news site's own server renders the body for a registered reader (contract §8), in a
real browser.

The example's ``verify_server.py`` (standard library and PyJWT, no code of ours) serves
the article at ``http://www.news.test:<port>``; the service runs under gunicorn at
``http://auth.news.test:<port>`` and sets the entitlement cookie on ``news.test``; Debian's
Chromium resolves both names to 127.0.0.1. A signed-out reader gets the opening and the
wall from the site's server; once signed in through the wall, the site's server sends the
whole body itself, across a rotation of the service's key, until the reader signs out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from playwright.sync_api import BrowserContext, Page, Response, expect
from support.chromium import DESKTOP, chromium, snap
from support.live import LiveServer, start_gunicorn, stop_gunicorn, wait_until
from support.network import free_port
from support.news_site import (
    ARTICLE,
    GATED_WORDS,
    example_module,
    import_demo_articles,
    paragraphs,
    start_example_server,
)
from support.settings import REPOSITORY, SECRET

pytestmark = pytest.mark.browser
# The shared browser fixture, imported so that pytest finds it in this module.
__all__ = ["chromium"]

DOMAIN = "news.test"
AUDIENCE = "la-gazette-du-val"
COOKIE = "reader_access"
JWKS_REQUEST = '"GET /.well-known/jwks.json '  # in gunicorn's access log


@dataclass
class NewsSite:
    """The service (gunicorn) and the news site's own server, as the browser sees them."""

    service: LiveServer
    service_url: str
    site_url: str
    site_port: int
    database_url: str
    folder: Path

    @property
    def article(self) -> str:
        return f"{self.site_url}/article.html"

    def jwks_fetches(self) -> int:
        """How many times the news site's server has fetched the service's keys."""
        return self.service.log_text().count(JWKS_REQUEST)

    def rotate_keys(self) -> str:
        """``auth-service keys rotate``, as an operator runs it; its output."""
        environment = {
            **{key: value for key, value in os.environ.items() if key != "FLASK_APP"},
            "AUTH_SERVICE_SECRET_KEY": SECRET,
            "AUTH_SERVICE_SQLALCHEMY_DATABASE_URI": self.database_url,
            "AUTH_SERVICE_PUBLIC_URL": self.service_url,
            "AUTH_SERVICE_INSTANCE_PATH": str(self.folder / "instance"),
        }
        command = [str(Path(sys.executable).parent / "auth-service"), "keys", "rotate"]
        result = subprocess.run(
            command, env=environment, cwd=REPOSITORY, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture
def news_site(database_url, tmp_path, request):
    """The service with the entitlement cookie on news.test, and verify_server.py."""
    service_port, site_port = free_port(), free_port()
    service_url = f"http://auth.{DOMAIN}:{service_port}"
    site_url = f"http://www.{DOMAIN}:{site_port}"
    import_demo_articles(database_url)
    settings = {
        "PUBLIC_URL": service_url,
        "ALLOWED_ORIGINS": site_url,
        "ENTITLEMENT_COOKIE_DOMAIN": DOMAIN,
        "ENTITLEMENT_AUDIENCE": AUDIENCE,
    }
    service = start_gunicorn(database_url, tmp_path, settings, port=service_port)
    log = tmp_path / "news-site.log"
    try:
        # The site's server reaches the service's keys at 127.0.0.1, where it listens
        # (the news.test names resolve to it in Chromium only).
        jwks_url = f"http://127.0.0.1:{service_port}/.well-known/jwks.json"
        arguments = ["--service", service_url, "--audience", AUDIENCE, "--jwks-url", jwks_url]
        site = start_example_server("verify_server.py", site_port, arguments, log)
    except BaseException:
        stop_gunicorn(service)
        raise
    failed_before = request.session.testsfailed
    yield NewsSite(service, service_url, site_url, site_port, database_url, tmp_path)
    site.terminate()
    site.wait(timeout=10)
    stop_gunicorn(service)
    if request.session.testsfailed > failed_before:
        print(f"--- gunicorn log ---\n{service.log_text()}")
        print(f"--- news site log ---\n{log.read_text()}")


# --- What the reader does and sees ----------------------------------------------------------


def open_browser(chromium, errors: list[str]) -> tuple[BrowserContext, Page]:
    """A fresh browser of a reader (own cookies); its page's errors go to ``errors``."""
    context = chromium.new_context(locale="fr-FR", viewport=DESKTOP)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    return context, page


def meet_the_wall(page: Page, news_site: NewsSite) -> Response:
    """Open the article signed out: the site's server sends the opening and the wall's
    element, never the rest; the wall appears. Returns the server's answer."""
    served = page.goto(news_site.article)
    page_html = served.text()
    assert GATED_WORDS not in page_html
    assert "data-paywall data-article" in page_html
    assert f'<script src="{news_site.service_url}/embed/paywall.js" defer>' in page_html
    expect(page.locator("#pw-email")).to_be_visible()
    expect(page.locator(".article__body > p")).to_have_count(1)
    assert GATED_WORDS not in page.content()
    return served


def sign_in_at_the_wall(page: Page, news_site: NewsSite, address: str) -> None:
    """Sign up in the wall with the code the service mailed; the script unlocks the page."""
    page.locator("#pw-email").fill(address)
    page.locator(".paywall__form button[type=submit]").click()
    expect(page.locator("#pw-sent-title")).to_be_visible()
    [mail] = news_site.service.mails_to(address)
    page.locator("#pw-code").fill(mail.code)
    page.locator(".paywall__sent button[type=submit]").click()
    expect(page.locator(".article__body > p").nth(1)).to_contain_text(GATED_WORDS)


def assert_body_from_the_sites_server(page: Page) -> None:
    """Reload: the site's own server sends the whole body in its HTML; no wall, no script."""
    served = page.reload()
    page_html = served.text()
    assert GATED_WORDS in page_html, "the site's server did not render the body"
    assert '<div class="article__body">' in page_html
    assert "data-paywall data-article" not in page_html and "/embed/paywall.js" not in page_html
    assert served.headers["cache-control"] == "private, no-cache"
    expect(page.locator(".article__body > p")).to_have_count(len(paragraphs(ARTICLE)))
    expect(page.locator(".article__body > p").nth(1)).to_contain_text(GATED_WORDS)
    expect(page.locator("#pw-email")).to_have_count(0)


def entitlement_token(context: BrowserContext) -> str | None:
    """The entitlement cookie the browser holds for news.test, if any."""
    found = [cookie for cookie in context.cookies() if cookie["name"] == COOKIE]
    if not found:
        return None
    [cookie] = found
    assert cookie["domain"] == f".{DOMAIN}" and cookie["httpOnly"], cookie
    return cookie["value"]


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def sign_out_from_the_page(page: Page, news_site: NewsSite) -> None:
    """What a sign-out button of the site's page does: POST /api/v1/logout, credentials."""
    status = page.evaluate(
        """async (service) => (await fetch(service + "/api/v1/logout", {
             method: "POST", credentials: "include",
             headers: {"Content-Type": "application/json"}, body: "{}"})).status""",
        news_site.service_url,
    )
    assert status == 204


def html_for(news_site: NewsSite, token: str) -> str:
    """The article as the site's server sends it to a request carrying ``token`` (at
    127.0.0.1: only Chromium resolves the news.test names)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{news_site.site_port}/article.html",
        headers={"Cookie": f"{COOKIE}={token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


# --- The journey ---------------------------------------------------------------------------------


def test_the_news_sites_server_renders_the_body_for_signed_in_readers_only(chromium, news_site):
    serve = example_module("serve")
    errors: list[str] = []
    first, page = open_browser(chromium, errors)
    try:
        signed_out = meet_the_wall(page, news_site)
        signed_out_html = signed_out.text()
        assert news_site.jwks_fetches() == 0  # no token: nothing to check
        assert signed_out.headers["content-security-policy"] == serve.content_security_policy(
            news_site.service_url
        )
        snap(page, "news-site-server-wall.png")

        sign_in_at_the_wall(page, news_site, "lectrice@example.com")
        first_token = entitlement_token(first)
        assert first_token, "the service set no entitlement cookie on news.test"
        assert_body_from_the_sites_server(page)
        assert news_site.jwks_fetches() == 1
        # The English edition's page: rendered by the same server for the same cookie.
        snap(page, "news-site-server-body.png")
        english = page.goto(f"{news_site.site_url}/article-en.html").text()
        assert GATED_WORDS in english and '<html lang="en">' in english
        page.goto(news_site.article)

        # The service rotates its key: a new reader's token names a kid the site's server
        # has not seen; it fetches the keys again, once, and renders the body.
        output = news_site.rotate_keys()
        second, other_page = open_browser(chromium, errors)
        try:
            meet_the_wall(other_page, news_site)
            sign_in_at_the_wall(other_page, news_site, "lecteur@example.com")
            second_token = entitlement_token(second)
            assert kid_of(second_token) != kid_of(first_token)
            assert kid_of(second_token) in output
            assert_body_from_the_sites_server(other_page)
            wait_until(lambda: news_site.jwks_fetches() == 2, "the refetch of the keys")
        finally:
            second.close()

        # The first reader's token, signed with the old key, still opens the body.
        assert_body_from_the_sites_server(page)
        assert entitlement_token(first) == first_token
        assert news_site.jwks_fetches() == 2

        sign_out_from_the_page(page, news_site)
        assert entitlement_token(first) is None  # the service cleared the cookie
        page.reload()
        expect(page.locator("#pw-email")).to_be_visible()
        assert GATED_WORDS not in page.content()
        assert page.reload().text() == signed_out_html
        # A token handed out before stays valid until it expires (README.md says so).
        assert GATED_WORDS in html_for(news_site, first_token)
        assert errors == []
    finally:
        first.close()
