"""/healthz, and the 404, 405 and 413 pages: HTML, calm, no stack trace."""

from __future__ import annotations

import pytest
from support.web import assert_calm_page, csrf_token, in_english, rows, text_of

from auth_service.models import OutboxMessage


def test_health_check_answers_json(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    assert response.get_json()["status"] == "ok"


def test_unknown_page_is_a_404_page(client):
    assert_calm_page(client.get("/no/such/page"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/logout"),
        ("GET", "/login/code"),
        ("GET", "/account/delete"),
        ("GET", "/account/sign-out-everywhere"),
        ("PUT", "/login"),
        ("DELETE", "/account"),
        ("POST", "/healthz"),
        ("POST", "/"),
    ],
)
def test_wrong_method_is_a_405_page(client, method, path):
    response = in_english(client).open(path, method=method)
    assert_calm_page(response, 405)
    assert "Not allowed" in text_of(response)


def test_wrong_method_page_says_which_methods_are_allowed(client):
    response = client.get("/logout")
    assert response.status_code == 405
    assert "POST" in response.headers.get("Allow", "")  # RFC 9110: a 405 names them


def test_too_large_form_is_a_413_page_and_sends_nothing(client):
    token = csrf_token(in_english(client))
    response = client.post(
        "/login", data={"email": "x" * 70_000 + "@example.com", "csrf_token": token}
    )
    assert_calm_page(response, 413)
    assert "Too much data" in text_of(response)
    assert rows(OutboxMessage) == []


@pytest.mark.parametrize("path", ["/", "/login", "/articles/nope", "/healthz"])
def test_every_response_has_the_protective_headers(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
