"""Social sign-in: the OpenID Connect providers of ``OIDC_PROVIDERS`` and what their
ID tokens must say before an address is taken as proven.

Nothing here touches ``request`` or ``session``: :mod:`.social` runs the round trip
through Authlib and hands the validated claims to :func:`verified_address`. Google,
Microsoft, Apple and a publisher's own provider are all configuration; the few ways
they differ from the specification are handled here, each where it bites
(docs/operations.md, "Social sign-in").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import ConfigurationError
from .addresses import InvalidAddress, normalise_address

# Short names go into URLs and into the reader's sign-in history (16 characters there).
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")
RESERVED_NAMES = {"link", "code"}  # the other ways of signing in, in the same history
STYLES = {"google", "microsoft", "apple", "generic"}
SETTINGS = {
    "issuer",
    "client_id",
    "client_secret",
    "label",
    "style",
    "icon",
    "response_mode",
    "scope",
}
# Microsoft's multi-tenant endpoints publish this placeholder in their issuer: each
# token's issuer names the reader's own tenant, the ``tid`` claim.
TENANT_PLACEHOLDER = "{tenantid}"


@dataclass(frozen=True)
class Provider:
    """One provider a reader may sign in with."""

    name: str
    label: str  # what the button says after "Sign in with"
    issuer: str
    client_id: str
    client_secret: str
    style: str  # whose branding rules the button follows
    icon: str | None  # URL of the provider's own logo, from its brand kit
    response_mode: str | None  # "form_post" for Apple
    scope: str

    @property
    def discovery_url(self) -> str:
        """Where the provider's discovery document is (OpenID Connect Discovery 1.0)."""
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def _style_of(name: str, issuer: str, configured: str | None) -> str:
    """The branding a button follows: as configured, else guessed from the issuer."""
    if configured is not None:
        if configured not in STYLES:
            raise ConfigurationError(
                f"OIDC_PROVIDERS[{name!r}].style must be one of {sorted(STYLES)}."
            )
        return configured
    host = urlsplit(issuer).hostname or ""
    if host == "accounts.google.com":
        return "google"
    if host == "login.microsoftonline.com":
        return "microsoft"
    if host == "appleid.apple.com":
        return "apple"
    return "generic"


def _text(name: str, settings: dict, key: str, *, required: bool = True) -> str | None:
    value = settings.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"OIDC_PROVIDERS[{name!r}].{key} must be a non-empty string.")
    return value.strip()


def _provider(name: str, settings: Any) -> Provider:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise ConfigurationError(
            f"OIDC_PROVIDERS: {name!r} is not a usable short name: 1 to 16 of a-z, 0-9, "
            "- and _, starting with a letter or digit, and not 'link' or 'code'."
        )
    if not isinstance(settings, dict):
        raise ConfigurationError(f"OIDC_PROVIDERS[{name!r}] must be an object.")
    unknown = set(settings) - SETTINGS
    if unknown:
        raise ConfigurationError(
            f"OIDC_PROVIDERS[{name!r}] has unknown settings {sorted(unknown)}; "
            f"known: {sorted(SETTINGS)}."
        )
    issuer = _text(name, settings, "issuer")
    parts = urlsplit(issuer)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise ConfigurationError(
            f"OIDC_PROVIDERS[{name!r}].issuer must be an https URL (http only on this machine)."
        )
    response_mode = _text(name, settings, "response_mode", required=False)
    if response_mode not in (None, "query", "form_post"):
        raise ConfigurationError(
            f"OIDC_PROVIDERS[{name!r}].response_mode must be 'query' or 'form_post'."
        )
    scope = _text(name, settings, "scope", required=False) or "openid email profile"
    if "openid" not in scope.split() or "email" not in scope.split():
        raise ConfigurationError(f"OIDC_PROVIDERS[{name!r}].scope must include openid and email.")
    return Provider(
        name=name,
        label=_text(name, settings, "label") or name,
        issuer=issuer,
        client_id=_text(name, settings, "client_id") or "",
        client_secret=_text(name, settings, "client_secret") or "",
        style=_style_of(name, issuer, settings.get("style")),
        icon=_text(name, settings, "icon", required=False),
        response_mode=response_mode,
        scope=scope,
    )


def load_providers(configured: Any) -> dict[str, Provider]:
    """``OIDC_PROVIDERS`` (a JSON object, as text or already parsed), checked at start."""
    if configured in (None, "", {}):
        return {}
    if isinstance(configured, str):
        try:
            configured = json.loads(configured)
        except ValueError as error:
            raise ConfigurationError(f"OIDC_PROVIDERS is not valid JSON: {error}") from None
    if not isinstance(configured, dict):
        raise ConfigurationError("OIDC_PROVIDERS must be a JSON object from short names.")
    return {name: _provider(name, settings) for name, settings in configured.items()}


def issuer_matches(expected: str, claims: dict) -> bool:
    """Whether the ID token's ``iss`` is the provider's issuer.

    A multi-tenant Microsoft issuer holds ``{tenantid}``: the token's own issuer names
    the reader's tenant, which the token's ``tid`` claim must repeat.
    """
    issued_by = claims.get("iss")
    if expected == "https://accounts.google.com" and issued_by == "accounts.google.com":
        return True  # Google documents both forms of its issuer
    if TENANT_PLACEHOLDER not in expected:
        return issued_by == expected
    tenant = claims.get("tid")
    if not isinstance(tenant, str) or not re.fullmatch(r"[0-9a-fA-F-]{1,64}", tenant):
        return False
    return issued_by == expected.replace(TENANT_PLACEHOLDER, tenant)


class UnprovenAddress(Exception):
    """The provider did not vouch for an address we can use: ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # "no_email", "unverified" or "invalid_email"


def _is_true(value: Any) -> bool:
    # Apple sends "true" as a string, as Google once did; everyone else a boolean.
    return value is True or value == "true"


def verified_address(claims: dict) -> str:
    """The normalised address the provider has verified, or :class:`UnprovenAddress`.

    ``email_verified`` must be true. Microsoft sends no ``email_verified``; its optional
    ``xms_edov`` claim (the domain owner verified the address) stands in for it when
    the app registration asks for it.
    """
    address = claims.get("email")
    if not isinstance(address, str) or not address:
        raise UnprovenAddress("no_email")
    verified = claims.get("email_verified")
    if verified is None:
        verified = claims.get("xms_edov")
    if not _is_true(verified):
        raise UnprovenAddress("unverified")
    try:
        return normalise_address(address)
    except InvalidAddress:
        raise UnprovenAddress("invalid_email") from None
