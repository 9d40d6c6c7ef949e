"""Routes of reading: the front page and the article page with its wall."""

from flask import Blueprint, abort, make_response, render_template, request, url_for
from flask_login import current_user

from ..auth.forms import blank_login_form
from ..comments import listing
from ..models import Article
from ..security import private_page
from . import meter, store

bp = Blueprint("articles", __name__)


@bp.get("/")
def front_page():
    """The list of published articles."""
    return render_template("articles/front_page.html", articles=store.published())


@bp.get("/articles/<slug>")
def article(slug: str):
    """An article; its gated body is not sent at all to a reader who must sign in.

    A signed-out browser with free articles left on its meter reads the body, and the
    page says how many are left. Below it, the comments (``?order=``, ``?page=``).
    """
    found = store.find_to_read(slug)
    if found is None:
        abort(404)
    return render_article(found)


def render_article(
    found: Article, *, comment_form=None, comments_page: int | None = None, status: int = 200
):
    """The article page of ``found`` for this reader; ``comment_form`` is a comment
    form sent back with its errors, shown on page ``comments_page`` of the comments (the
    comments views answer a refused one here)."""
    access = meter.access_to(found, current_user)
    if current_user.is_authenticated or access.meter.allowance:
        private_page()  # the page differs per reader, or per meter: never cache it
    if access.entitled:
        wall = None
    else:
        wall = blank_login_form(url_for("articles.article", slug=found.slug))
    viewer_id = current_user.id if current_user.is_authenticated else None
    comments = listing.page_of_threads(
        found,
        viewer_id,
        order=request.args.get("order", ""),
        number=comments_page or request.args.get("page", 1, type=int),
    )
    response = make_response(
        render_template(
            "articles/article.html",
            article=found,
            gated=not access.entitled,
            paywalled=access.gated,
            metered=access.gated and access.entitled and not current_user.is_authenticated,
            meter=access.meter,
            wall=wall,
            comment_count=comments.shown,
            comments=comments,
            comment_form=comment_form,
        ),
        status,
    )
    meter.write_meter(response, access.meter)
    return response
