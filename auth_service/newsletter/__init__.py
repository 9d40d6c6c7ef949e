"""Newsletters: preferences and one-click unsubscribe without signing in, staff
preview, and the mail provider's bounce/complaint webhook."""

from flask import Blueprint

bp = Blueprint("newsletter", __name__)

from . import views  # noqa: E402,F401  (the routes attach themselves to ``bp``)
