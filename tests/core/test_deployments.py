"""Contract §7, where the service runs (docs/deploy.md).

Deployment (b): under a path of the news site, ``PUBLIC_URL=http://news.test/compte``,
the news site's proxy passing ``/compte/...`` on whole. Every link, redirect, form,
``next``, static URL, cookie path and mail link must keep the prefix; a path outside it
is not the service's. Deployment (c): ``CROSS_SITE_COOKIES``.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from support.articles import GATED_SENTENCE
from support.settings import SECRET
from support.web import ADDRESS, Visitor, assert_calm_page, csrf_token, forms_of, text_of

from auth_service import create_app
from auth_service.config import ConfigurationError

PREFIX = "/compte"
ARTICLE = f"{PREFIX}/articles/train-de-nuit"

pytestmark = pytest.mark.settings(PUBLIC_URL=f"http://news.test{PREFIX}")


class _Links(HTMLParser):
    """Every address a page points the browser at: links, sources, form actions, and
    the hidden ``next`` of its forms."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        """Keep the addresses of one tag."""
        attrs = dict(attrs)
        self.found += [attrs[name] or "" for name in ("href", "src", "action") if name in attrs]
        if tag == "input" and attrs.get("name") == "next":
            self.found.append(attrs.get("value") or "")


def links_of(response) -> list[str]:
    """The addresses in the page of ``response``, bare fragments (``#main``) left out."""
    parser = _Links()
    parser.feed(response.get_data(as_text=True))
    return [link for link in parser.found if not link.startswith("#")]


def under_prefix(address: str) -> bool:
    """Whether ``address`` is a path of the service under the prefix."""
    return address == PREFIX or address.startswith(PREFIX + "/")


def cookies_set(response) -> dict[str, dict[str, str]]:
    """The cookies ``response`` sets (or deletes), by name: their attributes, lower-cased."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        name, *attributes = header.split(";")
        pairs = (attribute.strip().partition("=") for attribute in attributes)
        found[name.split("=", 1)[0]] = {key.lower(): value for key, _, value in pairs}
    return found


def paths_of(response, name: str) -> list[str]:
    """Every path ``response`` sets the cookie ``name`` at (a cookie may have several)."""
    return [
        attributes.strip().partition("=")[2]
        for header in response.headers.getlist("Set-Cookie")
        if header.startswith(f"{name}=")
        for attributes in header.split(";")[1:]
        if attributes.strip().lower().startswith("path=")
    ]


def ask_from_the_wall(browser, email: str = ADDRESS):
    """Fill in the wall of the gated article, as a reader does."""
    [wall] = forms_of(browser.get(ARTICLE), f"{PREFIX}/login")
    data = {name: wall.field(name)["value"] for name in ("csrf_token", "next")}
    return browser.post(wall.action, data={**data, "email": email})


def signed_in(app, browser):
    """``browser`` signed in through the mail's link; the redirect that answered it."""
    assert ask_from_the_wall(browser).status_code == 303
    return browser.get(_path_of(Visitor(app, browser).last_mail().link))


def _path_of(link: str) -> str:
    """The path and query of an absolute link on ``http://news.test``."""
    assert link.startswith("http://news.test/"), link
    return link.removeprefix("http://news.test")


# --- Pages under the prefix ---------------------------------------------------------


@pytest.mark.parametrize("path", [PREFIX, f"{PREFIX}/", f"{PREFIX}/login", ARTICLE])
def test_pages_answer_under_the_prefix(client, articles, path):
    assert_calm_page(client.get(path), 200)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/login"), ("GET", "/articles/train-de-nuit"), ("POST", "/login")],
)
def test_a_path_outside_the_prefix_is_a_calm_not_found(client, articles, method, path):
    """The service answers only under its prefix: elsewhere it is the news site's."""
    response = client.open(path, method=method, data={"email": ADDRESS})
    assert_calm_page(response, 404)
    assert all(under_prefix(link) for link in links_of(response)), links_of(response)


def _login_page(app, client):
    return client.get(f"{PREFIX}/login?next={ARTICLE}")


def _article(app, client):
    return client.get(ARTICLE)


def _front_page(app, client):
    return client.get(f"{PREFIX}/")


def _check_your_email(app, client):
    ask_from_the_wall(client)
    return client.get(f"{PREFIX}/login/sent")


def _confirm_page(app, client):
    ask_from_the_wall(client)
    return app.test_client().get(_path_of(Visitor(app, client).last_mail().link))


def _used_link(app, client):
    ask_from_the_wall(client)
    link = _path_of(Visitor(app, client).last_mail().link)
    client.get(link)
    return client.get(link)


def _account(app, client):
    signed_in(app, client)
    return client.get(f"{PREFIX}/account")


def _article_signed_in(app, client):
    signed_in(app, client)
    return client.get(ARTICLE)


def _in_english(app, client):
    return client.get(f"{ARTICLE}?lang=en")


