"""Serve the wall's script and stylesheet to any page that embeds them.

Not through Flask's static route: each answer carries an ETag of its content (the same on
every server behind a load balancer, where a file's time may differ), may be kept by
browsers and caches for five minutes and then revalidated (a 304 costs no body), and may
be loaded by a page of any site (``Cross-Origin-Resource-Policy: cross-origin``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Response, request

bp = Blueprint("embed", __name__, url_prefix="/embed")

STATIC = Path(__file__).resolve().parent / "static"
# Short enough that a new release reaches every reader within minutes.
MAX_AGE = 300


def _asset(name: str, mimetype: str) -> Response:
    """The file ``name`` of ``static/``, cacheable by anyone, or a 304 if unchanged."""
    content = (STATIC / name).read_bytes()
    response = Response(content, mimetype=mimetype)
    response.set_etag(hashlib.sha256(content).hexdigest()[:32])
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    # Public files: a page may load them with crossorigin (for full error reports).
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response.make_conditional(request)


@bp.get("/paywall.js")
def script():
    """The wall, as one plain script (``application/javascript; charset=utf-8``)."""
    return _asset("paywall.js", "application/javascript")


@bp.get("/paywall.css")
def stylesheet():
    """The wall's look, linked from inside its shadow root."""
    return _asset("paywall.css", "text/css")
