"""The drop-in wall for the news site's pages (docs/embed.md): ``/embed/paywall.js``
and the stylesheet it puts in its shadow root."""

from .views import bp

__all__ = ["bp"]
