"""The rules of bot friction, without HTTP: typo hints and refused domains."""

from __future__ import annotations

import pytest

from auth_service.auth import abuse


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("jean@gmial.com", "jean@gmail.com"),
        ("jean@gmail.con", "jean@gmail.com"),
        ("jean@gmail.fr", "jean@gmail.com"),
        ("marie@hotmial.fr", "marie@hotmail.fr"),
        ("marie@yaho.fr", "marie@yahoo.fr"),
        ("paul@orage.fr", "paul@orange.fr"),
        ("paul@wanadoo.fe", "paul@wanadoo.fr"),
        ("lea@outlok.com", "lea@outlook.com"),
        ("lea@laposte.fr", "lea@laposte.net"),
    ],
)
def test_near_misses_of_common_domains_get_a_suggestion(typed, suggested):
    assert abuse.suggest_correction(typed) == suggested


@pytest.mark.parametrize(
    "address",
    [
        "jean@gmail.com",
        "jean@orange.fr",
        "jean@lemonde.fr",
        "jean@univ-paris.fr",
        "jean@gmx.de",
        "jean@example.com",
        "jean@yahoo.de",
    ],
)
def test_real_domains_get_no_suggestion(address):
    assert abuse.suggest_correction(address) is None


@pytest.mark.settings(BLOCKED_DOMAINS=["spam.example"])
def test_blocked_domains_and_their_subdomains_are_refused(app):
    assert abuse.refusal("a@spam.example") == "blocked"
    assert abuse.refusal("a@mx.spam.example") == "blocked"
    assert abuse.refusal("a@notspam.example") is None


def test_disposable_domains_are_refused_unless_allowed(app):
    assert abuse.refusal("a@mailinator.com") == "disposable"
    app.config["BLOCK_DISPOSABLE_DOMAINS"] = False
    assert abuse.refusal("a@mailinator.com") is None


def test_ordinary_domains_are_not_refused(app):
    assert abuse.refusal("a@gmail.com") is None
    assert abuse.refusal("a@lemonde.fr") is None
