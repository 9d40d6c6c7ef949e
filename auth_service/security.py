"""Response headers every page gets, and the stricter ones for pages with secrets."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from flask import Flask, current_app, g
from werkzeug.middleware.proxy_fix import ProxyFix


def private_page() -> None:
    """Mark this response as personal: never stored by a browser or a proxy."""
    g.private_page = True


def token_page() -> None:
    """Mark this response as carrying a sign-in token: private and never referred."""
    g.private_page = True
    g.token_page = True


def content_security_policy() -> str:
    """The CSP of every page: no inline script anywhere, framing as configured."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' https: data:",
            "font-src 'self'",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "object-src 'none'",
            f"frame-ancestors {current_app.config['FRAME_ANCESTORS']}",
        )
    )


def _add_headers(response):
    """Set the headers of every response."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("Content-Security-Policy", content_security_policy())
    framing = current_app.config["FRAME_ANCESTORS"].strip()
    if framing in ("'none'", "'self'"):
        # For browsers older than frame-ancestors; it cannot express a list of sites.
        headers.setdefault("X-Frame-Options", "DENY" if framing == "'none'" else "SAMEORIGIN")
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


class RawQueryBytes:
    """WSGI middleware: percent-encode raw non-ASCII bytes in the query string.

    Some servers pass such bytes through (PEP 3333 allows it) and Werkzeug then fails
    to decode ``request.args`` on every route, error pages included. Percent-encoded,
    they decode leniently and the views answer as for any other odd value.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if not query.isascii():
            raw = query.encode("latin-1", "replace")
            environ["QUERY_STRING"] = quote(raw, safe="&=+%;/:,?@!$'()*[]~")
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask) -> None:
    """Attach the header hook to ``app``, and trust the configured proxies.

    ``X-Forwarded-For`` decides the client IP (and so the rate limits) only when
    ``PROXY_FIX_X_FOR`` says how many proxies in front of us add to it.
    """
    app.after_request(_add_headers)
    app.wsgi_app = RawQueryBytes(app.wsgi_app)
    hops, proto = app.config["PROXY_FIX_X_FOR"], app.config["PROXY_FIX_X_PROTO"]
    if hops or proto:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(hops), x_proto=int(proto))
