"""The front page and the article page, with the registration wall."""

from flask import Flask

from . import store
from .views import bp

__all__ = ["bp", "init_app"]


def init_app(app: Flask) -> None:
    """Attach the reading routes and the shelf of articles to ``app``."""
    store.init_app(app)
    app.register_blueprint(bp)
