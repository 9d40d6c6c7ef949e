"""The reader's journey (docs/contract.md §1) in a real browser: Debian's Chromium,
driven by Playwright.

The service runs on a real threaded HTTP server, its outbox worker runs in process, and
the mail travels over SMTP to a real aiosmtpd server; the link and the code are read from
the mail as it arrived there. Nothing is mocked. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select
from support.chromium import PHONE, chromium, snap
from support.in_process import app_at, served
from support.network import free_port

from auth_service.articles.store import sanitise
from auth_service.cli import demo_articles
from auth_service.extensions import db
from auth_service.mail.worker import Worker
from auth_service.models import OutboxMessage

pytestmark = pytest.mark.browser
# The shared browser fixture, imported so that pytest finds it in this module.
__all__ = ["chromium"]

GATED = next(item for item in demo_articles() if item["access"] == "registered")
ARTICLE_PATH = f"/articles/{GATED['slug']}"


def paragraph_text(article: dict, index: int) -> str:
    """The plain text of one paragraph of an article's (sanitised) body."""
    paragraphs = re.findall(r"<p\b[^>]*>(.*?)</p>", sanitise(article["body_html"]), re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", paragraphs[index])).split())


# The start of the second paragraph: the first words a signed-out reader must not get.
GATED_WORDS = paragraph_text(GATED, 1)[:80]


# --- The service, its mail worker and the browser -------------------------------------


@dataclass
class LiveServer:
    """The service as the browser reaches it."""

    url: str

    def __call__(self, path: str) -> str:
        """The absolute address of ``path``."""
        return self.url + path


@pytest.fixture
def live_port() -> int:
    """The port of the live server, chosen first so that PUBLIC_URL can name it."""
    return free_port()


@pytest.fixture
def app(database_url, smtp_server, live_port, tmp_path):
    """The app of conftest, but public at the live server's address, with demo articles.

    Overrides conftest's ``app``: its PUBLIC_URL is fixed, and the links in the mail must
    lead this browser back to the port the live server listens on.
    """
    mail = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port}
    with app_at(database_url, live_port, tmp_path, demo_articles(), **mail) as application:
        yield application


@pytest.fixture
def mail_worker(app):
    """The outbox worker, in process as in ``auth-service demo``, woken by each commit."""
    worker = Worker(app, in_process=True)
    thread = worker.start_thread()
    yield worker
    worker.stop()
    thread.join(timeout=10)


@pytest.fixture
def live_server(app, mail_worker, live_port):
    """The service on a real threaded HTTP server at 127.0.0.1:<live_port>."""
    with served(app, live_port) as url:
        yield LiveServer(url)


@pytest.fixture
def open_browser(chromium):
    """Open a fresh browser of a French reader (own cookies) and return its page."""
    contexts = []

    def open_page(**options) -> Page:
        context = chromium.new_context(locale="fr-FR", **options)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_browser) -> Page:
    """The page of the reader's own browser."""
    return open_browser()


# --- What the reader does and sees -------------------------------------------------------


@dataclass
class SentMail:
    """A sign-in mail as it reached the SMTP server."""

    recipients: list
    text: str
    link: str
    code: str


def read_mail(smtp_server, count: int = 1) -> SentMail:
    """Wait for the ``count``-th mail at the SMTP server and read its text part."""
    envelope = smtp_server.recorder.wait_for(count)[count - 1]
    message = BytesParser(policy=policy.default).parsebytes(envelope.content)
    # SMTP carries CRLF line ends; the reader's mail app shows lines.
    text = "\n".join(message.get_body(preferencelist=("plain",)).get_content().splitlines())
    link = re.search(r"^(https?://\S+)$", text, re.MULTILINE).group(1)
    code = re.search(r"(?<!\d)(\d{6})(?!\d)", text.replace(link, "")).group(1)
    return SentMail(envelope.rcpt_tos, text, link, code)


def open_wall(page: Page, server: LiveServer):
    """Open the gated article signed out; check the wall stands where the body was."""
    page.goto(server(ARTICLE_PATH))
    wall = page.locator("section.wall")
    expect(wall.locator("input[name=email]")).to_be_visible()
    expect(wall.locator("input[name=next]")).to_have_value(ARTICLE_PATH)
    expect(page.locator(".article__body p")).to_have_count(1)
    assert GATED_WORDS not in page.content(), "the gated body was sent to the browser"
    return wall


def ask_for_link(page: Page, form, address: str, *, newsletter: bool = False) -> None:
    """Fill the sign-up-or-sign-in form and land on "check your email"."""
    form.locator("input[name=email]").fill(address)
    if newsletter:
        form.locator("input[name=newsletter]").check()
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/login/sent$"))
    expect(page.locator(".sent__address .address")).to_have_text(address)


def assert_unlocked(page: Page, server: LiveServer) -> None:
    """The reader is back on the article, signed in, with the whole body."""
    expect(page).to_have_url(server(ARTICLE_PATH))
    expect(page.locator("section.wall")).to_have_count(0)
    second = page.locator(".article__body p").nth(1)
    expect(second).to_be_visible()
    expect(second).to_contain_text(GATED_WORDS)


def has_no_horizontal_scroll(page: Page) -> bool:
    """Whether the page fits the width of the window.

    On an emulated phone ``innerWidth`` grows with an overflowing page (the browser zooms
    out), so the layout viewport's ``clientWidth`` is checked too.
    """
    return page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"
        " && document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


# --- The journey -------------------------------------------------------------------------


