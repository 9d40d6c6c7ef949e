"""Social sign-in (docs/contract.md §10) against a provider the test scripts.

A real HTTP provider on 127.0.0.1 with real keys (support.scripted_provider): the
service discovers it, sends the reader there with PKCE, state and nonce, exchanges the
code and checks the ID token. The scripted provider can also lie, which is what most
of these tests need; the round trip with the npm ``oidc-provider`` is in
test_social_round_trip.py and, in Chromium, tests/journey.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from support.network import free_port
from support.scripted_provider import CLIENT_ID, DEFAULT_EMAIL, provider
from support.settings import SECRET
from support.web import assert_calm_page, csrf_token, in_english, is_signed_in, rows, text_of

from auth_service import create_app
from auth_service.auth.oidc import issuer_matches
from auth_service.config import ConfigurationError
from auth_service.extensions import db
from auth_service.models import NewsletterConsent, Reader, SignInEvent

ARTICLE = "/articles/train-de-nuit"

# The scripted provider's fixture, imported so that pytest finds it in this module.
__all__ = ["provider"]


@pytest.fixture
def settings(settings, provider):
    return {**settings, "OIDC_PROVIDERS": {"scripted": provider.settings()}}


def start(client, *, next_url=ARTICLE, newsletter=False):
    """Press the provider's button on the login form."""
    data = {"csrf_token": csrf_token(client), "next": next_url, "email": ""}
    if newsletter:
        data["newsletter"] = "y"
    return client.post("/login/with/scripted", data=data)


