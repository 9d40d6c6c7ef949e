"""Comments as a reader writes them: through the article page's forms."""

from __future__ import annotations

from auth_service.models import Comment, Reader
from support.web import csrf_token, rows

ARTICLE = "rivieres"  # a public article of support.articles
ARTICLE_PATH = f"/articles/{ARTICLE}"


def post_comment(
    browser,
    body: str,
    *,
    name: str | None = "Lectrice",
    parent=None,
    slug: str = ARTICLE,
    query: str = "",
):
    """Send the comment form of the article page (a reply when ``parent`` is a public
    id); ``name`` is the display name, sent only when given."""
    data = {"body": body, "csrf_token": csrf_token(browser, f"/articles/{slug}")}
    if name is not None:
        data["display_name"] = name
    if parent is not None:
        data["parent"] = parent
    return browser.post(f"/articles/{slug}/comments{query}", data=data)


def comments() -> list[Comment]:
    """Every comment row, oldest first."""
    return sorted(rows(Comment), key=lambda comment: comment.id)


def reader_named(email: str) -> Reader:
    """The reader with this address, as stored now."""
    return rows(Reader, Reader.email == email)[0]
