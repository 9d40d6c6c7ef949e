"""Display names: never an address, never invisible tricks, one reader per name."""

from __future__ import annotations

import pytest

from auth_service.comments import names
from auth_service.extensions import db
from auth_service.models import Reader


def _reader(email: str) -> Reader:
    reader = Reader(email=email)
    db.session.add(reader)
    db.session.flush()
    return reader


def test_a_name_is_trimmed_its_spaces_joined_and_nfc_normalised(app):
    assert names.check("  Jose\u0301   Martin\u00a0 ") == "Jos\u00e9 Martin"
    assert names.check("Line\u2028break\tend") == "Line break end"


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("J", "length"),
        ("  J  ", "length"),
        ("x" * 41, "length"),
        ("jean@example.com", "address"),
        ("jean\uff20example", "address"),  # the full-width @
        ("@jean", "address"),
        ("Ali\u202eecila", "characters"),  # a right-to-left override
        ("Zero\u200bwidth", "characters"),
        ("Bell\x07", "characters"),
        ("---", "letters"),
        ("!!", "letters"),
    ],
)
def test_refused_names_say_why(app, typed, reason):
    """Defence: ``names.check``: no address, no control or bidi characters."""
    with pytest.raises(names.NameRefused) as refused:
        names.check(typed)
    assert refused.value.reason == reason


def test_forty_characters_are_allowed(app):
    assert names.check("é" * 40) == "é" * 40


def test_a_name_is_unique_whatever_its_capitals_spacing_or_width(app):
    """Defence: ``names.key_of`` folds what would read the same."""
    first, second = _reader("a@example.com"), _reader("b@example.com")
    names.choose(first, "Marie Curie")
    for typed in ("marie curie", "MARIE  CURIE", "MarieCurie", "Ｍａｒｉｅ Ｃｕｒｉｅ"):
        with pytest.raises(names.NameRefused) as refused:
            names.choose(second, typed)
        assert refused.value.reason == "taken"
    assert second.display_name is None
    assert names.check("Marie Curie", reader=first) == "Marie Curie"  # one's own name


def test_a_short_name_whose_folded_key_would_not_fit_is_refused_not_a_500(app):
    # U+FDFA is one letter that folding turns into 15 (spaces dropped from its 18).
    with pytest.raises(names.NameRefused) as refused:
        names.check("\ufdfa" * 11)
    assert refused.value.reason == "length"
    reader = _reader("long@example.org")
    names.choose(reader, "\ufdfa" * 8)  # 120 folded characters: fits, and is stored
    db.session.commit()
    assert len(reader.display_name_key) == 120
