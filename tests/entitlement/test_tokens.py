"""Entitlement tokens (contract §8): signed by the service, verified by the news site's
servers with another library (PyJWT) against the published JWKS."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import jwt
import pytest
from support.web import Visitor, csrf_token, post_form, rows, sign_in

from auth_service.entitlement import keys, tokens
from auth_service.extensions import db
from auth_service.models import Reader, SigningKey, utcnow

DOMAIN = "news.test"
AUDIENCE = "www.news.test"
SITE = "http://www.news.test"
ADDRESS = "lea@example.com"

pytestmark = pytest.mark.settings(
    ENTITLEMENT_COOKIE_DOMAIN=DOMAIN, ENTITLEMENT_AUDIENCE=AUDIENCE, ALLOWED_ORIGINS=[SITE]
)


def jwks_of(client) -> dict:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return response.get_json()


def verify_as_the_news_site(client, token: str) -> dict:
    """What a news site's server does: PyJWT, the JWKS, the key named by ``kid``."""
    keyset = jwt.PyJWKSet.from_dict(jwks_of(client))
    key = keyset[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(
        token,
        key,
        algorithms=["ES256"],
        audience=AUDIENCE,
        issuer="http://news.test",
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )


def token_cookie(response) -> str | None:
    """The Set-Cookie header of the token, if the response sets or deletes it."""
    return next(
        (h for h in response.headers.getlist("Set-Cookie") if h.startswith("reader_access=")), None
    )


def signed_in_token(app, client) -> str:
    response = sign_in(app, client, ADDRESS)
    header = token_cookie(response)
    assert header, response.headers.getlist("Set-Cookie")
    return header.split(";", 1)[0].split("=", 1)[1]


def test_signing_in_sets_the_token_cookie_on_the_news_sites_domain(app, client):
    response = sign_in(app, client, ADDRESS)
    header = token_cookie(response)
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")}
    assert attributes["domain"].lower() == f"domain={DOMAIN}"
    assert "httponly" in attributes and attributes["samesite"] == "SameSite=Lax"
    assert attributes["path"] == "Path=/"
    assert attributes["max-age"] == "Max-Age=3600"


def test_the_token_verifies_with_pyjwt_and_names_no_address(app, client):
    token = signed_in_token(app, client)
    claims = verify_as_the_news_site(client, token)
    [reader] = rows(Reader)
    assert claims["sub"] == reader.public_id
    assert claims["ent"] == ["registered"]
    assert claims["exp"] - claims["iat"] == 3600
    assert ADDRESS not in json.dumps(claims) and "lea" not in token


def test_a_tampered_or_foreign_token_is_refused_by_the_news_site(app, client):
    token = signed_in_token(app, client)
    header, payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps({**verify_as_the_news_site(client, token), "sub": "someone"}).encode()
    ).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify_as_the_news_site(client, f"{header}.{forged}.{signature}")
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            token,
            jwt.PyJWKSet.from_dict(jwks_of(client))[jwt.get_unverified_header(token)["kid"]],
            algorithms=["ES256"],
            audience="another-site",
        )
    assert tokens.verify(f"{header}.{forged}.{signature}") is None


def test_an_expired_token_is_refused(app, client):
    reader = Visitor(app, client)
    reader.sign_in(ADDRESS)
    [account] = rows(Reader)
    old = tokens.issue(account, now=utcnow() - timedelta(hours=2))
    with pytest.raises(jwt.ExpiredSignatureError):
        verify_as_the_news_site(client, old.token)
    assert tokens.verify(old.token) is None


