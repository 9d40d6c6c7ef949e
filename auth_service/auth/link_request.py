"""What a JSON request for a sign-in link carries, read and checked once.

The address limits run before the view (Flask-Limiter) and count only a request that
would mail. So they and the API view must read the body alike, and refuse alike: a body
the view would refuse (a field of the wrong type, an unknown newsletter) is no request
for mail, and must not spend the address's allowance. Both call :func:`of_request`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, request
from flask_babel import lazy_gettext as _l

from ..newsletter import subscriptions
from .browser import MAX_NEXT_LENGTH

MAX_EMAIL_LENGTH = 320  # what anyone could type; the address rules say the rest
MAX_HONEYPOT_LENGTH = 200


class NotAnObject(ValueError):
    """The body is not a JSON object."""


class InvalidField(ValueError):
    """A member of the body has the wrong type or size; ``message`` says which."""

    def __init__(self, field: str, message):
        super().__init__(field)
        self.field, self.message = field, message


@dataclass(frozen=True)
class LinkRequest:
    """The members of ``POST /api/v1/login``, checked for type and size."""

    email: str  # as typed, stripped: the address rules check it next
    next_url: str
    newsletters: frozenset[str]
    as_typed: bool
    website: str  # the honeypot: only bots fill it in


def not_text(name: str, longest: int) -> InvalidField:
    """The refusal of a member that is not text, or longer than ``longest``."""
    return InvalidField(
        name,
        _l(
            "The field %(name)s must be text of at most %(count)d characters.",
            name=name,
            count=longest,
        ),
    )


def _text(body: dict, name: str, *, longest: int, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > longest:
        raise not_text(name, longest)
    return value


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidField(name, _l("The field %(name)s must be true or false.", name=name))
    return value


def _newsletters(body: dict) -> frozenset[str]:
    value = body.get("newsletters", [])
    known = {letter.slug for letter in subscriptions.all_newsletters()}
    if (
        not isinstance(value, list)
        or len(value) > len(known)
        or not all(isinstance(item, str) and item in known for item in value)
    ):
        raise InvalidField(
            "newsletters",
            _l(
                "The field newsletters must list newsletters of this site: %(names)s.",
                names=", ".join(sorted(known)),
            ),
        )
    return frozenset(value)


def parse(body) -> LinkRequest:
    """Check a decoded JSON body; raise :class:`NotAnObject` or :class:`InvalidField`."""
    if not isinstance(body, dict):
        raise NotAnObject()
    return LinkRequest(
        email=_text(body, "email", longest=MAX_EMAIL_LENGTH).strip(),
        next_url=_text(body, "next", longest=MAX_NEXT_LENGTH, default="/"),
        newsletters=_newsletters(body),
        as_typed=_flag(body, "as_typed"),
        website=_text(body, "website", longest=MAX_HONEYPOT_LENGTH),
    )


def of_request() -> LinkRequest:
    """This request's JSON body, checked (once per request); raises like :func:`parse`.

    A body that is not JSON, or too deep to decode, reads as no object: the input guard
    of ``security.py`` answers it.
    """
    if "link_request" not in g:
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            body = None
        try:
            g.link_request = parse(body)
        except ValueError as error:
            g.link_request = error
    if isinstance(g.link_request, ValueError):
        raise g.link_request
    return g.link_request
