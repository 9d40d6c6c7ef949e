"""Routes of reading: the front page and the article page with its wall."""

from flask import Blueprint, abort, render_template
from flask_login import current_user

from ..auth.forms import blank_login_form
from ..security import private_page
from . import store

bp = Blueprint("articles", __name__)


@bp.get("/")
def front_page():
    """The list of published articles."""
    return render_template("articles/front_page.html", articles=store.published())


@bp.get("/articles/<slug>")
def article(slug: str):
    """An article; its gated body is not sent at all to a reader who must sign in."""
    found = store.find(slug)
    if found is None:
        abort(404)
    gated = found.is_gated_for(current_user)
    if current_user.is_authenticated:
        private_page()  # the page now differs per reader: never cache it
    wall = blank_login_form(f"/articles/{found.slug}") if gated else None
    return render_template("articles/article.html", article=found, gated=gated, wall=wall)
