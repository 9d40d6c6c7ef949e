"""The JSON API under ``/api/v1`` (docs/contract.md §7): the wall for the news site's pages.

The same rules as the HTML routes, through the same code (``auth.flow``, ``signin``,
``articles.meter``); only the answers are JSON. A request that relies on the reader's
cookies to change something must be JSON and come from this service's origin or one
in ``ALLOWED_ORIGINS`` (its ``Origin`` header says so), in place of the HTML forms'
CSRF token. Those origins get CORS with credentials.
"""

from flask import Flask

from ..extensions import csrf
from . import cors, publisher  # noqa: F401 (publisher's routes join the blueprint)
from .views import bp

__all__ = ["bp", "init_app"]


def init_app(app: Flask) -> None:
    """Register the API, without the forms' CSRF token (the Origin check stands in)."""
    csrf.exempt(bp)
    app.register_blueprint(bp)
    cors.init_app(app)
