"""The service under a path of the news site (contract §7, deployment (b)).

With ``PUBLIC_URL=https://www.news.example/compte`` the news site's reverse proxy hands
``/compte/...`` to the service. :class:`PathPrefix` moves the prefix from the path into
``SCRIPT_NAME``, where WSGI says at which path an application is mounted. From there
Flask's ``url_for`` and ``request.script_root`` carry it, so every link, redirect,
form action, static URL and cookie path of the service keeps it.
"""

from __future__ import annotations

from flask import Flask, abort, request

from .config import public_path

# Set in the WSGI environ of a request whose path is not under the prefix.
OUTSIDE = "auth_service.outside_prefix"


class PathPrefix:
    """WSGI middleware: mount the application at ``prefix`` (``/compte``).

    A path under the prefix has it moved into ``SCRIPT_NAME``. A request that arrives
    with the prefix already in ``SCRIPT_NAME`` was mounted there upstream: by a proxy
    that strips the prefix and says so in ``X-Forwarded-Prefix`` (honoured only when
    ``PROXY_FIX_X_PREFIX`` trusts it; ProxyFix wraps this middleware), or by the WSGI
    server itself. Anything else is outside the service: it gets the 404 page, whose
    links lead back under the prefix.
    """

    def __init__(self, wsgi_app, prefix: str):
        self.wsgi_app = wsgi_app
        self.prefix = prefix

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == self.prefix or path.startswith(self.prefix + "/"):
            environ["PATH_INFO"] = path[len(self.prefix) :] or "/"
        elif environ.get("SCRIPT_NAME", "").rstrip("/") != self.prefix:
            environ[OUTSIDE] = True
        environ["SCRIPT_NAME"] = self.prefix
        return self.wsgi_app(environ, start_response)


def _refuse_outside_the_prefix() -> None:
    """Before anything else a request meets: a path outside the prefix is not ours."""
    if request.environ.get(OUTSIDE):
        abort(404)


def under_prefix(url: str) -> str:
    """A path of the service (``/static/...``) as the browser must ask for it: under the
    prefix. Absolute URLs are left alone."""
    if url.startswith("/") and not url.startswith("//"):
        return request.script_root + url
    return url


def init_app(app: Flask) -> None:
    """Mount ``app`` at the path of ``PUBLIC_URL``, if it has one.

    Call it before ProxyFix is installed, so that ProxyFix runs first and can set
    ``SCRIPT_NAME`` from a trusted ``X-Forwarded-Prefix``.
    """
    app.add_template_filter(under_prefix)
    prefix = public_path(app)
    if not prefix:
        return
    app.wsgi_app = PathPrefix(app.wsgi_app, prefix)
    # First of all the hooks: no CSRF check, rate limit or input guard runs for a path
    # that is not the service's.
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_outside_the_prefix)
