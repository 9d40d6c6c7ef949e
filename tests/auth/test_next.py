"""``next`` is followed only when it is a path on this site; anything else goes to /."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
from support.web import sign_in

LEAVING_THE_SITE = [
    "https://evil.example/",
    "http://evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "https:evil",
    "https:/evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<b>x</b>",
    "%2F%2Fevil.example",
    "https%3A%2F%2Fevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "%00//evil.example",
    "evil.example",
    "articles/x",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("target", LEAVING_THE_SITE, ids=repr)
def test_next_that_leaves_the_site_goes_to_the_front_page(app, client, target):
    response = sign_in(app, client, next_url=target)
    assert response.status_code == 303
    assert response.location == "/"


@pytest.mark.parametrize(
    "target",
    [
        "/articles/x?y=1",
        "/account",
        "/articles/été#suite",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
    ],
    ids=repr,
)
def test_next_on_this_site_is_kept_and_stays_on_the_site(app, client, target):
    response = sign_in(app, client, next_url=target)
    assert response.status_code == 303
    landing = urljoin("http://news.test/articles/here", response.location)
    assert urlsplit(landing).netloc == "news.test"
    if target.isascii():
        assert response.location == target
