"""Addresses as the reader types them: normalised, or refused with a reason."""

from __future__ import annotations

import pytest

from auth_service.auth import addresses


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("Jean.Dupont@Example.COM", "jean.dupont@example.com"),
        ("  marie@exemple.fr  ", "marie@exemple.fr"),
        ("élodie@exemple.fr", "élodie@exemple.fr"),
        ("noel@bücher.example", "noel@bücher.example"),
    ],
)
def test_addresses_are_normalised_to_one_inbox_one_account(typed, normalised):
    assert addresses.normalise_address(typed) == normalised


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "format"),
        ("jean", "format"),
        ("jean@", "format"),
        ("@example.com", "format"),
        ("jean@example", "format"),
        ("jean dupont@example.com", "format"),
        ("jean@example.com\r\nBcc: victim@example.org", "format"),
        ("<script>alert(1)</script>@example.com", "format"),
        ("a" * 65 + "@example.com", "local_too_long"),
        ("a@" + "b" * 250 + ".com", "too_long"),
    ],
)
def test_invalid_addresses_say_why(typed, reason):
    with pytest.raises(addresses.InvalidAddress) as caught:
        addresses.normalise_address(typed)
    assert caught.value.reason == reason


def test_longest_legal_address_is_accepted():
    local = "a" * 64
    domain = ".".join(["b" * 61] * 3) + ".fra"  # 64 + 1 + 189 = 254 characters
    address = f"{local}@{domain}"
    assert len(address) == 254
    assert addresses.normalise_address(address) == address


def test_unicode_domain_is_sent_in_idna_form():
    assert addresses.transport_address("noel@bücher.example") == "noel@xn--bcher-kva.example"
