"""The steps of signing in that the HTML pages and the JSON API share.

Each step is what one request does between reading its input and answering: the HTML
views (:mod:`.views`) then render a page, the API views (:mod:`auth_service.api`) JSON.
So a rule lives once, whichever door the reader comes through. Like every rule here,
these write in the caller's transaction; the view commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import request, session, url_for
from flask_login import current_user, login_user

from ..errors import ServiceBusy
from ..i18n import current_language
from ..metrics import LINKS_REQUESTED
from ..models import LoginAttempt, Reader
from . import abuse, signin
from .browser import (
    forget_attempts,
    remember_attempt,
    remember_device,
    remembered_attempts,
    safe_next,
)
from .forms import NEWSLETTER_WORDING
from .limits import resend_chain
from .signin_mail import queue_sign_in_mail


@dataclass(frozen=True)
class LinkRequest:
    """What became of a request for a link.

    ``outcome`` is ``"sent"`` (``issued`` holds the attempt), ``"decoy"`` (a bot filled
    the honeypot: it is told "sent" and nothing goes out), ``"suggest"`` (a likely typo:
    ``suggestion``), or ``"refuse"`` (a blocked or disposable domain: ``refusal``).
    """

    outcome: str
    issued: signin.IssuedLogin | None = None
    suggestion: str | None = None
    refusal: str | None = None


def ask_for_link(
    address: str,
    *,
    next_url: str | None,
    newsletter: bool,
    honeypot: str = "",
    as_typed: bool = False,
) -> LinkRequest:
    """Screen a normalised address, then start an attempt and queue its mail.

    The screening is the chain the address limits follow (:func:`abuse.screen`), so
    they count exactly the requests that mail. Raises :class:`ServiceBusy` when the
    service-wide hourly ceiling of sign-in mail is reached.
    """
    screening = abuse.screen(address, honeypot=honeypot, as_typed=as_typed)
    if screening.outcome != "mail":
        LINKS_REQUESTED.labels(screening.outcome).inc()
        return LinkRequest(
            screening.outcome, suggestion=screening.suggestion, refusal=screening.refusal
        )
    if abuse.mail_ceiling_reached():
        raise ServiceBusy()
    issued = signin.issue(
        address,
        next_url=safe_next(next_url),
        locale=current_language(),
        newsletter=newsletter,
        newsletter_wording=str(NEWSLETTER_WORDING),
        chain_id=resend_chain(),
    )
    queue_sign_in_mail(issued)
    LINKS_REQUESTED.labels("sent").inc()
    return LinkRequest("sent", issued=issued)


def remember_sent(response, issued: signin.IssuedLogin) -> None:
    """Give the asking browser the attempt cookie: what makes it "the browser that asked"."""
    remember_attempt(response, issued.attempt.id, remembered_attempts(request))


def consume_code(code: str) -> LoginAttempt:
    """The attempt this browser's ``code`` opens, or :class:`signin.SignInError`.

    A wrong code when no attempt is open any more (closed meanwhile by parallel guesses
    or a sign-in elsewhere) is reported as why none is open, not as a wrong code.
    """
    ids = remembered_attempts(request)
    try:
        return signin.consume_code(ids, code)
    except signin.SignInError as error:
        if error.reason in ("wrong_code", "malformed_code") and not signin.open_attempts(ids):
            raise signin.why_none_is_open(ids) from None
        raise


@dataclass(frozen=True)
class SignedIn:
    """A reader whose attempt was consumed, and where they go back to."""

    reader: Reader
    address: str
    next_url: str


def complete_sign_in(
    attempt: LoginAttempt, *, method: str, same_browser: bool = False, newsletter: bool = False
) -> SignedIn:
    """Record the sign-in of a consumed attempt's reader (account, consent, session row).

    The newsletter consent is the box ticked in the browser that signs in: the one the
    attempt was asked from (``same_browser``), or the confirm page's own box
    (``newsletter``). What another browser asked for never subscribes anyone. The caller
    commits, then calls :func:`open_session`.
    """
    # Read before the caller commits: an account deletion committed in the same instant
    # takes the attempt and the reader with it, and they could not be read again.
    next_url, address = safe_next(attempt.next_url), attempt.email
    if same_browser and attempt.newsletter:
        wording, source = attempt.newsletter_wording, attempt.next_url
    elif newsletter:
        wording, source = str(NEWSLETTER_WORDING), url_for("auth.confirm")
    else:
        wording, source = None, None
    reader = signin.complete(
        attempt,
        method=method,
        newsletter_wording=wording,
        newsletter_source=source,
        user_agent=request.user_agent.string,
        network=signin.approximate_network(request.remote_addr),
        replacing_session=current_user.session_key if current_user.is_authenticated else None,
    )
    return SignedIn(reader, address, next_url)


def complete_social_sign_in(address: str, *, method: str, next_url: str, newsletter_wording):
    """Record the sign-in of the owner of an address a provider vouched for.

    The newsletter consent is the box ticked on the wall before the round trip, in the
    words it showed then. The caller commits, then calls :func:`open_session`.
    """
    reader = signin.sign_in_address(
        address,
        locale=current_language(),
        method=method,
        newsletter_wording=newsletter_wording,
        newsletter_source=next_url,
        user_agent=request.user_agent.string,
        network=signin.approximate_network(request.remote_addr),
        replacing_session=current_user.session_key if current_user.is_authenticated else None,
    )
    return SignedIn(reader, address, safe_next(next_url))


def open_session(signed_in: SignedIn, response) -> None:
    """Start the committed sign-in's session in this browser and set its cookies.

    A new session: nothing from before the sign-in carries over (no fixation).
    """
    session.clear()
    login_user(signed_in.reader)
    session.permanent = True
    forget_attempts(response)
    remember_device(response, request, signed_in.address)
