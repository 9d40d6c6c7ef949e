"""The news site's own check of the reader's token (examples/news-site/verify_server.py),
against tokens the service signs and the JWKS it publishes, without a browser.

The site's key cache fetches the JWKS through the test client and reads a clock the
tests move, so that every fetch is counted and no test waits for time to pass.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.network import free_port
from support.news_site import GATED_WORDS, example_module, start_example_server
from support.web import rows, sign_in

from auth_service.entitlement import keys, tokens
from auth_service.models import Reader, SigningKey, utcnow

verify_server = example_module("verify_server")

SERVICE = "http://news.test"  # the app's PUBLIC_URL: the tokens' issuer
JWKS_URL = f"{SERVICE}/.well-known/jwks.json"
AUDIENCE = "www.news.test"
INTERVAL = verify_server.REFETCH_INTERVAL

pytestmark = pytest.mark.settings(ENTITLEMENT_AUDIENCE=AUDIENCE)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ServiceThroughClient:
    """The service's JWKS, fetched through the test client; every fetch counted."""

    def __init__(self, client):
        self.client = client
        self.fetches = 0
        self.down = False

    def __call__(self, url: str) -> tuple[bytes, str | None]:
        assert url == JWKS_URL
        self.fetches += 1
        if self.down:
            raise OSError("connection refused")
        response = self.client.get("/.well-known/jwks.json")
        return response.get_data(), response.headers.get("Cache-Control")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def service(client):
    return ServiceThroughClient(client)


@pytest.fixture
def site_keys(service, clock):
    """The news site's cache of the service's keys."""
    return verify_server.ServiceKeys(JWKS_URL, fetch=service, clock=clock)


@pytest.fixture
def reader(app, client) -> Reader:
    """A reader who has signed up (the service has made its first key by then)."""
    sign_in(app, client, "lea@example.com")
    [account] = rows(Reader)
    return account


def check(token: str | None, site_keys, audience: str = AUDIENCE) -> dict | None:
    """What the news site's server decides: the claims (the body) or None (the wall)."""
    return verify_server.registered_reader(token, site_keys, SERVICE, audience)


def signed_with_the_service_key(claims: dict) -> str:
    """A token signed with the service's current key, with any claims."""
    row, _ = keys.current()
    return jwt.encode(claims, row.private_pem, algorithm="ES256", headers={"kid": row.kid})


def signed_with_a_key_of_our_own(kid: str, reader: Reader) -> str:
    """A token with the right claims, signed with a key the service never published."""
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    claims = jwt.decode(
        tokens.issue(reader).token, options={"verify_signature": False}, algorithms=["ES256"]
    )
    return jwt.encode(claims, pem, algorithm="ES256", headers={"kid": kid})


def test_a_valid_token_opens_the_body_and_the_keys_are_fetched_once(reader, site_keys, service):
    claims = check(tokens.issue(reader).token, site_keys)
    assert claims["sub"] == reader.public_id and claims["ent"] == ["registered"]
    assert check(tokens.issue(reader).token, site_keys)  # from the cache
    assert service.fetches == 1


