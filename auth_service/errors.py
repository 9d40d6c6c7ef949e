"""Error pages: a clear sentence in the reader's language, never a stack trace."""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import InternalError, OperationalError
from sqlalchemy.orm.exc import ObjectDeletedError
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedMediaType,
)

from .database import end_transaction
from .extensions import limiter

log = logging.getLogger(__name__)

MESSAGES = {
    400: (
        _l("This request could not be understood"),
        _l("Something in what was sent is not right. Go back and try again."),
    ),
    403: (_l("Access refused"), _l("You are not allowed to see this page.")),
    404: (
        _l("Page not found"),
        _l(
            "This page does not exist or no longer exists. "
            "Check the address, or go back to the front page."
        ),
    ),
    405: (
        _l("Not allowed"),
        _l("This page cannot be used this way. Go back and use the form on the page."),
    ),
    413: (_l("Too much data"), _l("What you sent is too large. Shorten it and try again.")),
    415: (
        _l("This format is not read here"),
        _l("This address takes a form, not JSON. Send the form's fields instead."),
    ),
    429: (
        _l("Too many tries"),
        _l("You have tried too many times. Wait a few minutes, then try again."),
    ),
    500: (
        _l("Something went wrong on our side"),
        _l(
            "We could not complete your request. "
            "Nothing you did caused it; please try again in a moment."
        ),
    ),
    503: (
        _l("Service unavailable"),
        _l("The service is briefly unavailable. Please try again in a few minutes."),
    ),
}


class ServiceBusy(TooManyRequests):
    """The service-wide mail ceiling is reached: everyone waits, whoever they are."""

    retry_after_seconds = 600


class UnstorableText(BadRequest):
    """The request carries text the database cannot store (a NUL, a lone surrogate).

    ``where`` is the kind of input (``path``, ``query``, ``form``, ``json``) and
    ``field`` its name there, both shown to a JSON client so that it can fix its call.
    """

    title = _l("Text that cannot be saved")
    message = _l(
        "What was sent contains a character that cannot be saved (a null character, or "
        "half of a character). Remove it and try again."
    )

    error_code = "unstorable_text"

    def __init__(self, where: str, field: str):
        super().__init__()
        self.details = {"where": where, "field": field}


class JsonTooDeep(BadRequest):
    """A JSON body nested deeper than the parser goes (it would raise RecursionError)."""

    message = _l("The JSON sent is nested too deeply to be read.")
    error_code = "json_too_deep"

    def __init__(self):
        super().__init__()
        self.details = {"where": "json"}


class JsonNotRead(UnsupportedMediaType):
    """A JSON body sent to a route that reads forms, not JSON."""

    error_code = "form_expected"


# The ``code`` of a JSON error for each status, when the error names none of its own.
CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "server_error",
    503: "unavailable",
}
API_PREFIX = "/api/"


def wants_json() -> bool:
    """Whether the client reads JSON: an API route, a JSON body, or JSON asked for first."""
    if request.path.startswith(API_PREFIX) or request.is_json:
        return True
    best = request.accept_mimetypes.best_match(("text/html", "application/json"))
    return best == "application/json"


def json_error(status: int, code: str, message, **details):
    """The JSON error of every route: ``{"error": {"code", "message", ...details}}``.

    ``code`` is stable for programs; ``message`` is a sentence in the reader's language.
    """
    return jsonify({"error": {"code": code, "message": str(message), **details}}), status


def error_response(status: int, *, title=None, message=None, details=None, code=None):
    """The answer to a request that failed: the calm page, or the JSON error for JSON
    clients (``details`` say where the problem is, when there are any)."""
    if wants_json():
        default_message = MESSAGES.get(status, MESSAGES[400])[1]
        code = code or CODES.get(status, "error")
        return json_error(status, code, message or default_message, **(details or {}))
    return render_error(status, title=title, message=message)


def render_error(status: int, *, title=None, message=None):
    """Render the error page for ``status``."""
    default_title, default_message = MESSAGES.get(status, MESSAGES[400])
    return (
        render_template(
            "errors/error.html",
            status=status,
            title=title or default_title,
            message=message or default_message,
        ),
        status,
    )