def at_provider(location: str) -> str:
    """What the provider answers the browser: the callback URL it sends it back to."""
    answer = requests.get(location, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def round_trip(client, **start_options):
    """Button, provider, callback: the callback's answer."""
    started = start(client, **start_options)
    assert started.status_code == 303, started.get_data(as_text=True)[:300]
    return client.get(path_of(at_provider(started.location)))


def test_the_button_signs_a_new_reader_in_and_leads_back_to_the_article(app, client):
    answer = round_trip(client)
    assert answer.status_code == 303
    assert answer.location == ARTICLE
    assert is_signed_in(client)
    (reader,) = rows(Reader)
    assert reader.email == DEFAULT_EMAIL
    (event,) = rows(SignInEvent)
    assert event.method == "scripted"
    assert "Scripted ID" in text_of(client.get("/account"))  # in the recent sign-ins


def test_the_authorization_request_carries_pkce_state_and_nonce(app, client, provider):
    started = start(client)
    assert started.location.startswith(f"{provider.issuer}/authorize?")
    query = {key: values[0] for key, values in parse_qs(urlsplit(started.location).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "http://news.test/login/with/scripted/callback"
    assert set(query["scope"].split()) >= {"openid", "email"}
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) >= 43
    assert len(query["state"]) >= 20 and len(query["nonce"]) >= 20
    # A second start has its own secrets.
    again = start(client)
    other = {key: values[0] for key, values in parse_qs(urlsplit(again.location).query).items()}
    assert {other["state"], other["nonce"], other["code_challenge"]}.isdisjoint(
        {query["state"], query["nonce"], query["code_challenge"]}
    )


def test_an_existing_reader_with_that_address_gets_the_same_account(app, client):
    reader = Reader(email=DEFAULT_EMAIL, locale="fr")
    db.session.add(reader)
    db.session.commit()
    known = reader.id
    assert round_trip(client).status_code == 303
    assert [row.id for row in rows(Reader)] == [known]


def test_the_address_is_matched_whatever_its_capitals(app, client, provider):
    db.session.add(Reader(email=DEFAULT_EMAIL, locale="fr"))
    db.session.commit()
    provider.script.claims = {"email": DEFAULT_EMAIL.upper()}
    assert round_trip(client).status_code == 303
    assert len(rows(Reader)) == 1


def test_the_newsletter_box_ticked_on_the_wall_is_carried_through_the_round_trip(app, client):
    assert round_trip(client, newsletter=True).status_code == 303
    (consent,) = rows(NewsletterConsent)
    assert consent.source == ARTICLE
    assert "newsletter" in consent.wording


def test_an_unticked_box_subscribes_nobody(app, client):
    assert round_trip(client).status_code == 303
    assert rows(NewsletterConsent) == []


@pytest.mark.parametrize(
    "claims",
    [{"email_verified": False}, {"email_verified": None}, {"email_verified": "false"}],
    ids=["false", "absent", "string-false"],
)
def test_an_unverified_address_is_refused_with_a_clear_page(app, client, provider, claims):
    provider.script.claims = claims
    answer = round_trip(in_english(client))
    assert_calm_page(answer, 403)
    assert "Scripted ID has not verified your address" in text_of(answer)
    assert "sign in with your email address" in text_of(answer)
    assert rows(Reader) == [] and not is_signed_in(client)


def test_a_token_without_an_address_is_refused(app, client, provider):
    provider.script.claims = {"email": None}
    answer = round_trip(in_english(client))
    assert_calm_page(answer, 403)
    assert "did not share your address" in text_of(answer)
    assert rows(Reader) == []


def test_apple_s_string_true_counts_as_verified(app, client, provider):
    provider.script.claims = {"email_verified": "true"}
    assert round_trip(client).status_code == 303
    assert len(rows(Reader)) == 1


def test_microsoft_s_domain_owner_claim_stands_in_for_email_verified(app, client, provider):
    provider.script.claims = {"email_verified": None, "xms_edov": True}
    assert round_trip(client).status_code == 303
    assert len(rows(Reader)) == 1


@pytest.mark.parametrize(
    "lie",
    [
        {"signed_by_stranger": True},
        {"claims": {"aud": "another-client"}},
        {"claims": {"aud": ["another-client", "yet-another"]}},
        {"claims": {"aud": None}},
        {"claims": {"iss": "https://accounts.example.org"}},
        {"claims": {"exp": int(time.time()) - 3600}},
        {"claims": {"exp": None}},
        {"claims": {"nonce": "a-nonce-this-browser-never-sent"}},
        {"claims": {"nonce": None}},
        {"without_id_token": True},
    ],
    ids=[
        "stranger-key",
        "other-audience",
        "other-audiences",
        "no-audience",
        "other-issuer",
        "expired",
        "no-expiry",
        "other-nonce",
        "no-nonce",
        "no-id-token",
    ],
)
def test_an_id_token_that_fails_a_check_signs_nobody_in(app, client, provider, lie):
    for name, value in lie.items():
        setattr(provider.script, name, value)
    answer = round_trip(in_english(client))
    assert_calm_page(answer, 400)
    assert "Scripted ID could not sign you in" in text_of(answer)
    assert rows(Reader) == [] and rows(SignInEvent) == []
    assert not is_signed_in(client)


def test_an_audience_list_holding_this_client_is_accepted(app, client, provider):
    provider.script.claims = {"aud": [CLIENT_ID, "another"], "azp": CLIENT_ID}
    assert round_trip(client).status_code == 303


def test_a_forged_callback_is_refused_before_any_token_is_asked_for(app, client, provider):
    start(client)  # this browser has a round trip of its own under way
    answer = in_english(client).get("/login/with/scripted/callback?code=stolen&state=forged")
    assert_calm_page(answer, 400)
    assert "This sign-in has expired" in text_of(answer)
    assert provider.token_requests == 0
    assert not is_signed_in(client)


def test_a_replayed_callback_signs_nobody_in(app, client, provider):
    callback = path_of(at_provider(start(client).location))
    assert client.get(callback).status_code == 303
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account")})
    assert not is_signed_in(client)
    answer = client.get(callback)
    assert_calm_page(answer, 400)
    assert not is_signed_in(client)
    assert provider.token_requests == 1


def test_a_callback_opened_in_another_browser_signs_nobody_in(app, client, provider):
    callback = path_of(at_provider(start(client).location))
    other = app.test_client()
    answer = other.get(callback)  # the victim of a login CSRF would be here
    assert_calm_page(answer, 400)
    assert not is_signed_in(other)
    assert provider.token_requests == 0
    assert client.get(callback).status_code == 303  # the browser that started still can


def test_a_reader_who_cancels_at_the_provider_sees_a_way_back(app, client, provider):
    provider.script.deny = "access_denied"
    answer = round_trip(in_english(client))
    assert_calm_page(answer, 200)
    assert "Sign-in with Scripted ID cancelled" in text_of(answer)
    assert f'href="/login?next={ARTICLE}"' in answer.get_data(as_text=True)
    assert not is_signed_in(client)


@pytest.mark.parametrize("error", ["server_error", "temporarily_unavailable", "<script>"])
def test_a_provider_error_is_a_clear_page(app, client, provider, error):
    provider.script.deny = error
    answer = round_trip(in_english(client))
    assert_calm_page(answer, 400)
    assert "could not sign you in" in text_of(answer)
    assert "<script>" not in answer.get_data(as_text=True)


@pytest.mark.parametrize("discovery", [["not", "an", "object"], "text", 42])
def test_a_discovery_document_that_is_not_an_object_is_a_clear_page(
    app, client, provider, discovery
):
    provider.script.discovery = discovery
    assert_calm_page(start(in_english(client)), 503)


def test_a_discovery_document_without_keys_or_endpoint_is_a_clear_page(app, client, provider):
    provider.script.metadata = {"jwks_uri": None}
    assert_calm_page(round_trip(client), 400)
    assert rows(Reader) == []


def test_a_discovery_document_without_an_authorization_endpoint_is_a_clear_page(
    app, client, provider
):
    provider.script.metadata = {"authorization_endpoint": None}
    assert_calm_page(start(client), 503)


def test_many_button_presses_keep_the_session_cookie_small_and_the_newest_working(
    app, client, provider
):
    for _ in range(30):
        started = start(client)
    cookie = client.get_cookie("auth_session")
    assert cookie is not None and len(cookie.value) < 3000
    assert client.get(path_of(at_provider(started.location))).status_code == 303


def test_a_token_endpoint_that_refuses_is_a_clear_page(app, client, provider):
    provider.script.token_error = "invalid_grant"
    assert_calm_page(round_trip(client), 400)
    assert rows(Reader) == []


def test_a_provider_down_at_the_button_is_a_clear_page(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    down = {"issuer": f"http://127.0.0.1:{free_port()}", "client_id": "x", "client_secret": "y"}
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "PUBLIC_URL": "http://news.test",
            "OIDC_PROVIDERS": {"scripted": {**down, "label": "Scripted ID"}},
        }
    )
    with app.app_context():
        client = in_english(app.test_client())
        answer = start(client)
        assert_calm_page(answer, 503)
        assert "Scripted ID is not answering" in text_of(answer)
        assert "sign in with your email address" in text_of(answer)
        db.engine.dispose()


def test_a_provider_down_at_the_callback_is_a_clear_page(app, client, provider):
    started = start(in_english(client))
    callback = path_of(at_provider(started.location))
    provider.stop()
    answer = client.get(callback)
    assert_calm_page(answer, 503)
    assert rows(Reader) == []


def test_apple_s_form_post_arrives_without_the_session_and_is_turned_into_a_get(
    app, client, provider
):
    callback = at_provider(start(client).location)
    fields = {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}
    # A cross-site POST: the browser sends no SameSite=Lax cookie with it.
    stranger = app.test_client()
    posted = stranger.post("/login/with/scripted/callback", data=fields)
    assert posted.status_code == 303
    assert "Set-Cookie" not in posted.headers  # the session left alone
    assert {k: v[0] for k, v in parse_qs(urlsplit(posted.location).query).items()} == fields
    assert client.get(path_of(posted.location)).status_code == 303
    assert is_signed_in(client)


def test_a_provider_taking_the_secret_in_the_form_only_is_served(app, client, provider):
    provider.script.auth_methods = ["client_secret_post"]
    assert round_trip(client).status_code == 303


def test_a_signed_in_reader_pressing_the_button_goes_straight_back(app, client, provider):
    assert round_trip(client).status_code == 303
    token = csrf_token(client, "/account")  # a form still open in another tab
    answer = client.post("/login/with/scripted", data={"csrf_token": token, "next": ARTICLE})
    assert answer.status_code == 303 and answer.location == ARTICLE
    assert len(provider.requests) == 1


def test_a_blocked_domain_cannot_sign_in_through_a_provider(app, client, provider):
    app.config["BLOCKED_DOMAINS"] = ["example.org"]
    answer = round_trip(client)
    assert_calm_page(answer, 403)
    assert rows(Reader) == []


def test_the_button_needs_the_form_s_csrf_token(app, client):
    answer = client.post("/login/with/scripted", data={"next": ARTICLE})
    assert answer.status_code == 400


def test_an_unknown_provider_is_not_found(app, client):
    assert_calm_page(
        client.post("/login/with/nobody", data={"csrf_token": csrf_token(client)}), 404
    )
    assert_calm_page(client.get("/login/with/nobody/callback?code=x&state=y"), 404)


@pytest.mark.parametrize(
    "query",
    [
        "code=" + "a" * 100_000 + "&state=x",
        "code=%00&state=%00",
        "state=%E2%80%AEevil&code=%F0%9F%98%80",
        "error=" + "e" * 5000,
        "code=x&state=x&state=y",
    ],
    ids=["huge", "nul", "unicode", "long-error", "two-states"],
)
def test_hostile_callbacks_get_a_clear_answer(app, client, query):
    start(client)
    answer = client.get(f"/login/with/scripted/callback?{query}")
    assert 400 <= answer.status_code < 500
    assert "Traceback" not in answer.get_data(as_text=True)
    assert not is_signed_in(client)


def test_the_login_page_and_the_wall_show_the_buttons_in_both_languages(app, client, articles):
    page = client.get("/login", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Se connecter avec Scripted ID" in page
    assert 'formaction="/login/with/scripted"' in page
    english = in_english(app.test_client())
    assert "Sign in with Scripted ID" in english.get("/login").get_data(as_text=True)
    assert "Sign in with Scripted ID" in english.get(ARTICLE).get_data(as_text=True)


def test_the_pages_let_the_buttons_form_lead_on_to_the_provider(app, client, provider):
    policy = client.get("/login").headers["Content-Security-Policy"]
    form_action = next(part for part in policy.split("; ") if part.startswith("form-action"))
    assert provider.issuer in form_action.split()


def test_no_buttons_without_providers(app, client):
    app.config["OIDC_PROVIDERS"] = {}
    assert 'class="social"' not in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize(
    "configured, complaint",
    [
        ("{not json", "not valid JSON"),
        ('["google"]', "JSON object"),
        ({"Google!": {}}, "short name"),
        ({"link": {}}, "short name"),
        (
            {
                "g": {
                    "issuer": "http://accounts.example.org",
                    "client_id": "a",
                    "client_secret": "b",
                    "label": "G",
                }
            },
            "https",
        ),
        ({"g": {"issuer": "https://a.example", "client_secret": "b", "label": "G"}}, "client_id"),
        (
            {
                "g": {
                    "issuer": "https://a.example",
                    "client_id": "a",
                    "client_secret": "b",
                    "label": "G",
                    "colour": "red",
                }
            },
            "unknown settings",
        ),
        (
            {
                "g": {
                    "issuer": "https://a.example",
                    "client_id": "a",
                    "client_secret": "b",
                    "label": "G",
                    "scope": "profile",
                }
            },
            "openid and email",
        ),
        (
            {
                "g": {
                    "issuer": "https://a.example",
                    "client_id": "a",
                    "client_secret": "b",
                    "label": "G",
                    "style": "neon",
                }
            },
            "style",
        ),
    ],
)
def test_a_wrong_provider_setting_stops_the_service_at_start(
    tmp_path, monkeypatch, configured, complaint
):
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match=complaint):
        create_app({"TESTING": True, "SECRET_KEY": SECRET, "OIDC_PROVIDERS": configured})


def test_providers_come_from_the_environment_as_json(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTH_SERVICE_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv(
        "AUTH_SERVICE_OIDC_PROVIDERS",
        '{"google": {"issuer": "https://accounts.google.com", "client_id": "a",'
        ' "client_secret": "b", "label": "Google"}}',
    )
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET})
    (google,) = app.config["OIDC_PROVIDERS"].values()
    assert google.style == "google" and google.label == "Google"


TENANT = "https://login.microsoftonline.com/{tenantid}/v2.0"
REAL_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


@pytest.mark.parametrize(
    "expected, claims, matches",
    [
        ("https://id.example", {"iss": "https://id.example"}, True),
        ("https://id.example", {"iss": "https://id.example/"}, False),
        (TENANT, {"iss": TENANT.replace("{tenantid}", REAL_TENANT), "tid": REAL_TENANT}, True),
        (TENANT, {"iss": TENANT.replace("{tenantid}", REAL_TENANT), "tid": "other"}, False),
        (TENANT, {"iss": TENANT.replace("{tenantid}", REAL_TENANT)}, False),
        (TENANT, {"iss": TENANT, "tid": "{tenantid}"}, False),
        ("https://accounts.google.com", {"iss": "accounts.google.com"}, True),
        ("https://id.example", {"iss": "id.example"}, False),
    ],
)
def test_the_issuer_check_knows_microsoft_s_tenants_and_google_s_two_forms(
    expected, claims, matches
):
    assert issuer_matches(expected, claims) is matches
