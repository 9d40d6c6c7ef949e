"""Comments under articles: everyone reads them, signed-in readers write them; the
moderators' page."""

from flask import Flask

from .discussion import EDIT_WINDOW, MAX_LENGTH, MAX_LINKS
from .text import to_html
from .views import bp

__all__ = ["bp", "init_app"]


def init_app(app: Flask) -> None:
    """Attach the comments' routes and template filter to ``app``."""
    app.add_template_filter(to_html, "comment_html")
    app.jinja_env.globals.update(
        comment_max_length=MAX_LENGTH,
        comment_max_links=MAX_LINKS,
        comment_edit_minutes=int(EDIT_WINDOW.total_seconds() // 60),
    )
    app.register_blueprint(bp)