def _not_found(app, client):
    return client.get(f"{PREFIX}/no/such/page")


def _wrong_method(app, client):
    return client.get(f"{PREFIX}/logout")


def _tampered_link(app, client):
    return client.get(f"{PREFIX}/login/verify?token=tampered")


def _no_csrf_token(app, client):
    return client.post(f"{PREFIX}/login", data={"email": ADDRESS})


PAGES = {
    "login": (_login_page, 200),
    "article": (_article, 200),
    "front page": (_front_page, 200),
    "check your email": (_check_your_email, 200),
    "confirm": (_confirm_page, 200),
    "used link": (_used_link, 410),
    "account": (_account, 200),
    "article signed in": (_article_signed_in, 200),
    "in English": (_in_english, 200),
    "404": (_not_found, 404),
    "405": (_wrong_method, 405),
    "tampered link": (_tampered_link, 400),
    "no CSRF token": (_no_csrf_token, 400),
}


@pytest.mark.parametrize("page", PAGES)
def test_every_address_of_a_page_stays_under_the_prefix(app, client, articles, page):
    """Links, images, the stylesheet, form actions, the language switch and the hidden
    ``next`` of every form."""
    show, status = PAGES[page]
    response = show(app, client)
    assert_calm_page(response, status)
    links = links_of(response)
    assert links
    assert [link for link in links if not under_prefix(link)] == []


@pytest.mark.parametrize("path", [f"{PREFIX}/", ARTICLE])
def test_every_link_of_a_page_leads_somewhere(client, articles, path):
    """The prefixed addresses are served: the stylesheet, the images, the articles, the
    sign-in form and the language switch."""
    for link in links_of(client.get(path)):
        with client.get(link) as response:  # closes the static file it streams
            assert response.status_code in (200, 303), link


def test_language_switch_keeps_the_prefix_and_the_page(client, articles):
    page = client.get(ARTICLE)
    assert f'href="{ARTICLE}?lang=en"' in page.get_data(as_text=True)
    english = client.get(f"{ARTICLE}?lang=en")
    assert cookies_set(english)["lang"]["path"] == PREFIX
    assert "Sign up for free to keep reading" in text_of(client.get(ARTICLE))


def test_wall_sends_this_article_as_next_under_the_prefix(client, articles):
    [wall] = forms_of(client.get(ARTICLE), f"{PREFIX}/login")
    assert wall.field("next")["value"] == ARTICLE
    sign_in_link = f'href="{PREFIX}/login?next={ARTICLE}"'
    assert sign_in_link in client.get(ARTICLE).get_data(as_text=True)


# --- Signing in under the prefix ------------------------------------------------------


def test_whole_journey_ask_link_and_back_to_the_unlocked_article(app, client, articles):
    asked = ask_from_the_wall(client)
    assert asked.status_code == 303
    assert asked.location == f"{PREFIX}/login/sent"
    assert "reader@example.com" in text_of(client.get(asked.location))
    link = Visitor(app, client).last_mail().link
    assert link.startswith(f"http://news.test{PREFIX}/login/verify?token=")
    arrived = client.get(_path_of(link), follow_redirects=True)
    assert [step.location for step in arrived.history] == [ARTICLE]
    assert GATED_SENTENCE in text_of(arrived)


def test_the_code_also_lands_back_on_the_article(app, client, articles):
    ask_from_the_wall(client)
    code = Visitor(app, client).last_mail().code
    token = csrf_token(client, f"{PREFIX}/login/sent")
    arrived = client.post(f"{PREFIX}/login/code", data={"code": code, "csrf_token": token})
    assert arrived.status_code == 303
    assert arrived.location == ARTICLE
    assert GATED_SENTENCE in text_of(client.get(arrived.location))


def test_the_link_opened_in_another_browser_lands_back_on_the_article(
    app, client, browser, articles
):
    ask_from_the_wall(client)
    confirm = browser.get(_path_of(Visitor(app, client).last_mail().link))
    [form] = forms_of(confirm, f"{PREFIX}/login/verify")
    data = {name: form.field(name)["value"] for name in ("csrf_token", "token")}
    arrived = browser.post(form.action, data=data)
    assert arrived.status_code == 303
    assert arrived.location == ARTICLE


def test_account_page_sends_a_signed_out_reader_to_sign_in_and_back(app, client, articles):
    asked = client.get(f"{PREFIX}/account")
    assert asked.status_code == 303
    assert asked.location == f"{PREFIX}/login?next={PREFIX}/account"
    [form] = forms_of(client.get(asked.location), f"{PREFIX}/login")
    assert form.field("next")["value"] == f"{PREFIX}/account"


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/", "", "compte"])
def test_a_next_off_the_site_goes_to_the_front_page_under_the_prefix(client, target):
    page = client.get(f"{PREFIX}/login", query_string={"next": target})
    [form] = forms_of(page, f"{PREFIX}/login")
    assert form.field("next")["value"] == f"{PREFIX}/"


