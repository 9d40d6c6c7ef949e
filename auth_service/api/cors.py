"""Who may call the API with the reader's cookies: the Origin check and CORS.

A browser sends ``Origin`` with every cross-origin request and with same-origin POSTs.
Only this service's own origin (from ``PUBLIC_URL``) and the news site's origins in
``ALLOWED_ORIGINS`` may change anything with the reader's cookies; only the latter get
``Access-Control-Allow-Origin`` (with credentials), and every API answer says
``Vary: Origin`` so that no cache hands one origin's answer to another.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, request

from ..config import origin_of
from ..errors import API_PREFIX

CHANGING_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer


def own_origin() -> str:
    """This service's origin, from ``PUBLIC_URL``."""
    return origin_of(urlsplit(current_app.config["PUBLIC_URL"]))


def allowed_origin(origin: str | None) -> bool:
    """Whether a page of ``origin`` may call the API with the reader's cookies."""
    if not origin:
        return False
    origin = origin.lower()
    return origin == own_origin() or origin in current_app.config["ALLOWED_ORIGINS"]


def _add_cors_headers(response):
    """Vary on Origin for every API answer; CORS with credentials for allowed origins."""
    if not request.path.startswith(API_PREFIX):
        return response
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin and origin.lower() in current_app.config["ALLOWED_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response


def init_app(app: Flask) -> None:
    """Add the CORS headers to every answer under ``/api/``, errors included."""
    app.after_request(_add_cors_headers)
