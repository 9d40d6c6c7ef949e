"""Every user-facing string exists in French and English, and the catalog is compiled."""

from __future__ import annotations

import gettext
import subprocess
import sys

from babel.messages.pofile import read_po
from support.settings import REPOSITORY

ROOT = REPOSITORY
CATALOG = ROOT / "auth_service" / "translations" / "fr" / "LC_MESSAGES"


def _french():
    """The French catalog as committed."""
    with (CATALOG / "messages.po").open("rb") as handle:
        return read_po(handle)


def test_every_string_of_the_code_has_a_french_translation(tmp_path):
    template = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "--no-location",
            "-o",
            str(template),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with template.open("rb") as handle:
        wanted = {message.id for message in read_po(handle) if message.id}
    translated = {
        message.id for message in _french() if message.id and message.string and not message.fuzzy
    }
    missing = sorted(str(item) for item in wanted - translated)
    assert not missing, f"untranslated in French: {missing}"


def test_compiled_catalog_matches_the_po_file():
    with (CATALOG / "messages.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = [
        message.id
        for message in _french()
        if message.id
        and isinstance(message.id, str)
        and compiled.gettext(message.id) != message.string
    ]
    assert not stale, f"run pybabel compile: {stale[:5]}"


def test_french_is_the_default_and_english_is_offered(client):
    french = client.get("/login").get_data(as_text=True)
    english = client.get("/login?lang=en").get_data(as_text=True)
    assert '<html lang="fr">' in french and '<html lang="en">' in english
    assert "Sign up or sign in" in english and "Sign up or sign in" not in french


def test_every_plural_has_each_of_its_french_forms():
    # French has three plural forms in CLDR (one, many, other): an empty one would show
    # the English text to a reader for those counts.
    missing = [
        message.id[0]
        for message in _french()
        if isinstance(message.id, tuple) and not all(message.string)
    ]
    assert not missing, f"plural forms missing in French: {missing}"
