"""Response headers every page gets, and the stricter ones for pages with secrets."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, g


def private_page() -> None:
    """Mark this response as personal: never stored by a browser or a proxy."""
    g.private_page = True


def token_page() -> None:
    """Mark this response as carrying a sign-in token: private and never referred."""
    g.private_page = True
    g.token_page = True


def _add_headers(response):
    """Set the headers of every response."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    if g.get("token_page"):
        headers["Referrer-Policy"] = "no-referrer"
    if g.get("private_page"):
        headers["Cache-Control"] = "no-store"
    if response.mimetype == "text/html":
        # Pages differ by language (Accept-Language, the lang cookie) and by reader.
        response.vary.update(("Accept-Language", "Cookie"))
    if urlsplit(current_app.config["PUBLIC_URL"]).scheme == "https":
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def init_app(app: Flask) -> None:
    """Attach the header hook to ``app``."""
    app.after_request(_add_headers)
