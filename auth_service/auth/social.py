"""The round trip to an OpenID Connect provider, through Authlib's Flask client.

:func:`start` makes the authorization request: code flow with PKCE (S256), a ``state``
and a ``nonce``, kept in this browser's session beside what the reader chose on the
wall (where to go back to, the newsletter box). :func:`finish` takes the provider's
answer: the ``state`` must be one this browser started and has not used (it is removed
at first use, so a replayed callback finds nothing), the code is exchanged with its
verifier, and the ID token's signature (the provider's published keys), issuer,
audience, expiry and nonce are checked before :func:`oidc.verified_address` reads it.

Like :mod:`.flow`, this is the glue between requests and the rules: it reads the
session; :mod:`.oidc` decides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, request, session
from joserfc.errors import JoseError

from ..config import origin_of
from . import oidc

# Seconds to wait for a provider's discovery document, keys or token endpoint: the
# reader is waiting on the other end.
PROVIDER_TIMEOUT = 5
# A round trip not finished in this time starts again (Authlib's default is an hour).
ROUND_TRIP_SECONDS = 15 * 60
# Fields a callback may carry; anything else is ignored.
CALLBACK_FIELDS = ("code", "state", "error", "error_description")
CARRIED = "_oidc_carried"
# Round trips of one provider a session holds at once (tabs where a button was pressed).
KEPT_ROUND_TRIPS = 3


class SocialSignInError(Exception):
    """Why a sign-in with a provider did not happen.

    ``reason`` is one of ``cancelled`` (the reader said no at the provider),
    ``provider_error`` (the provider refused), ``expired`` (no round trip of this
    browser matches: forged, replayed, or too old), ``unavailable`` (the provider did
    not answer), ``invalid`` (its answer failed a check), or one of
    :class:`oidc.UnprovenAddress`'s reasons.
    """

    def __init__(self, reason: str, *, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail  # for the log, never shown
        self.next_url: str | None = None  # where the reader was going, once known


@dataclass(frozen=True)
class Carried:
    """What the reader chose on the wall, carried through the round trip."""

    next_url: str
    newsletter_wording: str | None  # the box's words when ticked, else None


def init_app(app: Flask) -> None:
    """Read ``OIDC_PROVIDERS`` and register each provider with Authlib."""
    providers = oidc.load_providers(app.config.get("OIDC_PROVIDERS"))
    app.config["OIDC_PROVIDERS"] = providers
    registry = OAuth()
    registry.init_app(app)
    for provider in providers.values():
        registry.register(
            provider.name,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            server_metadata_url=provider.discovery_url,
            client_kwargs={
                "scope": provider.scope,
                "code_challenge_method": "S256",
                "default_timeout": PROVIDER_TIMEOUT,
            },
            authorize_params=(
                {"response_mode": provider.response_mode} if provider.response_mode else None
            ),
        )
    app.extensions["auth_service.oidc"] = registry
    # Where the buttons' form leads on to (the pages' CSP form-action): each issuer, and
    # each authorization endpoint once discovered (see _client).
    app.config["OIDC_FORM_ORIGINS"] = list(
        dict.fromkeys(origin_of(urlsplit(provider.issuer)) for provider in providers.values())
    )


def providers() -> dict[str, oidc.Provider]:
    """The configured providers, in the order the buttons show them."""
    return current_app.config["OIDC_PROVIDERS"]


def _client(provider: oidc.Provider):
    """Authlib's client for ``provider``, its metadata loaded (once per process)."""
    client = current_app.extensions["auth_service.oidc"].create_client(provider.name)
    client.framework.expires_in = ROUND_TRIP_SECONDS  # Authlib's own part of the state
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError, TypeError) as error:
        # TypeError: a discovery document that is JSON but not an object.
        raise SocialSignInError("unavailable", detail=repr(error)) from None
    endpoint = metadata.get("authorization_endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        raise SocialSignInError("unavailable", detail="no authorization_endpoint")
    origins = current_app.config["OIDC_FORM_ORIGINS"]
    if origin_of(urlsplit(endpoint)) not in origins:
        origins.append(origin_of(urlsplit(endpoint)))
    if "token_endpoint_auth_method" not in client.client_kwargs:
        # Apple takes the client secret in the form only; most take HTTP Basic.
        supported = metadata.get("token_endpoint_auth_methods_supported") or []
        basic = "client_secret_basic" in supported or not supported
        client.client_kwargs["token_endpoint_auth_method"] = (
            "client_secret_basic" if basic else "client_secret_post"
        )
    return client


def start(provider: oidc.Provider, redirect_uri: str, carried: Carried) -> str:
    """The provider's authorization URL for this browser; its secrets go in the session."""
    client = _client(provider)
    try:
        authorization = client.create_authorization_url(redirect_uri)
    except (requests.RequestException, RuntimeError) as error:
        raise SocialSignInError("unavailable", detail=repr(error)) from None
    _forget_all_but_the_newest(provider)
    # Authlib keeps its part under the state (not the URL: the cookie has 4 KB for all);
    # ours sits beside it, under the same state.
    state = authorization["state"]
    client.framework.set_state_data(
        session,
        state,
        {
            "redirect_uri": redirect_uri,
            "nonce": authorization["nonce"],
            "code_verifier": authorization["code_verifier"],
        },
    )
    mine = {key: value for key, value in session.get(CARRIED, {}).items() if _fresh(value)}
    mine[state] = {
        "next": carried.next_url,
        "wording": carried.newsletter_wording,
        "exp": time.time() + ROUND_TRIP_SECONDS,
    }
    session[CARRIED] = mine
    return authorization["url"]


def _forget_all_but_the_newest(provider: oidc.Provider) -> None:
    """Keep the newest round trips only (each in a tab the reader may still finish):
    every button press adds one to the session cookie, which browsers cap at 4 KB."""
    prefix = f"_state_{provider.name}_"
    started = sorted(
        (value.get("exp", 0), key)
        for key, value in session.items()
        if key.startswith(prefix) and isinstance(value, dict)
    )
    for _exp, key in started[: max(0, len(started) - (KEPT_ROUND_TRIPS - 1))]:
        session.pop(key, None)
        session.get(CARRIED, {}).pop(key[len(prefix) :], None)


def _fresh(entry) -> bool:
    return isinstance(entry, dict) and entry.get("exp", 0) > time.time()


def callback_parameters() -> dict[str, str]:
    """The callback's own fields, from the query or (Apple's ``form_post``) the form."""
    source = request.form if request.method == "POST" else request.args
    return {key: source[key][:2048] for key in CALLBACK_FIELDS if source.get(key)}


def finish(provider: oidc.Provider) -> tuple[str, Carried]:
    """The address the provider vouches for, and what the reader carried, or
    :class:`SocialSignInError`. The state is spent whatever the outcome."""
    answer = callback_parameters()
    carried = _take_carried(answer.get("state"))
    try:
        return _checked_address(provider, answer, carried), carried
    except SocialSignInError as error:
        error.next_url = carried.next_url if carried else None
        raise


def _checked_address(provider: oidc.Provider, answer: dict, carried: Carried | None) -> str:
    if answer.get("error") == "access_denied":
        _forget_state(provider, answer.get("state"))
        raise SocialSignInError("cancelled")
    if "error" in answer:
        _forget_state(provider, answer.get("state"))
        raise SocialSignInError("provider_error", detail=answer["error"][:64])
    if carried is None or not answer.get("code"):
        _forget_state(provider, answer.get("state"))
        raise SocialSignInError("expired")
    client = _client(provider)
    try:
        token = client.authorize_access_token(
            claims_options={
                "iss": {"essential": True, "validate": _issuer_check(provider, client)},
                "aud": {"essential": True, "value": provider.client_id},
                "exp": {"essential": True},
                "nonce": {"essential": True},
            }
        )
    except (requests.ConnectionError, requests.Timeout) as error:
        raise SocialSignInError("unavailable", detail=repr(error)) from None
    except OAuthError as error:  # the token endpoint refused, or the state was unknown
        reason = "expired" if error.error == "mismatching_state" else "provider_error"
        raise SocialSignInError(reason, detail=str(error.error)[:64]) from None
    except (
        JoseError,
        requests.RequestException,
        ValueError,
        KeyError,
        TypeError,
        RuntimeError,  # Authlib: metadata without jwks_uri
    ) as error:
        raise SocialSignInError("invalid", detail=repr(error)[:200]) from None
    claims = token.get("userinfo")
    if not claims:  # no ID token came back
        raise SocialSignInError("invalid", detail="no id_token")
    try:
        return oidc.verified_address(dict(claims))
    except oidc.UnprovenAddress as error:
        raise SocialSignInError(error.reason) from None


def _issuer_check(provider: oidc.Provider, client):
    expected = client.server_metadata.get("issuer") or provider.issuer

    def check(claims, _value) -> bool:
        return oidc.issuer_matches(expected, claims)

    return check


def _take_carried(state: str | None) -> Carried | None:
    """Remove and return what :func:`start` kept for ``state``, if it is this browser's."""
    mine = session.get(CARRIED, {})
    entry = mine.pop(state, None) if state else None
    session[CARRIED] = {key: value for key, value in mine.items() if _fresh(value)}
    if not _fresh(entry):
        return None
    return Carried(next_url=entry["next"], newsletter_wording=entry["wording"])


def _forget_state(provider: oidc.Provider, state: str | None) -> None:
    if state:
        session.pop(f"_state_{provider.name}_{state}", None)