def _http_error(error: HTTPException):
    """Any HTTP error Flask or a view raised; ours may carry their own words and details."""
    if error.code is None or error.code < 400:
        return error
    body, status = error_response(
        error.code,
        title=getattr(error, "title", None),
        message=getattr(error, "message", None),
        details=getattr(error, "details", None),
        code=getattr(error, "error_code", None),
    )
    # Keep what the error says in headers: Allow on a 405, Retry-After on a 429.
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    return body, status, headers


def _too_many(error: TooManyRequests):
    """A rate limit: say when to try again, in the reader's language, with Retry-After."""
    seconds = _seconds_to_wait(error)
    body, status = error_response(429, message=_wait_message(seconds))
    return body, status, {"Retry-After": str(seconds)}


def _wait_message(seconds: int) -> str:
    """ "Wait N minutes" (or hours, for the daily limit), then try again."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes <= 90:
        return ngettext(
            "You have tried too many times. Wait %(num)d minute, then try again.",
            "You have tried too many times. Wait %(num)d minutes, then try again.",
            minutes,
        )
    return ngettext(
        "You have tried too many times. Wait %(num)d hour, then try again.",
        "You have tried too many times. Wait %(num)d hours, then try again.",
        math.ceil(minutes / 60),
    )


def _seconds_to_wait(error: TooManyRequests) -> int:
    """Seconds until the limit that was hit lets the reader in again."""
    if isinstance(error, ServiceBusy):
        return error.retry_after_seconds
    current = limiter.current_limit
    if current is None:
        return 60
    # The window's own reset time: Flask-Limiter's reset_at adds a second to it.
    reset = current.window[0]
    return max(1, math.ceil(reset - time.time()))


def _csrf_error(error: CSRFError):
    """A form sent without its hidden token, or with a stale one."""
    return error_response(
        400,
        code="csrf_failed",
        title=_l("This form has expired"),
        message=_l(
            "For your security the form must be sent from this site within your visit. "
            "Go back, reload the page and send it again."
        ),
    )


def _database_down(error: OperationalError):
    """The database does not answer: say so, do not show SQL."""
    log.error("Database unavailable: %s", error)
    end_transaction()
    return error_response(503)


# SQLSTATEs of a database that answers but cannot write for now: a standby or a
# read-only transaction (25006), a disk full or out of memory (class 53).
CANNOT_WRITE_NOW = ("25006", "53")


def _database_refuses(error: InternalError):
    """A database that cannot write just now (a standby after a failover, a full disk):
    the same calm 503 as a database that does not answer; anything else is a 500."""
    end_transaction()
    state = getattr(error.orig, "sqlstate", None) or ""
    if state.startswith(CANNOT_WRITE_NOW):
        log.error("Database cannot write: %s", error.orig)
        return error_response(503)
    log.error("Unhandled database error", exc_info=error)
    return error_response(500)


def _account_gone(error: ObjectDeletedError):
    """The reader's account was deleted (in another tab, on another device) while this
    request ran: nothing of it is saved, and the reader is told so, not shown a 500."""
    log.info("A request met an account deleted meanwhile: %s", error)
    end_transaction()
    return error_response(
        410,
        code="account_gone",
        title=_l("This account no longer exists"),
        message=_l(
            "It was deleted while your request was on its way, so nothing was saved. "
            "You can sign up again at any time."
        ),
    )


def _unexpected(error: InternalServerError):
    """Anything unexpected: log it, show a calm page."""
    log.error("Unhandled error", exc_info=error.original_exception)
    return error_response(500)


def init_app(app: Flask) -> None:
    """Register the error pages on ``app``."""
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(TooManyRequests, _too_many)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(InternalError, _database_refuses)
    app.register_error_handler(ObjectDeletedError, _account_gone)
    app.register_error_handler(InternalServerError, _unexpected)
    app.register_error_handler(ServiceUnavailable, lambda error: error_response(503))
