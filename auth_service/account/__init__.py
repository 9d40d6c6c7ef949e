"""The reader's account: their data, sign out everywhere, export, delete."""

from .personal_data import describe_device
from .views import bp

__all__ = ["bp"]


@bp.app_template_filter("device_name")
def device_name(user_agent: str) -> str:
    """Template filter: the approximate device of a sign-in."""
    return describe_device(user_agent or "")
