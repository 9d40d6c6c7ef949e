"""Addresses as the reader types them: normalised, or refused with a reason."""

from __future__ import annotations

import pytest

from auth_service.auth import addresses
from auth_service.extensions import db
from auth_service.models import OutboxMessage


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


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        # U+0958 has no composed form: NFC writes each as two characters, 40 become 80.
        ("\u0958" * 40 + "@example.com", "local_too_long"),
        # The same, when the normalised whole is also over 254 bytes: the local part says why.
        ("\u0958" * 60 + "@example.com", "local_too_long"),
        # "İ" lower-cases to "i" and a combining dot: 40 characters become 80.
        ("\u0130" * 40 + "@example.com", "local_too_long"),
        # 32 "İ" lower-case to 64 characters, but 96 bytes: the whole grows from 226 to 258.
        ("\u0130" * 32 + "@" + "b" * 61 + "." + "b" * 61 + "." + "b" * 34 + ".fr", "too_long"),
        # "bücher" is sent as "xn--bcher-kva": 248 characters typed, 255 sent.
        ("a" * 64 + "@" + "b" * 61 + "." + "b" * 61 + "." + "b" * 49 + ".bücher.fr", "too_long"),
    ],
    ids=["nfc-local", "nfc-local-and-whole", "lower-case-local", "lower-case-whole", "idna-whole"],
)
def test_lengths_count_the_address_as_stored_and_sent(typed, reason):
    with pytest.raises(addresses.InvalidAddress) as caught:
        addresses.normalise_address(typed)
    assert caught.value.reason == reason


def test_longest_address_once_sent_in_idna_form_is_accepted():
    typed = "a" * 64 + "@" + "b" * 61 + "." + "b" * 61 + "." + "b" * 48 + ".bücher.fr"
    sent = addresses.transport_address(addresses.normalise_address(typed))
    assert sent.endswith(".xn--bcher-kva.fr")
    assert len(sent) == 254


# Characters that keep, shrink or grow their length once normalised and lower-cased.
UNITS = ["a", "é", "e\u0301", "\u0130", "\u0958"]
# Domains as typed; the last is 179 characters long, 186 once in IDNA form.
DOMAINS = [
    "example.com",
    "bücher.example",
    "b" * 61 + "." + "b" * 61 + "." + "b" * 45 + ".bücher.fr",
]


@pytest.mark.parametrize("unit", UNITS, ids=["ascii", "composed", "decomposed", "dotted-I", "qa"])
@pytest.mark.parametrize("domain", DOMAINS, ids=["short", "idna", "long-idna"])
def test_every_accepted_address_is_sent_within_the_limits(unit, domain):
    for count in range(1, 100):
        try:
            address = addresses.normalise_address(unit * count + "@" + domain)
        except addresses.InvalidAddress:
            continue
        sent = addresses.transport_address(address)
        assert len(sent.rpartition("@")[0]) <= 64, (ascii(unit), count)
        assert len(sent.encode()) <= 254, (ascii(unit), count)


def test_address_too_long_once_normalised_is_refused_by_the_form(reader, client):
    client.set_cookie("lang", "en")
    response = reader.ask_for_link("\u0958" * 40 + "@example.com")
    assert response.status_code == 422
    assert "it has at most 64 characters" in response.get_data(as_text=True)
    assert db.session.scalars(db.select(OutboxMessage)).all() == []
