"""/embed/paywall.js and its stylesheet as the service serves them (docs/embed.md).

What the browser test cannot see at a glance: the headers that let any news site load the
script and let caches keep it, what the script must never contain, its size, and that the
wall shows the very wording the service records as consent.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest
from flask_babel import force_locale

from auth_service.auth.forms import NEWSLETTER_WORDING
from auth_service.embed.views import STATIC

SCRIPT = "/embed/paywall.js"
STYLESHEET = "/embed/paywall.css"
SOURCE = (STATIC / "paywall.js").read_text(encoding="utf-8")
# The script without its comments: what it does, not what it says about it.
CODE = re.sub(
    r"^\s*//.*$|\s//\s.*$", "", re.sub(r"/\*.*?\*/", "", SOURCE, flags=re.DOTALL), flags=re.M
)


@pytest.mark.parametrize(
    "path, content_type",
    [
        (SCRIPT, "application/javascript; charset=utf-8"),
        (STYLESHEET, "text/css; charset=utf-8"),
    ],
)
def test_the_files_are_served_to_any_site_and_cached_for_five_minutes(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    cache = response.cache_control
    assert cache.public and cache.max_age == 300 and not cache.no_store
    assert response.headers["ETag"]
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("path", [SCRIPT, STYLESHEET])
def test_an_unchanged_file_is_a_304_without_a_body(client, path):
    etag = client.get(path).headers["ETag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag
    assert again.cache_control.max_age == 300
    other = client.get(path, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.get_data()


def test_the_etag_is_the_content_s_so_every_server_gives_the_same(app, client):
    first = client.get(SCRIPT).headers["ETag"]
    assert first == app.test_client().get(SCRIPT).headers["ETag"]
    assert first != client.get(STYLESHEET).headers["ETag"]


def test_the_service_s_own_pages_keep_their_strict_policy(client, articles):
    policy = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe" not in policy


def test_the_script_runs_nothing_from_text_and_sets_no_inline_style():
    """No eval, no new Function, no timer fed a string, no innerHTML (the article's body,
    sanitised by the service at import, is parsed by DOMParser in an inert document and
    rebuilt from an allow-list of tags and attributes), no style attribute."""
    for forbidden in (
        r"\beval\s*\(",
        r"\bnew\s+Function\b",
        r"\bFunction\s*\(",
        r"setTimeout\s*\(\s*[\"'`]",
        r"\.innerHTML\b",
        r"\.outerHTML\b",
        r"insertAdjacentHTML",
        r"document\.write",
        r"\.style\b",
        r"[\"']style[\"']",
    ):
        assert not re.search(forbidden, CODE), forbidden
    assert "DOMParser" in CODE  # the one place HTML is parsed: the body, see above


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_newsletter_box_says_exactly_the_wording_recorded_as_consent(app, language):
    block = re.search(rf"\n    {language}: \{{(.*?)\n    \}},", SOURCE, re.DOTALL).group(1)
    shown = json.loads(re.search(r'\n      newsletter: ("(?:[^"\\]|\\.)*"),', block).group(1))
    with app.test_request_context(), force_locale(language):
        assert shown == str(NEWSLETTER_WORDING)


def test_the_script_is_small(capsys):
    script = (STATIC / "paywall.js").read_bytes()
    stylesheet = (STATIC / "paywall.css").read_bytes()
    script_size = len(gzip.compress(script, compresslevel=9))
    stylesheet_size = len(gzip.compress(stylesheet, compresslevel=9))
    with capsys.disabled():
        print(
            f"\npaywall.js: {len(script)} bytes, {script_size} gzipped (gzip -9); "
            f"paywall.css: {len(stylesheet)} bytes, {stylesheet_size} gzipped"
        )
    assert script_size < 10 * 1024
