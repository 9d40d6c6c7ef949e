"""Comments in a real browser: Debian's Chromium, driven by Playwright.

The service runs on a real threaded HTTP server. The reader is signed in through the
service's own link (read from the outbox by a test client of the same app) and the
browser is handed that session's cookie. A comment is posted with JavaScript off; axe-core
checks the article page with comments, in French and in English; the page must fit a
320-pixel phone. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from support.articles import ARTICLES
from support.chromium import chromium, snap
from support.in_process import app_at, served
from support.network import free_port
from support.settings import REPOSITORY
from support.web import Visitor, session_cookie

from auth_service.comments import discussion
from auth_service.extensions import db
from auth_service.models import Article, Comment, Reader

pytestmark = pytest.mark.browser
# The shared browser fixture, imported so that pytest finds it in this module.
__all__ = ["chromium"]

AXE = REPOSITORY / "tests" / "node" / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
ARTICLE_PATH = "/articles/rivieres"
SMALLEST_PHONE = {"width": 320, "height": 640}
LONG_ADDRESS = "https://www.example.org/" + "tres-long-chemin-sans-espace-" * 8


@pytest.fixture
def live_port() -> int:
    """The port of the live server, chosen first so that PUBLIC_URL can name it."""
    return free_port()


@pytest.fixture
def app(database_url, live_port, tmp_path):
    """The app of conftest, public at the live server's address, with the test articles."""
    with app_at(database_url, live_port, tmp_path, ARTICLES) as application:
        yield application


@pytest.fixture
def live_server(app, live_port):
    """The service on a real threaded HTTP server; its base URL."""
    with served(app, live_port) as url:
        yield url


@pytest.fixture
def signed_in(app, chromium, live_server):
    """Open a browser signed in as ``email`` (its own cookies); return its page."""
    contexts = []

    def open_page(email: str, **options) -> Page:
        client = app.test_client()
        Visitor(app, client).sign_in(email)
        context = chromium.new_context(locale="fr-FR", **options)
        context.add_cookies(
            [{"name": "auth_session", "value": session_cookie(client), "url": live_server}]
        )
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def _discussion(app) -> None:
    """An article page with what comments can show: a thread with replies, an edited
    comment, a long address, a tombstone, a held comment of the reader themselves."""
    article = db.session.scalar(db.select(Article).where(Article.slug == "rivieres"))
    readers = {}
    for email, name in (("ines@example.com", "Inès"), ("paul@example.com", "Paul Martin")):
        reader = db.session.scalar(db.select(Reader).where(Reader.email == email))
        if reader is None:
            reader = Reader(email=email)
            db.session.add(reader)
        reader.display_name, reader.display_name_key = name, name.casefold()
        readers[email] = reader
    db.session.flush()
    ines, paul = readers["ines@example.com"], readers["paul@example.com"]
    first = discussion.post(ines, article, "Très bon article.\nMerci pour ces chiffres.")
    discussion.post(paul, article, f"La source : {LONG_ADDRESS}", parent=first)
    discussion.post(paul, article, "D'accord avec vous.", parent=first)
    gone = discussion.post(paul, article, "Message retiré")
    discussion.post(ines, article, "Réponse au message retiré", parent=gone)
    discussion.remove(gone, paul)
    links = " ".join(f"https://shop.test/{n}" for n in range(4))
    discussion.post(ines, article, f"En attente {links}")
    db.session.commit()


def _axe_violations(page: Page) -> list:
    """What axe-core finds against WCAG 2.1 A and AA on the page."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async (tags) => {
            const results = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
            return results.violations.map(v => ({id: v.id, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' '))}));
        }""",
        AXE_TAGS,
    )


