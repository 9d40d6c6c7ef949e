"""The reader's account: their data, sign out everywhere, export, delete."""

from flask import Blueprint

from ..readers import describe_device

bp = Blueprint("account", __name__)

from . import views  # noqa: E402,F401  (the routes attach themselves to ``bp``)


@bp.app_template_filter("device_name")
def device_name(user_agent: str) -> str:
    """Template filter: the approximate device of a sign-in."""
    return describe_device(user_agent or "")