def test_reader_signs_up_at_the_wall_and_the_mailed_link_unlocks_the_article(
    page, live_server, smtp_server
):
    wall = open_wall(page, live_server)
    snap(page, "wall.png")
    ask_for_link(page, wall, "lectrice@example.com", newsletter=True)
    snap(page, "check-email.png")

    mail = read_mail(smtp_server)
    assert mail.recipients == ["lectrice@example.com"]
    assert mail.link.startswith(live_server("/login/verify?token="))
    page.goto(mail.link)
    assert_unlocked(page, live_server)
    snap(page, "unlocked.png")

    page.goto(live_server("/account"))  # the ticked box became a subscription
    expect(page.locator("#nl-daily")).to_be_checked()


def test_reader_types_the_mailed_code_instead_of_opening_the_link(page, live_server, smtp_server):
    wall = open_wall(page, live_server)
    ask_for_link(page, wall, "lecteur@example.com")
    mail = read_mail(smtp_server)
    page.locator(".code-form input[name=code]").fill(mail.code)
    page.locator(".code-form button[type=submit]").click()
    assert_unlocked(page, live_server)


def test_link_opened_in_another_browser_asks_for_a_confirmation_then_signs_it_in(
    page, open_browser, live_server, smtp_server
):
    wall = open_wall(page, live_server)
    ask_for_link(page, wall, "lectrice@example.com")
    mail = read_mail(smtp_server)

    other = open_browser()  # e.g. the mail app's own browser, or another device
    other.goto(mail.link)
    expect(other).to_have_url(mail.link)  # no redirect: nothing was consumed yet
    confirm = other.locator("form[action$='/login/verify'] button[type=submit]")
    expect(confirm).to_be_visible()
    snap(other, "confirm.png")
    confirm.click()
    assert_unlocked(other, live_server)

    open_wall(page, live_server)  # the browser that asked is still signed out


def test_pages_of_the_journey_fit_a_phone_screen(open_browser, live_server, smtp_server):
    page = open_browser(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    open_wall(page, live_server)
    assert has_no_horizontal_scroll(page), "article page"
    snap(page, "phone-wall.png")

    page.goto(live_server(f"/login?next={ARTICLE_PATH}"))
    assert has_no_horizontal_scroll(page), "login page"
    long_address = "marie-helene.de-la-tour-saint-georges@redaction-exemple-regional.fr"
    ask_for_link(page, page.locator("form.login-form"), long_address)
    assert has_no_horizontal_scroll(page), "check-your-email page"
    snap(page, "phone-check-email.png")

    page.goto(read_mail(smtp_server).link)
    assert_unlocked(page, live_server)
    assert has_no_horizontal_scroll(page), "unlocked article"
    snap(page, "phone-unlocked.png")


def test_whole_journey_works_with_javascript_disabled(open_browser, live_server, smtp_server):
    page = open_browser(java_script_enabled=False)
    wall = open_wall(page, live_server)
    # The site ships no JavaScript at all (JSON-LD for search engines is data, not code).
    expect(page.locator('script:not([type="application/ld+json"])')).to_have_count(0)
    ask_for_link(page, wall, "sans-js@example.com", newsletter=True)
    page.goto(read_mail(smtp_server).link)
    assert_unlocked(page, live_server)


# --- Accessibility basics ----------------------------------------------------------------


UNLABELLED_FIELDS = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea')].filter(field =>
    !field.getAttribute('aria-label') &&
    !(field.id && document.querySelector(`label[for="${CSS.escape(field.id)}"]`))
).map(field => field.outerHTML)"""


def test_every_field_of_the_journey_has_a_label(page, live_server):
    open_wall(page, live_server)
    assert page.evaluate(UNLABELLED_FIELDS) == [], "article page"
    page.goto(live_server("/login"))
    assert page.evaluate(UNLABELLED_FIELDS) == [], "login page"
    ask_for_link(page, page.locator("form.login-form"), "a11y@example.com")
    assert page.evaluate(UNLABELLED_FIELDS) == [], "check-your-email page"


def test_invalid_address_error_is_tied_to_the_field_and_keeps_what_was_typed(page, live_server):
    typed = 'jean"<b>dupont@'
    page.goto(live_server("/login"))
    page.locator("#email").fill(typed)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.locator("form.login-form button[type=submit]").click()
    assert answer.value.status == 422
    snap(page, "login-error.png")

    field = page.locator("#email")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_value(typed)
    expect(page.locator("form.login-form b")).to_have_count(0)  # the value was escaped
    described_by = field.get_attribute("aria-describedby").split()
    errors = [page.locator(f"#{ident}") for ident in described_by]
    messages = [
        error.inner_text()
        for error in errors
        if "field__error" in (error.get_attribute("class") or "")
    ]
    assert len(messages) == 1 and "example@domain.com" in messages[0]
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_keyboard_focus_on_the_email_field_is_visible(page, live_server):
    page.goto(live_server("/login"))
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "email":
            break
    else:
        pytest.fail("the email field cannot be reached with the Tab key")
    style = page.evaluate("""() => { const field = document.activeElement;
        const style = getComputedStyle(field);
        return {visible: field.matches(':focus-visible'), outline: style.outlineStyle,
                width: parseFloat(style.outlineWidth)}; }""")
    assert style["visible"] and style["outline"] != "none" and style["width"] >= 2, style


def test_pages_declare_their_language_and_english_is_offered(page, live_server):
    page.goto(live_server(ARTICLE_PATH))
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    english_title = "Sign up for free to keep reading"
    french_title = page.locator("#wall-title").inner_text()
    assert french_title and french_title != english_title

    page.goto(live_server(f"{ARTICLE_PATH}?lang=en"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#wall-title")).to_have_text(english_title)
    expect(page.locator("section.wall button[type=submit]")).to_have_text("Sign up or sign in")

    page.goto(live_server("/login"))  # the choice is remembered on the next page
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Sign up or sign in")
