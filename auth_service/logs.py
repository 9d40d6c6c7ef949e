"""Logs: one JSON object a line (python-json-logger), each with the request's id.

A request's id is the proxy's ``X-Request-ID`` when it sends a sane one (so one id
follows the request from nginx to here), or a new random one; it goes back in the
answer's ``X-Request-ID`` and on every line logged while the request runs, the access
log's included. The processes of production (``auth-service serve`` and ``worker``)
log JSON; ``flask run`` and the demo keep Flask's plain lines, and so do tests (the
app never takes over the process's logging: its entry point does).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid

from flask import Flask, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

HEADER = "X-Request-ID"
SANE_ID = re.compile(r"[A-Za-z0-9._:@-]{8,128}")
FIELDS = "%(levelname)s %(name)s %(message)s"


def request_id() -> str:
    """This request's id (made on first use), or ``-`` outside a request."""
    if not has_request_context():
        return "-"
    if "request_id" not in g:
        sent = request.headers.get(HEADER, "")
        g.request_id = sent if SANE_ID.fullmatch(sent) else uuid.uuid4().hex
    return g.request_id


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (a filter on handlers, so every logger's
    lines get it, libraries' too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id()
        return True


def json_formatter() -> JsonFormatter:
    """The formatter of every line: time, level, logger, message, request id, extras."""
    return JsonFormatter(
        FIELDS,
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601, UTC
    )


def json_handler(stream=None) -> logging.Handler:
    """A handler writing JSON lines with the request id to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure_json_logging(level: int = logging.INFO) -> None:
    """Route every logger of the process through one JSON handler on stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler())
    root.setLevel(level)


def _echo_id(response):
    response.headers[HEADER] = request_id()
    return response


def init_app(app: Flask) -> None:
    """Give every answer its request id."""
    app.after_request(_echo_id)