def test_no_cookie_or_garbage_gets_the_wall_without_calling_the_service(site_keys, service):
    for token in (None, "", "not-a-token", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"):
        assert check(token, site_keys) is None
    assert service.fetches == 0


def test_a_tampered_token_gets_the_wall(reader, site_keys):
    header, payload, signature = tokens.issue(reader).token.split(".")
    claims = check(f"{header}.{payload}.{signature}", site_keys)
    forged = jwt.utils.base64url_encode(
        json.dumps({**claims, "sub": "someone-else"}).encode()
    ).decode()
    assert check(f"{header}.{forged}.{signature}", site_keys) is None
    # The kid of the service's key, on a token signed with another key.
    assert check(signed_with_a_key_of_our_own(keys.current()[0].kid, reader), site_keys) is None


def test_an_expired_token_gets_the_wall(reader, site_keys):
    old = tokens.issue(reader, now=utcnow() - timedelta(hours=2)).token
    assert check(old, site_keys) is None
    now = int(utcnow().timestamp())
    claims = {"iss": SERVICE, "aud": AUDIENCE, "sub": "x", "iat": now, "ent": ["registered"]}
    assert check(signed_with_the_service_key(claims), site_keys) is None  # no expiry at all


def test_a_token_for_another_site_or_from_another_issuer_gets_the_wall(reader, site_keys):
    token = tokens.issue(reader).token
    assert check(token, site_keys, audience="another-site") is None
    assert verify_server.registered_reader(token, site_keys, "http://evil.test", AUDIENCE) is None


def test_a_token_without_the_registered_entitlement_gets_the_wall(reader, site_keys):
    now = int(utcnow().timestamp())
    claims = {"iss": SERVICE, "aud": AUDIENCE, "sub": reader.public_id, "iat": now}
    claims["exp"] = now + 600
    assert check(signed_with_the_service_key({**claims, "ent": ["registered"]}), site_keys)
    assert check(signed_with_the_service_key({**claims, "ent": []}), site_keys) is None
    assert check(signed_with_the_service_key(claims), site_keys) is None


def test_an_unknown_kid_refetches_the_keys_once_and_made_up_kids_cannot_hammer(
    reader, runner, site_keys, service, clock
):
    before = tokens.issue(reader).token
    assert check(before, site_keys) and service.fetches == 1
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    clock.advance(5)  # a rotation right after the site fetched the keys

    after = tokens.issue(reader).token  # signed with the new key
    assert check(after, site_keys) and service.fetches == 2
    assert check(before, site_keys) and service.fetches == 2  # the old key is still there

    made_up = signed_with_a_key_of_our_own("made-up", reader)
    for _ in range(20):
        assert check(made_up, site_keys) is None
    assert service.fetches == 2  # within the interval of the last refetch
    clock.advance(INTERVAL)
    assert check(made_up, site_keys) is None and service.fetches == 3
    assert check(made_up, site_keys) is None and service.fetches == 3


def test_the_keys_are_kept_for_the_jwks_max_age_then_fetched_again(
    reader, site_keys, service, clock
):
    token = tokens.issue(reader).token
    check(token, site_keys)
    clock.advance(299)
    assert check(token, site_keys) and service.fetches == 1
    clock.advance(1)  # the service's max-age=300 has passed
    assert check(token, site_keys) and service.fetches == 2


@pytest.mark.parametrize(
    "cache_control, seconds",
    [("public, max-age=300", 300), ("max-age=5", 300), ("max-age=9999999", 86400), (None, 300)],
)
def test_the_keys_are_kept_a_few_minutes_at_least_and_a_day_at_most(cache_control, seconds):
    assert verify_server.kept_for(cache_control) == seconds


def test_when_the_service_is_unreachable_the_keys_fetched_before_still_work(
    reader, site_keys, service, clock, capsys
):
    token = tokens.issue(reader).token
    check(token, site_keys)
    service.down = True
    clock.advance(301)
    assert check(token, site_keys)  # the keys fetched before
    assert "could not be read" in capsys.readouterr().err
    assert check(token, site_keys) and service.fetches == 2  # not again at once
    clock.advance(INTERVAL)
    service.down = False
    assert check(token, site_keys) and service.fetches == 3


def test_an_empty_key_set_is_a_wall_not_an_error(app, site_keys, service):
    assert rows(SigningKey) == []
    assert service.client.get("/.well-known/jwks.json").get_json() == {"keys": []}
    token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": "none"})
    assert check(token, site_keys) is None and service.fetches == 1


# --- The server: what it hands out -------------------------------------------------------


def fetch(url: str, cookie: str | None = None) -> tuple[int, dict, str]:
    """Status, headers and body of one GET to the news site's server."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read().decode()


@pytest.fixture(params=["verify_server.py", "serve.py"])
def news_site_server(request, tmp_path):
    """One of the example's servers on a free port, naming a service nobody needs to
    reach here: the one that renders bodies, and the static one."""
    port = free_port()
    arguments = ["--service", "http://auth.news.test:5000"]
    if request.param == "verify_server.py":
        arguments += ["--audience", AUDIENCE]
        arguments += ["--jwks-url", f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"]
    process = start_example_server(request.param, port, arguments, tmp_path / "news-site.log")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_the_server_hands_out_pages_and_assets_but_never_the_bodies(news_site_server):
    serve = example_module("serve")
    status, headers, page = fetch(f"{news_site_server}/article.html", cookie="reader_access=x.y.z")
    assert status == 200 and GATED_WORDS not in page and "data-paywall" in page
    assert headers["Content-Security-Policy"] == serve.content_security_policy(
        "http://auth.news.test:5000"
    )
    assert headers["Cache-Control"] in ("private, no-cache", "no-cache")
    assert fetch(f"{news_site_server}/site.css")[0] == 200
    assert fetch(f"{news_site_server}/")[0] == 200
    for path in (
        "/bodies/train-de-nuit-port-ardent-montcalvel.html",
        "/bodies%2Ftrain-de-nuit-port-ardent-montcalvel.html",
        "/verify_server.py",
        "/README.md",
        "/../pyproject.toml",
        "/bodies/",
    ):
        status, _, body = fetch(f"{news_site_server}{path}")
        assert status == 404 and GATED_WORDS not in body, path
