"""Newsletters: preferences and one-click unsubscribe without signing in, staff
preview, and the mail provider's bounce/complaint webhook."""

from .views import bp

__all__ = ["bp"]
