"""The wall inside a news site's page (docs/contract.md §7, docs/embed.md), in a real browser.

The example site of ``examples/news-site`` is served by its own ``serve.py`` at
``http://www.news.test:<port>`` with its strict Content-Security-Policy; the service runs
under gunicorn at ``http://auth.news.test:<port>``; Debian's Chromium resolves both names
to 127.0.0.1. The reader meets the wall in the site's page, signs up with the code or the
link of the mail the service queued, and reads the article in the site's page. Every test
fails on a CSP violation, a page error or a console error. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect
from support.chromium import DESKTOP, PHONE, chromium, snap
from support.live import LiveServer, start_gunicorn, stop_gunicorn
from support.network import free_port
from support.news_site import (
    ARTICLE,
    GATED_WORDS,
    SLUG,
    import_demo_articles,
    paragraphs,
    serve_example_site,
)
from support.oidc_provider import start_provider

pytestmark = pytest.mark.browser
# The shared browser fixture, imported so that pytest finds it in this module.
__all__ = ["chromium"]

EXPECTED_API_ANSWER = re.compile(r"Failed to load resource: .* status of 4\d\d ")


# Run before any script of the page: what the tests read back. (Playwright injects it
# through the DevTools protocol, which the page's CSP does not govern.)
RECORDER = """
window.dataLayer = [];
window.recorded = {violations: [], events: []};
document.addEventListener("securitypolicyviolation", (event) => {
  window.recorded.violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
for (const name of ["ready", "wall-shown", "link-requested", "signed-in", "unlocked", "error"]) {
  document.addEventListener("paywall:" + name, (event) => {
    window.recorded.events.push({type: event.type, detail: event.detail,
                                 fromWall: event.target.matches("[data-paywall]")});
  });
}
"""


# --- The two sites ------------------------------------------------------------------------


@dataclass
class Sites:
    """The service (gunicorn, with its database) and the news site, as the browser sees them."""

    service: LiveServer
    service_url: str
    site_url: str

    @property
    def article(self) -> str:
        """The news site's page of the gated article."""
        return f"{self.site_url}/article.html"

    @property
    def article_en(self) -> str:
        """The same article in the site's English edition."""
        return f"{self.site_url}/article-en.html"


@pytest.fixture
def service_port() -> int:
    """The service's port, chosen before it starts (a provider must know its callback)."""
    return free_port()


@pytest.fixture
def sites(database_url, tmp_path, request, service_port):
    """The service at http://auth.news.test:<port> and the site at http://www.news.test:<port>.

    ``@pytest.mark.live_settings(KEY=value)`` adds settings of the service.
    """
    site_port = free_port()
    service_url = f"http://auth.news.test:{service_port}"
    site_url = f"http://www.news.test:{site_port}"
    import_demo_articles(database_url)
    marker = request.node.get_closest_marker("live_settings")
    settings = {"PUBLIC_URL": service_url, "ALLOWED_ORIGINS": site_url}
    service = start_gunicorn(
        database_url, tmp_path, {**settings, **(marker.kwargs if marker else {})}, port=service_port
    )
    try:
        site = serve_example_site(site_port, service_url, tmp_path / "news-site.log")
    except BaseException:
        stop_gunicorn(service)
        raise
    failed_before = request.session.testsfailed
    yield Sites(service, service_url, site_url)
    site.terminate()
    site.wait(timeout=10)
    stop_gunicorn(service)
    if request.session.testsfailed > failed_before:
        print(f"--- gunicorn log ---\n{service.log_text()}")
        print(f"--- news site log ---\n{(tmp_path / 'news-site.log').read_text()}")


class Reader:
    """One reader's browser (own cookies), and what went wrong in the news site's pages."""

    def __init__(self, context, site_url: str):
        self.context = context
        self.site_url = site_url
        self.page = context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", self._console)

    def _console(self, message) -> None:
        """Every console error (a CSP refusal is one) is a problem, but for the line
        Chromium writes for each API answer of 4xx: those are answers the wall shows."""
        if message.type != "error" or not self.page.url.startswith(self.site_url):
            return  # the service's own pages (the confirm page) are tested elsewhere
        url = message.location.get("url", "")
        if "/api/v1/" in url and EXPECTED_API_ANSWER.match(message.text):
            return
        self.problems.append(f"console: {message.text} ({url})")

    def violations(self) -> list[str]:
        """The CSP violations of the current page, as its listener recorded them."""
        return self.page.evaluate("() => window.recorded.violations")

    def events(self) -> list[dict]:
        """The paywall:* events of the current page, in order."""
        return self.page.evaluate("() => window.recorded.events")

    def event_types(self) -> list[str]:
        return [event["type"] for event in self.events()]

    def data_layer(self) -> list[dict]:
        return self.page.evaluate("() => window.dataLayer")

    def assert_clean(self) -> None:
        """No CSP violation, page error or console error so far."""
        assert self.page.evaluate("() => Array.isArray(window.recorded.violations)")
        assert self.violations() == [] and self.problems == [], (self.violations(), self.problems)


@pytest.fixture
def open_reader(chromium, sites):
    """Open a fresh browser (own cookies) of a reader; French unless told otherwise."""
    readers = []

    def open_one(locale: str = "fr-FR", **options) -> Reader:
        context = chromium.new_context(locale=locale, **{"viewport": DESKTOP, **options})
        context.add_init_script(RECORDER)
        reader = Reader(context, sites.site_url)
        readers.append(reader)
        return reader

    yield open_one
    for reader in readers:
        reader.context.close()


# --- What the reader does and sees --------------------------------------------------------


def focused_id(page: Page) -> str:
    """The id of the element with focus, inside the wall's shadow root if it is there."""
    return page.evaluate(
        """() => { let active = document.activeElement;
            while (active && active.shadowRoot && active.shadowRoot.activeElement) {
              active = active.shadowRoot.activeElement; }
            return active ? active.id : null; }"""
    )


def meet_the_wall(page: Page, url: str) -> str:
    """Open the site's article page signed out: its opening, then the wall, not the body.

    Returns the page's Content-Security-Policy.
    """
    policy = page.goto(url).headers["content-security-policy"]
    expect(page.locator("#pw-email")).to_be_visible()
    expect(page.locator(".article__body > p")).to_have_count(1)  # the site's own opening
    expect(page.locator(".article__body > p")).to_contain_text(paragraphs(ARTICLE)[0][:60])
    assert GATED_WORDS not in page.content(), "the gated body reached the page"
    return policy


def ask_for_link(page: Page, address: str, *, newsletter: bool = False) -> None:
    """Fill the wall's form and reach "check your email", naming the address."""
    page.locator("#pw-email").fill(address)
    if newsletter:
        page.locator("#pw-newsletter").check()
    page.locator(".paywall__form button[type=submit]").click()
    expect(page.locator("#pw-sent-title")).to_be_visible()
    expect(page.locator(".paywall__address")).to_have_text(address)


def assert_unlocked(page: Page) -> None:
    """The whole body is in the site's page (light DOM), once, where the opening was."""
    second = page.locator(".article__body > p").nth(1)
    expect(second).to_contain_text(GATED_WORDS)
    expect(page.locator(".article__body > p")).to_have_count(len(paragraphs(ARTICLE)))
    expect(page.locator("#pw-email")).to_have_count(0)
    assert GATED_WORDS in page.content()  # light DOM: the site's styles apply to it


def fits_width(page: Page) -> bool:
    """Whether the page fits the width of the window (no horizontal scrolling)."""
    return page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"
        " && document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


# --- The journey ---------------------------------------------------------------------------


def test_reader_signs_up_in_the_news_site_page_with_the_mailed_code(open_reader, sites):
    reader = open_reader()
    page = reader.page
    policy = meet_the_wall(page, sites.article)
    # The strict policy of a news site: the service's origin, nothing inline, no eval.
    assert f"script-src {sites.service_url};" in policy
    assert f"connect-src {sites.service_url};" in policy
    assert f"style-src 'self' {sites.service_url};" in policy
    assert "require-trusted-types-for 'script'" in policy and "unsafe" not in policy
    expect(page.locator("#pw-title")).to_have_text(
        "Inscrivez-vous gratuitement pour continuer à lire"
    )
    expect(page.locator("label[for=pw-email]")).to_have_text("Adresse e-mail")
    expect(page.locator("#pw-newsletter")).not_to_be_checked()
    consent_label = page.locator("label[for=pw-newsletter]").text_content()
    assert reader.event_types() == ["paywall:ready", "paywall:wall-shown"]
    snap(page, "embed-wall-fr-desktop.png")

    # A bad address: the service's message, tied to the field, and the focus on it.
    page.locator("#pw-email").fill("lectrice@")
    page.locator(".paywall__form button[type=submit]").click()
    error = page.locator("#pw-email-error")
    expect(error).to_contain_text("example@domain.com")
    expect(error).to_contain_text("adresse")  # in French, as the widget asked
    assert focused_id(page) == "pw-email-error"
    field = page.locator("#pw-email")
    expect(field).to_have_attribute("aria-invalid", "true")
    assert "pw-email-error" in field.get_attribute("aria-describedby").split()
    assert reader.events()[-1]["detail"] == {
        "article": SLUG,
        "code": "invalid_email",
        "status": 422,
    }
    assert sites.service.mails_to("lectrice@") == []
    snap(page, "embed-error-fr-desktop.png")

    ask_for_link(page, "lectrice@example.com", newsletter=True)
    assert focused_id(page) == "pw-sent-title"
    code = page.locator("#pw-code")
    expect(code).to_have_attribute("inputmode", "numeric")
    expect(code).to_have_attribute("autocomplete", "one-time-code")
    expect(page.locator(".paywall-live")).to_contain_text("lectrice@example.com")
    [mail] = sites.service.mails_to("lectrice@example.com")
    snap(page, "embed-check-email-fr-desktop.png")

    wrong = "000000" if mail.code != "000000" else "111111"
    code.fill(wrong)
    page.locator(".paywall__sent button[type=submit]").click()
    expect(page.locator("#pw-code-error")).to_contain_text("4 essais")
    assert focused_id(page) == "pw-code-error"
    expect(page.locator("#pw-code")).to_have_attribute("aria-describedby", "pw-code-error")

    page.locator("#pw-code").fill(mail.code)
    page.locator(".paywall__sent button[type=submit]").click()
    assert_unlocked(page)
    expect(page.locator(".paywall__signed-in")).to_contain_text("lectrice@example.com")
    assert reader.event_types()[-2:] == ["paywall:signed-in", "paywall:unlocked"]
    assert [entry["event"] for entry in reader.data_layer()] == reader.event_types()
    assert "lectrice@example.com" not in str(reader.data_layer())  # no address to analytics
    snap(page, "embed-unlocked-fr-desktop.png")

    # The consent recorded is, to the character, the wording the reader saw in the wall.
    [(wording,)] = sites.service.rows(
        "SELECT wording FROM newsletter_consents JOIN readers "
        "ON readers.id = newsletter_consents.reader_id WHERE readers.email = :address",
        address="lectrice@example.com",
    )
    assert wording == consent_label

    page.reload()  # signed in now: the page gets the body straight away
    assert_unlocked(page)
    expect(page.locator(".paywall-ui")).to_have_count(0)
    reader.assert_clean()


def test_reader_opens_the_mailed_link_and_lands_back_on_the_news_site_article(open_reader, sites):
    reader = open_reader()
    page = reader.page
    meet_the_wall(page, sites.article)
    ask_for_link(page, "lecteur@example.com")
    [mail] = sites.service.mails_to("lecteur@example.com")
    assert mail.link.startswith(f"{sites.service_url}/login/verify?token=")

    page.goto(mail.link)  # the browser that asked: signed in at once, and sent back
    expect(page).to_have_url(sites.article)
    assert_unlocked(page)
    assert reader.event_types() == ["paywall:ready", "paywall:unlocked"]
    reader.assert_clean()


def test_link_opened_in_another_browser_signs_it_in_after_the_confirm_button(open_reader, sites):
    asking = open_reader()
    meet_the_wall(asking.page, sites.article)
    ask_for_link(asking.page, "lectrice@example.com")
    [mail] = sites.service.mails_to("lectrice@example.com")

    other = open_reader()  # e.g. the mail app's own browser
    other.page.goto(mail.link)
    other.page.locator("form[action$='/login/verify'] button[type=submit]").click()
    expect(other.page).to_have_url(sites.article)
    assert_unlocked(other.page)
    other.assert_clean()
    asking.assert_clean()


def test_a_likely_typo_offers_the_correction_and_send_again_says_so(open_reader, sites):
    reader = open_reader()
    page = reader.page
    meet_the_wall(page, sites.article)
    page.locator("#pw-email").fill("lea@yahou.fr")
    page.locator(".paywall__form button[type=submit]").click()
    expect(page.locator("#pw-email-error")).to_contain_text("lea@yahoo.fr")
    assert focused_id(page) == "pw-email-error"
    expect(page.locator("#pw-email-error button")).to_have_text(
        ["Oui, utiliser lea@yahoo.fr", "Non, utiliser lea@yahou.fr telle quelle"]
    )
    page.locator("#pw-email-error button").first.click()
    expect(page.locator(".paywall__address")).to_have_text("lea@yahoo.fr")
    assert len(sites.service.mails_to("lea@yahoo.fr")) == 1

    page.get_by_role("button", name="Renvoyer l’e-mail").click()
    expect(page.locator("#pw-resent")).to_contain_text("lea@yahoo.fr")
    expect(page.locator(".paywall-live")).to_contain_text("renvoyé")
    assert len(sites.service.mails_to("lea@yahoo.fr")) == 2
    assert reader.events()[-1]["detail"] == {"article": SLUG, "resent": True}

    page.get_by_role("button", name="Utiliser une autre adresse").click()
    expect(page.locator("#pw-email")).to_have_value("lea@yahoo.fr")
    page.locator("#pw-email").fill("lea@yahou.fr")
    page.locator(".paywall__form button[type=submit]").click()
    page.locator("#pw-email-error button").nth(1).click()  # as typed, after all
    expect(page.locator(".paywall__address")).to_have_text("lea@yahou.fr")
    reader.assert_clean()


def test_too_many_wrong_codes_bring_the_form_back_with_the_reason(open_reader, sites):
    reader = open_reader(locale="en-GB")
    page = reader.page
    meet_the_wall(page, sites.article_en)
    ask_for_link(page, "reader@example.com")
    [mail] = sites.service.mails_to("reader@example.com")
    wrong = "000000" if mail.code != "000000" else "111111"

    def enter(code: str) -> None:
        page.locator("#pw-code").fill(code)
        with page.expect_response(lambda answer: answer.url.endswith("/login/code")):
            page.locator(".paywall__sent button[type=submit]").click()

    for left in ("4 tries", "3 tries", "2 tries", "1 try"):
        enter(wrong)
        expect(page.locator("#pw-code-error")).to_contain_text(f"You have {left} left.")
    enter(wrong)  # the last try: the attempt dies, and the form comes back
    alert = page.locator("#pw-alert")
    expect(alert).to_contain_text("Too many wrong codes")
    assert focused_id(page) == "pw-alert"
    expect(page.locator("#pw-email")).to_have_value("reader@example.com")
    reader.assert_clean()


@pytest.mark.live_settings(RATELIMIT_ENABLED="true", LOGIN_LIMIT_PER_IP="1 per 5 minutes")
def test_a_refusal_for_too_many_requests_is_said_calmly(open_reader, sites):
    reader = open_reader(locale="en-GB")
    page = reader.page
    meet_the_wall(page, sites.article_en)
    ask_for_link(page, "first@example.com")
    page.get_by_role("button", name="Use another address").click()
    page.locator("#pw-email").fill("second@example.com")
    page.locator(".paywall__form button[type=submit]").click()
    expect(page.locator("#pw-alert")).to_contain_text("try again")
    assert focused_id(page) == "pw-alert"
    assert reader.events()[-1]["detail"] == {"article": SLUG, "code": "rate_limited", "status": 429}
    reader.assert_clean()


def test_the_network_failing_gives_a_calm_message_and_the_form_stays(open_reader, sites):
    reader = open_reader()
    page = reader.page
    meet_the_wall(page, sites.article)
    page.route(f"{sites.service_url}/api/v1/login", lambda route: route.abort())
    page.locator("#pw-email").fill("lea@example.com")
    page.locator(".paywall__form button[type=submit]").click()
    expect(page.locator("#pw-alert")).to_contain_text("Impossible de joindre le service")
    expect(page.locator("#pw-email")).to_have_value("lea@example.com")
    assert reader.events()[-1]["detail"] == {"article": SLUG, "code": "network", "status": 0}
    # The aborted request is the browser's own console error, not the page's fault.
    reader.problems = [line for line in reader.problems if "ERR_FAILED" not in line]
    reader.assert_clean()


# --- Languages, screens, accessibility ------------------------------------------------------


def test_the_english_edition_gets_the_wall_and_the_service_messages_in_english(open_reader, sites):
    reader = open_reader(locale="fr-FR")  # the page's language wins over the browser's
    page = reader.page
    meet_the_wall(page, sites.article_en)
    expect(page.locator("#pw-title")).to_have_text("Sign up for free to keep reading")
    expect(page.locator(".paywall")).to_have_attribute("lang", "en")
    snap(page, "embed-wall-en-desktop.png")
    page.locator("#pw-email").fill("reader@")
    page.locator(".paywall__form button[type=submit]").click()
    expect(page.locator("#pw-email-error")).to_contain_text("not a valid email address")
    snap(page, "embed-error-en-desktop.png")
    reader.assert_clean()


@pytest.mark.parametrize("edition, lang", [("article", "fr"), ("article_en", "en")])
def test_the_wall_fits_a_phone_and_a_320_pixel_screen(open_reader, sites, edition, lang):
    reader = open_reader(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = reader.page
    meet_the_wall(page, getattr(sites, edition))
    assert fits_width(page), "wall"
    snap(page, f"embed-phone-wall-{lang}.png")
    ask_for_link(page, "marie-helene.de-la-tour-saint-georges@redaction-exemple-regional.fr")
    assert fits_width(page), "check your email"
    snap(page, f"embed-phone-check-email-{lang}.png")

    page.set_viewport_size({"width": 320, "height": 640})
    assert fits_width(page), "check your email at 320 px"
    page.get_by_role("button", name=re.compile("autre adresse|another address")).click()
    assert fits_width(page), "form at 320 px"
    reader.assert_clean()


TARGETS = """() => [...document.querySelector('.paywall-ui').shadowRoot
    .querySelectorAll('button, input[type=email], input[type=text], .paywall__check')]
    .map(node => { const box = node.getBoundingClientRect();
                   return {what: node.outerHTML.slice(0, 60), width: box.width,
                           height: box.height}; })"""


def test_targets_labels_and_focus_meet_wcag(open_reader, sites):
    reader = open_reader()
    page = reader.page
    meet_the_wall(page, sites.article)
    unlabelled = page.evaluate(
        """() => [...document.querySelector('.paywall-ui').shadowRoot.querySelectorAll('input')]
            .filter(field => !field.labels.length).map(field => field.outerHTML)"""
    )
    assert unlabelled == []
    small = [t for t in page.evaluate(TARGETS) if t["height"] < 44 or t["width"] < 44]
    assert small == []

    for _ in range(30):  # the email field is reached with the Tab key, focus visible
        page.keyboard.press("Tab")
        if focused_id(page) == "pw-email":
            break
    else:
        pytest.fail("the email field cannot be reached with the Tab key")
    style = page.evaluate(
        """() => { const field = document.querySelector('.paywall-ui').shadowRoot.activeElement;
            const style = getComputedStyle(field);
            return {visible: field.matches(':focus-visible'), outline: style.outlineStyle,
                    width: parseFloat(style.outlineWidth)}; }"""
    )
    assert style["visible"] and style["outline"] != "none" and style["width"] >= 2, style
    live = page.locator(".paywall-live")
    expect(live).to_have_attribute("aria-live", "polite")
    reader.assert_clean()


def test_the_host_page_styles_stay_out_of_the_wall_and_its_theme_comes_through(open_reader, sites):
    reader = open_reader()
    page = reader.page
    meet_the_wall(page, sites.article)
    looks = page.evaluate(
        """() => { const root = document.querySelector('.paywall-ui').shadowRoot;
            const button = root.querySelector('button[type=submit]');
            const panel = root.querySelector('.paywall');
            return {button: getComputedStyle(button).backgroundColor,
                    font: getComputedStyle(panel).fontFamily,
                    bodyFont: getComputedStyle(document.body).fontFamily,
                    sheets: root.styleSheets.length,
                    styleAttributes: root.querySelectorAll('[style]').length}; }"""
    )
    assert looks["button"] == "rgb(155, 34, 38)"  # --paywall-accent of the site's CSS
    assert looks["font"] == looks["bodyFont"]  # the site's font, inherited
    assert looks["sheets"] == 1 and looks["styleAttributes"] == 0
    reader.assert_clean()


# --- Metering ------------------------------------------------------------------------------


@pytest.mark.live_settings(PAYWALL_FREE_ARTICLES=2)
def test_a_free_article_is_shown_with_how_many_are_left_and_a_way_to_sign_up(open_reader, sites):
    reader = open_reader()
    page = reader.page
    page.goto(sites.article)
    assert_unlocked(page)
    expect(page.locator(".paywall__meter")).to_contain_text("Il vous reste 1 article gratuit.")
    assert reader.event_types() == ["paywall:ready", "paywall:unlocked"]
    page.locator(".paywall__meter button").click()
    expect(page.locator("#pw-email")).to_be_visible()
    assert focused_id(page) == "pw-email"
    # The body stays while the reader signs up.
    expect(page.locator(".article__body > p").nth(1)).to_contain_text(GATED_WORDS)
    snap(page, "embed-metered-fr-desktop.png")
    reader.assert_clean()


@pytest.mark.live_settings(PAYWALL_FREE_ARTICLES=2)
def test_once_the_free_articles_are_read_the_wall_says_so(open_reader, sites):
    reader = open_reader()
    page = reader.page
    for slug in ("sainte-orlane-toits-potagers", "ile-ormenes-ferme-algues-experimentale"):
        page.goto(f"{sites.service_url}/articles/{slug}")  # the same meter, on the service
    meet_the_wall(page, sites.article)
    expect(page.locator(".paywall__note")).to_have_text(
        "Vous avez lu les 2 articles gratuits offerts tous les 30 jours."
    )
    reader.assert_clean()


def test_markup_named_current_script_cannot_point_the_wall_elsewhere(open_reader, sites):
    """``<img name="currentScript">`` in the host page stands in for
    ``document.currentScript`` (DOM clobbering): the wall must still take its service
    from its own script element, and work."""
    reader = open_reader()
    page = reader.page
    # Put the markup in the page as it is parsed, before the deferred script runs.
    page.add_init_script(
        """new MutationObserver((_, observer) => {
             if (!document.body) return;
             const img = document.createElement("img");
             img.name = "currentScript"; img.alt = "";
             document.body.prepend(img);
             observer.disconnect();
           }).observe(document, {childList: true, subtree: true});"""
    )
    meet_the_wall(page, sites.article)
    assert page.evaluate("document.currentScript instanceof HTMLImageElement")  # clobbered
    ask_for_link(page, "clobber@example.com")
    assert len(sites.service.mails_to("clobber@example.com")) == 1
    reader.assert_clean()


@pytest.fixture
def provider_for_the_wall(request, service_port, tmp_path):
    """oidc-provider on 127.0.0.1, and the service's settings naming it (add it to a test's
    arguments before ``sites``)."""
    service_url = f"http://auth.news.test:{service_port}"
    client = {"client_id": "news-site", "client_secret": "secret-of-the-wall-tests"}
    provider = start_provider(
        {
            "clients": [{**client, "redirect_uris": [f"{service_url}/login/with/idp/callback"]}],
            "accounts": {"alice": {"email": "alice@example.org", "email_verified": True}},
        },
        log_dir=tmp_path / "provider",
    )
    providers = {"idp": {"issuer": provider.issuer, "label": "Identité test", **client}}
    request.node.add_marker(pytest.mark.live_settings(OIDC_PROVIDERS=json.dumps(providers)))
    yield provider
    provider.stop()


def test_reader_signs_in_with_a_provider_from_the_wall_in_the_news_site_page(
    provider_for_the_wall, open_reader, sites
):
    reader = open_reader()
    page = reader.page
    meet_the_wall(page, sites.article)
    page.locator("#pw-newsletter").check()
    button = page.get_by_role("button", name="Se connecter avec Identité test")
    expect(page.get_by_role("group", name=re.compile("compte que vous avez déjà"))).to_be_visible()
    button.click()  # click one: the whole page goes to the provider
    page.locator("#login").fill("alice")
    page.locator("#login-submit").click()  # click two: back on the news site's article
    expect(page).to_have_url(sites.article)
    assert_unlocked(page)
    reader.assert_clean()
    assert sites.service.scalar("SELECT count(*) FROM newsletter_consents") == 1
    assert sites.service.scalar("SELECT method FROM sign_in_events") == "idp"
