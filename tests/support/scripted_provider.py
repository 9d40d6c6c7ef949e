"""An OpenID Connect provider in Python whose answers the test scripts: real HTTP on
127.0.0.1, real keys and signatures, and ID tokens as wrong as a test needs.

The round trip with a provider that behaves is tested against the npm package
``oidc-provider`` (``support.oidc_provider``). This one exists for what no honest
provider does: a token signed by another key, for another audience or issuer, expired,
with another nonce, or vouching for an unverified address. It signs in whoever arrives
at its authorization endpoint at once (there is nobody to log in), checks PKCE and the
client's secret like a real provider, and spends each code once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "news-site-test"
CLIENT_SECRET = "client-secret-for-the-tests"
DEFAULT_EMAIL = "lecteur@example.org"


@dataclass
class Script:
    """What the next token says and how it is made; the test changes it at will."""

    claims: dict = field(default_factory=dict)  # merged into the ID token; None deletes
    signed_by_stranger: bool = False  # signed by a key the JWKS does not hold (same kid)
    deny: str | None = None  # the authorization endpoint answers with this error
    token_error: str | None = None  # the token endpoint refuses with this error
    without_id_token: bool = False
    auth_methods: list[str] = field(default_factory=lambda: ["client_secret_basic"])
    metadata: dict = field(default_factory=dict)  # merged into discovery; None deletes
    discovery: object = None  # when set, the whole discovery answer instead


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    method: str | None
    used: bool = False


class ScriptedProvider:
    """The provider; ``issuer`` is its URL, ``script`` what it does next, ``requests``
    the authorization requests it received (their query, as dicts)."""

    def __init__(self):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.stranger = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.script = Script()
        self.grants: dict[str, Grant] = {}
        self.requests: list[dict] = []
        self.token_requests = 0
        self._spending = threading.Lock()  # a code is spent once, even by parallel requests
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def settings(self, **extra) -> dict:
        """The ``OIDC_PROVIDERS`` entry for this provider."""
        return {
            "issuer": self.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "label": "Scripted ID",
            **extra,
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what it answers ------------------------------------------------------------

    def metadata(self) -> object:
        if self.script.discovery is not None:
            return self.script.discovery
        answer = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": self.script.auth_methods,
        }
        answer.update(self.script.metadata)
        return {key: value for key, value in answer.items() if value is not None}

    def authorize(self, query: dict) -> str:
        """Where the browser goes from the authorization endpoint: the callback."""
        self.requests.append(query)
        state = query.get("state", "")
        if self.script.deny:
            return _with(query["redirect_uri"], error=self.script.deny, state=state)
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(
            client_id=query.get("client_id", ""),
            redirect_uri=query.get("redirect_uri", ""),
            nonce=query.get("nonce"),
            challenge=query.get("code_challenge"),
            method=query.get("code_challenge_method"),
        )
        return _with(query["redirect_uri"], code=code, state=state)

    def token(self, form: dict, authorization: str | None) -> tuple[int, dict]:
        """The token endpoint: client secret, code, verifier, then the scripted token."""
        self.token_requests += 1
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        if client_id != CLIENT_ID or secret != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        with self._spending:
            grant = self.grants.get(form.get("code", ""))
            if grant is None or grant.used or grant.redirect_uri != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant"}
            grant.used = True
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if grant.method != "S256" or _b64(digest) != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        if self.script.token_error:
            return 400, {"error": self.script.token_error}
        answer = {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer"}
        if not self.script.without_id_token:
            answer["id_token"] = self.id_token(grant)
        return 200, answer

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "subject-1",
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "email": DEFAULT_EMAIL,
            "email_verified": True,
        }
        claims.update(self.script.claims)
        claims = {key: value for key, value in claims.items() if value is not None}
        key = self.stranger if self.script.signed_by_stranger else self.key
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: object = None, location: str = ""):
                data = json.dumps({} if body is None else body).encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                if parts.path == "/.well-known/openid-configuration":
                    self._send(200, provider.metadata())
                elif parts.path == "/jwks":
                    self._send(200, {"keys": [provider.key.as_dict(private=False)]})
                elif parts.path == "/authorize":
                    self._send(302, location=provider.authorize(query))
                else:
                    self._send(404)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                form = {key: values[0] for key, values in form.items()}
                if urlsplit(self.path).path != "/token":
                    self._send(404)
                    return
                status, body = provider.token(form, self.headers.get("Authorization"))
                self._send(status, body)

        return Handler


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _with(url: str, **params) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


@pytest.fixture
def provider():
    """A scripted provider for one test (register by importing it into a test module)."""
    scripted = ScriptedProvider()
    yield scripted
    scripted.stop()
