"""Routes of reading: the front page and the article page with its wall."""

from flask import Blueprint, abort, make_response, render_template, url_for
from flask_login import current_user

from ..auth.forms import blank_login_form
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
    page says how many are left.
    """
    found = store.find(slug)
    if found is None:
        abort(404)
    access = meter.access_to(found, current_user)
    if current_user.is_authenticated or access.meter.allowance:
        private_page()  # the page differs per reader, or per meter: never cache it
    if access.entitled:
        wall = None
    else:
        wall = blank_login_form(url_for("articles.article", slug=found.slug))
    response = make_response(
        render_template(
            "articles/article.html",
            article=found,
            gated=not access.entitled,
            paywalled=access.gated,
            metered=access.gated and access.entitled and not current_user.is_authenticated,
            meter=access.meter,
            wall=wall,
        )
    )
    meter.write_meter(response, access.meter)
    return response