def _fits(page: Page) -> bool:
    """Whether the page fits the width of the window (no horizontal scrolling)."""
    return page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"
        " && document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def test_a_reader_posts_a_comment_with_javascript_disabled(app, signed_in, live_server):
    page = signed_in("lectrice@example.com", java_script_enabled=False)
    page.goto(live_server + ARTICLE_PATH)
    form = page.locator(f"form.comment-form[action='{ARTICLE_PATH}/comments']").first
    form.locator("input[name=display_name]").fill("Lectrice du soir")
    form.locator("textarea[name=body]").fill("Sans JavaScript,\nça marche.")
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(rf"{ARTICLE_PATH}#comment-[\w-]+$"))
    comment = page.locator(".comment").filter(has_text="Lectrice du soir")
    expect(comment.locator(".comment__body")).to_contain_text("ça marche.")
    expect(comment.locator(".comment__body br")).to_have_count(1)
    # "1 commentaire" once translated; the count is what matters here.
    expect(page.locator("#comments-title")).to_have_text(re.compile(r"^1 comment"))
    snap(page, "comments-posted.png")

    # A reply, through the <details> disclosure, still without JavaScript.
    page.locator("details.comment__reply summary").first.click()
    reply = page.locator("details.comment__reply form").first
    reply.locator("textarea[name=body]").fill("Je me réponds.")
    reply.locator("button[type=submit]").click()
    expect(page.locator(".comments__replies")).to_contain_text("Je me réponds.")
    assert db.session.scalar(db.select(db.func.count()).select_from(Comment)) == 2


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_article_page_with_comments_has_no_accessibility_violations(
    app, signed_in, live_server, language
):
    _discussion(app)
    page = signed_in("ines@example.com", bypass_csp=True)  # axe is injected as a script
    page.goto(f"{live_server}{ARTICLE_PATH}?lang={language}")
    expect(page.locator("html")).to_have_attribute("lang", language)
    page.locator("details.comment__reply summary").first.click()  # an open reply form
    expect(page.locator(".comment__note")).to_have_count(1)  # the held comment, hers
    assert _axe_violations(page) == []

    # A signed-out reader: the sign-in link instead of the form.
    context = page.context.browser.new_context(locale="fr-FR", bypass_csp=True)
    try:
        reader = context.new_page()
        reader.goto(f"{live_server}{ARTICLE_PATH}?lang={language}")
        expect(reader.locator(".comments__sign-in")).to_be_visible()
        assert _axe_violations(reader) == []
    finally:
        context.close()


def test_an_error_in_the_comment_form_has_no_accessibility_violations(app, signed_in, live_server):
    page = signed_in("lectrice@example.com", bypass_csp=True)
    page.goto(f"{live_server}{ARTICLE_PATH}?lang=en")
    form = page.locator(f"form.comment-form[action='{ARTICLE_PATH}/comments']").first
    form.locator("input[name=display_name]").fill("me@example.com")
    form.locator("textarea[name=body]").fill("Gardé tel quel")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.locator("button[type=submit]").click()
    assert answer.value.status == 422
    field = page.locator("#comment-name")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#comment-name-error")).to_contain_text("@")
    expect(page.locator("#comment-body")).to_have_value("Gardé tel quel")
    assert _axe_violations(page) == []


def test_the_comments_fit_a_320_pixel_phone(app, signed_in, live_server):
    _discussion(app)
    page = signed_in(
        "ines@example.com",
        viewport=SMALLEST_PHONE,
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page.goto(live_server + ARTICLE_PATH)
    for summary in page.locator("details.comment__reply summary").all():
        summary.click()
    expect(page.locator(".comments__replies a[rel='nofollow ugc']")).to_be_visible()
    assert _fits(page), "article page with comments"
    snap(page, "phone-comments.png")
    sizes = page.evaluate(
        """() => [...document.querySelectorAll(
            '.comments button, .comments summary, .comment__action, .comments__order a')]
            .filter(e => e.offsetParent !== null)
            .map(e => [e.textContent.trim(), e.getBoundingClientRect().height])"""
    )
    assert sizes and all(height >= 44 for _text, height in sizes), sizes