def test_signing_out_goes_to_the_front_page_under_the_prefix(app, client, articles):
    signed_in(app, client)
    token = csrf_token(client, f"{PREFIX}/account")
    out = client.post(f"{PREFIX}/logout", data={"csrf_token": token})
    assert out.location == f"{PREFIX}/"
    assert cookies_set(out)["auth_session"]["path"] == PREFIX


def test_every_cookie_is_scoped_under_the_prefix(app, client, articles):
    """The session, the attempt cookie (only for the sign-in pages), the known-device
    and the language cookies."""
    seen = {}
    seen |= cookies_set(client.get(f"{ARTICLE}?lang=en"))
    asked = ask_from_the_wall(client)
    seen |= cookies_set(asked)
    assert paths_of(asked, "auth_attempts") == [f"{PREFIX}/login", f"{PREFIX}/api/v1/login"]
    seen |= cookies_set(client.get(_path_of(Visitor(app, client).last_mail().link)))
    assert {"lang", "auth_session", "auth_attempts", "auth_known"} <= set(seen)
    for name, attributes in seen.items():
        assert under_prefix(attributes["path"]), (name, attributes)


# --- A proxy that strips the prefix ---------------------------------------------------


@pytest.mark.settings(PROXY_FIX_X_PREFIX=1)
def test_a_trusted_proxy_may_strip_the_prefix_and_say_so(client, articles):
    """``location /compte/ { proxy_pass http://app/; }`` with ``X-Forwarded-Prefix``."""
    page = client.get("/articles/train-de-nuit", headers={"X-Forwarded-Prefix": PREFIX})
    assert_calm_page(page, 200)
    assert all(under_prefix(link) for link in links_of(page)), links_of(page)
    whole = client.get(ARTICLE, headers={"X-Forwarded-Prefix": PREFIX})
    assert_calm_page(whole, 200)


def test_an_untrusted_forwarded_prefix_is_ignored(client, articles):
    page = client.get("/articles/train-de-nuit", headers={"X-Forwarded-Prefix": PREFIX})
    assert_calm_page(page, 404)


def test_a_server_may_mount_the_service_at_the_prefix(app, client, articles):
    """A WSGI server that sets ``SCRIPT_NAME`` itself (gunicorn's ``SCRIPT_NAME``): the
    language switch and the way back after signing in keep the prefix too."""
    mount = f"http://news.test{PREFIX}"
    page = client.get("/articles/train-de-nuit", base_url=mount)
    assert_calm_page(page, 200)
    assert [link for link in links_of(page) if not under_prefix(link)] == []
    [wall] = forms_of(page, f"{PREFIX}/login")
    data = {name: wall.field(name)["value"] for name in ("csrf_token", "next")}
    client.post("/login", data={**data, "email": ADDRESS}, base_url=mount)
    link = _path_of(Visitor(app, client).last_mail().link).removeprefix(PREFIX)
    assert client.get(link, base_url=mount).location == ARTICLE


# --- Settings ------------------------------------------------------------------------


@pytest.mark.settings(PUBLIC_URL="http://news.test")
def test_at_the_root_of_a_host_cookies_keep_their_own_paths(app, client):
    response = Visitor(app, client).ask_for_link(ADDRESS)
    assert paths_of(response, "auth_attempts") == ["/login", "/api/v1/login"]
    arrived = client.get(_path_of(Visitor(app, client).last_mail().link))
    assert cookies_set(arrived)["auth_known"]["path"] == "/"
    assert cookies_set(arrived)["auth_session"]["path"] == "/"


@pytest.mark.parametrize("public_url", ["http://news.test/mon compte", "http://news.test/c?x=1"])
def test_a_public_url_whose_path_cannot_be_served_is_refused(public_url):
    with pytest.raises(ConfigurationError, match="PUBLIC_URL"):
        create_app({"SECRET_KEY": SECRET, "PUBLIC_URL": public_url})


@pytest.mark.settings(PUBLIC_URL="https://auth.elsewhere.test", CROSS_SITE_COOKIES=True)
def test_cross_site_cookies_are_samesite_none_and_secure(app, client):
    """Deployment (c): the news site's pages, on another site, send our cookies."""
    seen = cookies_set(client.get("/login?lang=en"))
    seen |= cookies_set(Visitor(app, client).ask_for_link(ADDRESS))
    assert {"lang", "auth_session", "auth_attempts"} <= set(seen)
    for name, attributes in seen.items():
        assert attributes["samesite"] == "None", name
        assert "secure" in attributes, name


def test_cross_site_cookies_need_an_https_public_url():
    with pytest.raises(ConfigurationError, match="CROSS_SITE_COOKIES needs an https"):
        create_app(
            {"SECRET_KEY": SECRET, "PUBLIC_URL": "http://news.test", "CROSS_SITE_COOKIES": True}
        )