def test_the_jwks_holds_public_keys_only_and_may_be_cached(app, client):
    signed_in_token(app, client)
    response = client.get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == "public, max-age=300"
    [key] = response.get_json()["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert "d" not in key
    assert "PRIVATE" not in response.get_data(as_text=True)


def test_rotation_keeps_old_tokens_valid_and_new_ones_carry_the_new_kid(app, client, runner):
    before = signed_in_token(app, client)
    old_kid = jwt.get_unverified_header(before)["kid"]
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert verify_as_the_news_site(client, before)["sub"]  # the old key is still published
    [account] = rows(Reader)
    after = tokens.issue(account).token
    new_kid = jwt.get_unverified_header(after)["kid"]
    assert new_kid != old_kid and new_kid in result.output
    verify_as_the_news_site(client, after)
    assert {key["kid"] for key in jwks_of(client)["keys"]} == {old_kid, new_kid}


def test_a_retired_key_leaves_the_jwks_once_its_last_token_has_expired(app, client, runner):
    signed_in_token(app, client)
    runner.invoke(args=["keys", "rotate"])
    [retired] = rows(SigningKey, SigningKey.retired_at.is_not(None))
    retired.retired_at = utcnow() - timedelta(seconds=3600 + 61)
    db.session.commit()
    kids = {key["kid"] for key in jwks_of(client)["keys"]}
    assert retired.kid not in kids and len(kids) == 1
    listing = runner.invoke(args=["keys", "list"]).output
    assert "no longer needed" in listing and "current" in listing
    runner.invoke(args=["keys", "rotate"])
    assert retired.kid not in {row.kid for row in rows(SigningKey)}  # dropped


def test_keys_list_and_logs_never_show_a_private_key(app, client, runner, caplog):
    with caplog.at_level("DEBUG"):
        signed_in_token(app, client)
        runner.invoke(args=["keys", "rotate"])
        listing = runner.invoke(args=["keys", "list"]).output
    assert "PRIVATE" not in listing and "BEGIN" not in listing
    assert "PRIVATE" not in caplog.text
    [current] = rows(SigningKey, SigningKey.retired_at.is_(None))
    assert current.private_pem.splitlines()[1] not in listing
    assert "private_pem" not in repr(current)


def test_the_token_is_renewed_once_half_spent_and_not_before(app, client):
    # The test client keeps no cookie of another domain: hand it back as a browser
    # on auth.news.test would.
    client.set_cookie("reader_access", signed_in_token(app, client))
    assert token_cookie(client.get("/")) is None  # fresh: nothing to do
    [account] = rows(Reader)
    half_spent = tokens.issue(account, now=utcnow() - timedelta(seconds=1900)).token
    client.set_cookie("reader_access", half_spent)  # as the browser sends it back
    renewed = token_cookie(client.get("/"))
    assert renewed and half_spent not in renewed


@pytest.mark.parametrize("how", ["form", "api", "everywhere", "delete"])
def test_signing_out_or_deleting_the_account_clears_the_token_cookie(app, client, how):
    signed_in_token(app, client)
    if how == "form":
        response = client.post("/logout", data={"csrf_token": csrf_token(client, "/account")})
    elif how == "api":
        response = client.post("/api/v1/logout", json={}, headers={"Origin": SITE})
    elif how == "everywhere":
        response = post_form(client, "/account/sign-out-everywhere", {}, page="/account")
    else:
        response = post_form(client, "/account/delete", {"confirm": ADDRESS}, page="/account")
    header = token_cookie(response)
    assert header and "reader_access=;" in header and "1970" in header


def test_a_signed_out_browser_loses_a_token_it_still_carries(app, client, browser):
    token = signed_in_token(app, client)
    browser.set_cookie("reader_access", token)
    header = token_cookie(browser.get("/"))
    assert header and "reader_access=;" in header


@pytest.mark.settings(ENTITLEMENT_COOKIE_DOMAIN=None)
def test_without_a_cookie_domain_no_token_cookie_is_set(app, client):
    assert token_cookie(sign_in(app, client, ADDRESS)) is None


def test_the_api_hands_the_token_to_a_signed_in_reader_only(app, client):
    refused = client.get("/api/v1/entitlement")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "not_signed_in"
    sign_in(app, client, ADDRESS)
    body = client.get("/api/v1/entitlement").get_json()
    claims = verify_as_the_news_site(client, body["token"])
    assert body["expires_at"].endswith("Z")
    assert abs(claims["exp"] - time.time() - 3600) < 60


def test_the_first_key_is_made_once_for_many_tokens(app, client):
    signed_in_token(app, client)
    [account] = rows(Reader)
    kids = {jwt.get_unverified_header(tokens.issue(account).token)["kid"] for _ in range(5)}
    assert len(kids) == 1 and len(rows(SigningKey)) == 1
    assert keys.current()[0].kid in kids


def test_shared_cacheable_answers_never_carry_a_token(app, client):
    signed_in_token(app, client)  # the test client sends no news.test cookie: renewal due
    for path in ("/.well-known/jwks.json", "/embed/paywall.js", "/healthz"):
        assert token_cookie(client.get(path)) is None, path


def test_a_database_outage_signs_nobody_out_of_the_news_site(app, client, monkeypatch, tmp_path):
    """The reader cannot be looked up while the database is down: that is not a
    sign-out, and the token cookie stays (the news site keeps rendering the body)."""
    from support.web import app_without_database

    signed_in_token(app, client)
    session_cookie = client.get_cookie("auth_session")
    gone = app_without_database(app, monkeypatch, tmp_path)
    gone.config.update(ENTITLEMENT_COOKIE_DOMAIN=DOMAIN, ENTITLEMENT_AUDIENCE=AUDIENCE)
    browser = gone.test_client()
    browser.set_cookie("auth_session", session_cookie.value)
    browser.set_cookie("reader_access", "a.token.kept")
    response = browser.get("/")
    assert response.status_code == 503
    assert token_cookie(response) is None


@pytest.mark.parametrize("domain", ["example.org", "ews.test", "auth.news.test.evil"])
def test_a_cookie_domain_that_does_not_hold_the_service_is_refused_at_start(domain):
    from auth_service import create_app
    from auth_service.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="ENTITLEMENT_COOKIE_DOMAIN"):
        create_app(
            {
                "SECRET_KEY": "k" * 40,
                "PUBLIC_URL": "https://auth.news.test",
                "ENTITLEMENT_COOKIE_DOMAIN": domain,
            }
        )


def test_statement_values_never_reach_the_logs(app):
    assert db.engine.hide_parameters is True
