"""The API's rules under real parallel requests: released together, against gunicorn
with several processes and threads, on SQLite and PostgreSQL (see tests/support/live.py).

The API goes through the same rules as the HTML form; these volleys show it keeps them
when requests arrive in the same instant, through either door.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from support.live import Browser, live_server, release_together

# The harness's fixture, imported so that pytest finds it in this module.
__all__ = ["live_server"]

TRIES = 5  # LOGIN_CODE_TRIES


def _json_post(browser: Browser, path: str, body: dict):
    """A JSON POST from the service's own pages (its Origin), prepared for a volley."""
    return browser.prepare("POST", path, json_body=body, headers={"Origin": browser.server.url})


def _error_codes(replies) -> Counter:
    return Counter(
        json.loads(reply.body)["error"]["code"] for reply in replies if reply.status >= 400
    )


@pytest.mark.live_settings(RATELIMIT_ENABLED="true")
def test_twelve_api_and_form_requests_for_one_inbox_at_once_send_one_mail(live_server):
    """Six browsers post the form and six call the API, for one inbox, at the same
    instant: the two doors spend one allowance ("one link a minute"), so one mail."""
    address = "both-doors@example.com"
    form_browsers = [Browser(live_server) for _ in range(6)]
    api_browsers = [Browser(live_server) for _ in range(6)]
    prepared = [
        b.prepare("POST", "/login", {"email": address, "csrf_token": b.csrf_token()})
        for b in form_browsers
    ] + [_json_post(b, "/api/v1/login", {"email": address}) for b in api_browsers]
    replies = release_together(prepared)
    statuses = Counter(reply.status for reply in replies)
    assert statuses[429] == 11, statuses
    assert statuses[303] + statuses[202] == 1, statuses
    assert _error_codes(replies[6:]) <= Counter({"rate_limited": 6})
    assert len(live_server.mails_to(address)) == 1


def test_thirty_wrong_codes_at_once_through_the_api_are_compared_five_times_at_most(
    live_server,
):
    """Thirty wrong guesses from the browser that asked arrive together: at most five
    are compared (422 wrong_code), the others find the attempt dead (410), none fails."""
    guesser = Browser(live_server)
    reply = guesser.post_json("/api/v1/login", {"email": "guessed@example.com"})
    assert reply.status == 202, reply.body
    [mail] = live_server.mails_to("guessed@example.com")
    wrong = next(f"{n:06d}" for n in range(100) if f"{n:06d}" != mail.code)

    replies = release_together([_json_post(guesser, "/api/v1/login/code", {"code": wrong})] * 30)

    statuses = Counter(reply.status for reply in replies)
    assert set(statuses) <= {410, 422}, statuses
    assert statuses[422] <= TRIES, f"{statuses[422]} guesses were compared: {statuses}"
    assert set(_error_codes(replies)) <= {"wrong_code", "too_many_tries"}
    assert live_server.rows(
        "SELECT tries_left, used_at FROM login_attempts WHERE email = 'guessed@example.com'"
    ) == [(0, None)]
