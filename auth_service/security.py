"""Response headers every page gets, and the stricter ones for pages with secrets; the
guard that refuses, before any view runs, what the database could not store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar
from urllib.parse import quote, urlsplit

from flask import Flask, current_app, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from . import prefix
from .errors import JsonNotRead, JsonTooDeep, UnstorableText
from .storable import first_unstorable, is_storable, shown, shown_where

View = TypeVar("View", bound=Callable)

# Routes that take more than MAX_CONTENT_LENGTH: an article pushed by the CMS.
LARGE_BODY_ENDPOINTS = frozenset({"api.put_article"})
# The methods whose body Flask-WTF reads as the form's data, JSON included.
SUBMIT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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
            # A form may lead on to the news site's pages (the confirm button's redirect
            # to the article the reader came from) and to a sign-in provider (a social
            # button's redirect): a form's redirects count here too.
            " ".join(
                (
                    "form-action 'self'",
                    *current_app.config["ALLOWED_ORIGINS"],
                    *current_app.config.get("OIDC_FORM_ORIGINS", ()),
                )
            ),
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


def reads_json(view: View) -> View:
    """Mark ``view`` as one that reads a JSON body; every other view refuses one (415).

    Without the mark, Flask-WTF would hand a JSON body to the forms, which expect flat
    strings: a list or an object there was a 500.
    """
    view.reads_json = True
    return view


def check_input() -> None:
    """Before every view: refuse what the database could not store, wherever it was sent.

    Looks at the path (its arguments, or all of it when no route matched), the query
    string, the form fields (names, values and file names) and a JSON body (keys and
    values, at any depth), and raises :class:`~auth_service.errors.UnstorableText`: the
    calm 400 page, or a JSON error.
    Headers and cookies are not looked at: the one header the service keeps (the
    User-Agent of a sign-in) is cleaned by the code that keeps it. A JSON body is also
    refused when too deep to parse (400), or sent to a view that reads forms (415).
    """
    if request.endpoint in LARGE_BODY_ENDPOINTS:
        # A whole article from the CMS; set before anything reads the body.
        request.max_content_length = current_app.config["PUBLISHER_MAX_CONTENT_LENGTH"]
    # The path's arguments by name; the whole path when no route matched (a 404 or a
    # redirect to come), so that a NUL gets the same answer on every path.
    path = request.view_args if request.view_args is not None else {"": request.path}
    for where, pairs in (
        ("path", path.items()),
        ("query", request.args.items(multi=True)),
        ("form", request.form.items(multi=True)),
        ("form", ((name, file.filename or "") for name, file in request.files.items(multi=True))),
    ):
        name = next(_unstorable_names(pairs), None)
        if name is not None:
            raise UnstorableText(where, shown(name, 40))
    if request.is_json:
        _check_json_body()


def _unstorable_names(pairs: Iterable[tuple[str, object]]) -> Iterator[str]:
    """The names whose name or text value the database cannot store."""
    for name, value in pairs:
        if not is_storable(name) or (isinstance(value, str) and not is_storable(value)):
            yield name


def _check_json_body() -> None:
    """Refuse a JSON body too deep to parse, holding unstorable text, or sent to a view
    that reads forms.

    The parsed body stays cached on the request, so the view does not parse it again; a
    body that is not JSON at all is left to the view, which says what it expected.
    """
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the parser recurses once per bracket; get_json lets it out
        raise JsonTooDeep() from None
    where = first_unstorable(body)
    if where is not None:
        raise UnstorableText("json", shown_where(where))
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None and request.method in SUBMIT_METHODS:
        if not getattr(view, "reads_json", False):
            raise JsonNotRead()


def cookie_attributes(path: str = "/") -> dict:
    """How the service sets its own cookies: at ``path`` under the public path prefix
    (``/login`` is ``/compte/login`` behind a news site's proxy), HttpOnly, SameSite=Lax
    (None with ``CROSS_SITE_COOKIES``), Secure when ``PUBLIC_URL`` is https."""
    return {
        "path": (request.script_root + path).rstrip("/") or "/",
        "httponly": True,
        "samesite": "None" if current_app.config["CROSS_SITE_COOKIES"] else "Lax",
        "secure": current_app.config["SESSION_COOKIE_SECURE"],
    }


def init_app(app: Flask) -> None:
    """Attach the header hook and the input guard to ``app``; mount it at the path of
    ``PUBLIC_URL``; trust the configured proxies.

    ``X-Forwarded-For`` decides the client IP (and so the rate limits) only when
    ``PROXY_FIX_X_FOR`` says how many proxies in front of us add to it;
    ``X-Forwarded-Prefix`` says where the service is mounted only when
    ``PROXY_FIX_X_PREFIX`` does.
    """
    app.before_request(check_input)
    app.after_request(_add_headers)
    app.wsgi_app = RawQueryBytes(app.wsgi_app)
    prefix.init_app(app)  # inside ProxyFix, which sets SCRIPT_NAME from X-Forwarded-Prefix
    hops, proto = app.config["PROXY_FIX_X_FOR"], app.config["PROXY_FIX_X_PROTO"]
    mounted = app.config["PROXY_FIX_X_PREFIX"]
    if hops or proto or mounted:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=int(hops), x_proto=int(proto), x_prefix=int(mounted)
        )
