"""The front page and the article page, with the registration wall."""

from flask import Blueprint

bp = Blueprint("articles", __name__)

from . import views  # noqa: E402,F401  (the routes attach themselves to ``bp``)
