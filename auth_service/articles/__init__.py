"""The front page and the article page, with the registration wall."""

from .views import bp

__all__ = ["bp"]
