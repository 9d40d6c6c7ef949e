"""Concurrency rules, tested with real parallel requests against a real server.

Each test starts the app under gunicorn (two processes of eight threads) on the test's
database, SQLite or PostgreSQL, and sends requests that ``live.release_together`` lets
go at the same instant (see ``live``'s docstring for why that is reliable). Browsers are
HTTP clients with their own cookies; the sign-in mails are read from the outbox table.

The rules:

- no more than ``LOGIN_CODE_TRIES`` code guesses are ever compared with an attempt's
  code, however many arrive at once;
- writes that lock several rows (two links, or a link and a code, of one address; a
  sign-in and the account's deletion; a sign-in and "sign out everywhere") never fail
  with a 5xx when they meet, and leave the database consistent;
- a row that must exist once (an open consent per reader and newsletter, a suppressed
  address) is written once when the same request arrives twice at the same instant;
- limits counted in the database hold across processes (one inbox's minute, the
  service's hourly mail ceiling).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import bindparam, text
from support.live import (
    WEBHOOK_SECRET,
    Browser,
    LiveServer,
    Volley,
    live_server,
    release_together,
    wait_until,
)
from support.settings import DATABASES

# The harness's fixture, imported so that pytest finds it in this module.
__all__ = ["live_server"]

TRIES = 5  # LOGIN_CODE_TRIES
TRIALS = 8  # races per test: when the rule is broken, each one fails by chance, not surely

WRONG_CODE_TEXT = "This code is not the one in the email."
TOO_MANY_TEXT = "Too many wrong codes"


def _wrong_code(*mails) -> str:
    """A six-digit code that none of ``mails`` holds."""
    codes = {mail.code for mail in mails}
    return next(code for code in (f"{n:06d}" for n in range(100)) if code not in codes)


def _statuses(replies) -> list[int]:
    """The status of each reply, in order."""
    return [reply.status for reply in replies]


def _title(reply) -> str:
    """The page's title, without the site's name."""
    return reply.body.split("<title>", 1)[1].split("</title>", 1)[0].split(" – ")[0].strip()


def _attempt_id(server: LiveServer, address: str) -> str:
    """The id of the newest attempt of ``address``."""
    return server.scalar(
        "SELECT id FROM login_attempts WHERE email = :address ORDER BY created_at DESC",
        address=address,
    )


def _sign_ins(server: LiveServer, address: str) -> int:
    """How many sign-ins the account of ``address`` has on record."""
    return server.scalar(
        "SELECT count(*) FROM sign_in_events JOIN readers ON readers.id = reader_id "
        "WHERE readers.email = :address",
        address=address,
    )


def _readers(server: LiveServer, address: str) -> int:
    """How many accounts hold ``address`` (0 or 1)."""
    return server.scalar("SELECT count(*) FROM readers WHERE email = :address", address=address)


def _open_attempts(server: LiveServer, address: str) -> int:
    """How many attempts of ``address`` could still sign in."""
    return server.scalar(
        "SELECT count(*) FROM login_attempts "
        "WHERE email = :address AND used_at IS NULL AND tries_left > 0",
        address=address,
    )


# --- The code's five tries -----------------------------------------------------------------


def test_thirty_wrong_codes_at_once_spend_the_five_tries_and_no_more(live_server):
    """Thirty wrong guesses from one browser arrive together: each is either answered
    "wrong code" (so it was compared; at most five can be) or "too many wrong codes",
    nothing fails, and the attempt ends with no try left, never below zero.

    Answers cannot show a wrong guess that was compared without spending a try (it
    leaves no trace); the next test pins that down.
    """
    guesser = Browser(live_server)
    mail = guesser.ask_for_link("guessed@example.com")
    form = {"code": _wrong_code(mail), "csrf_token": guesser.csrf_token("/login/sent")}

    replies = release_together([guesser.prepare("POST", "/login/code", form)] * 30)

    statuses = Counter(_statuses(replies))
    assert set(statuses) <= {410, 422}, statuses
    assert statuses[422] <= TRIES, f"{statuses[422]} guesses were compared: {statuses}"
    wrong_pages = [reply for reply in replies if reply.status == 422]
    assert all(WRONG_CODE_TEXT in reply.body for reply in wrong_pages)
    refusals = [_title(reply) for reply in replies if reply.status == 410]
    assert set(refusals) == {TOO_MANY_TEXT}, f"refused with {Counter(refusals)}"
    attempt = live_server.rows(
        "SELECT tries_left, used_at FROM login_attempts WHERE email = 'guessed@example.com'"
    )
    assert attempt == [(0, None)]


@contextmanager
def _rows_held(server: LiveServer, attempt_ids: list[str]) -> Iterator[None]:
    """A transaction of the test that holds these attempts' rows, as a slow one would."""
    with server.database.connect() as connection:
        connection.execute(
            text(
                "SELECT id FROM login_attempts WHERE id IN :ids ORDER BY id FOR UPDATE"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": attempt_ids},
        )
        yield
        connection.commit()


def _attempts_for_the_queue(server: LiveServer, guesser: Browser):
    """Ask for links until the newest attempt is neither the first row of the table nor
    the lowest id; return (the mails of the other attempts, the newest one's mail).

    The test will hold the others: a statement that visits this browser's attempts in
    table order or in id order then meets a held row before the newest one.
    """
    mails = [guesser.ask_for_link("held0@example.com")]
    for number in range(1, 10):  # the attempt cookie remembers ten
        mails.append(guesser.ask_for_link(f"held{number}@example.com"))
        ids = [_attempt_id(server, mail.to) for mail in mails]
        if ids[-1] != min(ids):
            return mails[:-1], mails[-1]
    raise AssertionError("nine new attempts in a row each had the lowest id")


@pytest.mark.parametrize(
    "database_url", [name for name in DATABASES if name == "postgresql"], indirect=True
)
def test_the_right_code_sent_behind_a_waiting_last_guess_comes_too_late(live_server):
    """One try is left. A wrong guess reaches the database while another transaction
    holds the attempts, and waits; only then is the right code sent. The guess that was
    there first is compared first and spends the last try: the right code is refused.

    This is the rule "no more than five guesses are ever compared" made deterministic.
    Released all at once, thirty guesses cannot show it (a wrong guess compared for
    free leaves no trace), and which guess comes first is chance. Here the order is
    fixed: the wrong guess is in the database before the right code leaves the test.
    The broken rule compared a guess before queueing to spend its try; the waiting
    guess had already been compared, so the right code, which needed no row it waited
    for, overtook it and signed in: a sixth comparison. The browser holds several
    attempts (a wrong guess costs a try on each) so that there is a row to hold that
    the right code's own attempt is not.

    PostgreSQL only: SQLite has no row locks to hold, and lets one writer in at a time,
    which serialises the guesses anyway.
    """
    guesser = Browser(live_server)
    held, target = _attempts_for_the_queue(live_server, guesser)
    token = guesser.csrf_token("/login/sent")
    wrong = {"code": _wrong_code(target, *held), "csrf_token": token}
    for _ in range(TRIES - 1):
        assert guesser.post("/login/code", wrong).status == 422
    held_ids = [_attempt_id(live_server, mail.to) for mail in held]
    right = {"code": target.code, "csrf_token": token}

    with (
        Volley([guesser.prepare("POST", "/login/code", wrong)]) as last_guess,
        Volley([guesser.prepare("POST", "/login/code", right)]) as right_code,
    ):
        with _rows_held(live_server, held_ids):
            last_guess.release()
            wait_until(lambda: live_server.lock_waiters() >= 1, "the last guess waiting")
            right_code.release()
            wait_until(
                lambda: right_code.answered() or live_server.lock_waiters() >= 2,
                "the right code waiting, or answered",
            )
        [guess_reply] = last_guess.replies()
        [answer] = right_code.replies()

    assert answer.status == 410, (
        f"the right code, sent when a wrong guess for the last try was already waiting, "
        f"got {answer.status} (the guess got {guess_reply.status}): a sixth comparison"
    )
    assert _title(answer) == TOO_MANY_TEXT
    assert guess_reply.status == 410 and _title(guess_reply) == TOO_MANY_TEXT
    assert _readers(live_server, target.to) == 0
    assert live_server.rows(
        "SELECT tries_left, used_at FROM login_attempts WHERE email = :address",
        address=target.to,
    ) == [(0, None)]


# --- Several rows locked at once ---------------------------------------------------------


def _check_one_sign_in(server: LiveServer, address: str, statuses: list[int]) -> list[str]:
    """What is wrong after two sign-ins of ``address`` met; nothing if all is well.

    A sign-in voids every other open link and code of the address, so the one that
    comes second may be refused as used (410); neither may fail (5xx), and at least one
    signs in. The database must show one account, one sign-in per 303, nothing open.
    """
    problems = []
    if 303 not in statuses or not set(statuses) <= {303, 410}:
        problems.append(f"answers {statuses}")
    if _readers(server, address) != 1:
        problems.append(f"{_readers(server, address)} accounts")
    if _sign_ins(server, address) != statuses.count(303):
        problems.append(f"{_sign_ins(server, address)} sign-ins recorded for {statuses}")
    if _open_attempts(server, address):
        problems.append("an attempt is still open")
    return problems


def test_two_links_of_one_address_opened_at_once_sign_in_without_error(live_server):
    """Two browsers each ask for a link to the same address, then each opens its own
    link at the same instant, eight times over: never a 5xx (the two sign-ins must not
    deadlock), at least one signs in, the other at most is told the link was used."""
    failures = {}
    for trial in range(TRIALS):
        address = f"twice{trial}@example.com"
        first, second = Browser(live_server), Browser(live_server)
        links = [first.ask_for_link(address).token, second.ask_for_link(address).token]
        replies = release_together(
            [
                browser.prepare("GET", f"/login/verify?token={token}")
                for browser, token in zip((first, second), links, strict=True)
            ]
        )
        statuses = _statuses(replies)
        if problems := _check_one_sign_in(live_server, address, statuses):
            failures[trial] = problems
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


def test_a_link_and_a_code_of_one_address_at_once_sign_in_without_error(live_server):
    """One browser opens its link while another types its code, for the same address,
    at the same instant, eight times over: the same rule as for two links."""
    failures = {}
    for trial in range(TRIALS):
        address = f"both{trial}@example.com"
        clicking, typing = Browser(live_server), Browser(live_server)
        link = clicking.ask_for_link(address).token
        code = typing.ask_for_link(address).code
        form = {"code": code, "csrf_token": typing.csrf_token("/login/sent")}
        replies = release_together(
            [
                clicking.prepare("GET", f"/login/verify?token={link}"),
                typing.prepare("POST", "/login/code", form),
            ]
        )
        if problems := _check_one_sign_in(live_server, address, _statuses(replies)):
            failures[trial] = problems
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


def test_deleting_an_account_while_it_signs_in_again_leaves_no_half_account(live_server):
    """A reader deletes their account in one browser at the instant a link of the same
    address is opened in another, eight times over. Never a 5xx; the deletion goes
    through; afterwards either nothing of the address is left and no browser is signed
    in, or (had the sign-in come after the deletion) a fresh account with that one
    sign-in, and only the new browser signed in to it."""
    failures = {}
    for trial in range(TRIALS):
        address = f"leaving{trial}@example.com"
        leaving, arriving = Browser(live_server), Browser(live_server)
        leaving.sign_in(address)
        form = {"confirm": address, "csrf_token": leaving.csrf_token("/account")}
        link = arriving.ask_for_link(address).token
        deleted, signed_in = _statuses(
            release_together(
                [
                    leaving.prepare("POST", "/account/delete", form),
                    arriving.prepare("GET", f"/login/verify?token={link}"),
                ]
            )
        )
        problems = [] if deleted == 303 and signed_in < 500 else [f"{deleted=}, {signed_in=}"]
        problems += _deletion_problems(live_server, address, signed_in, leaving, arriving)
        if problems:
            failures[trial] = problems
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


def _deletion_problems(
    server: LiveServer, address: str, signed_in: int, leaving: Browser, arriving: Browser
) -> list[str]:
    """What is wrong after a deletion of ``address`` met a sign-in; nothing if all is well."""
    problems = []
    if leaving.is_signed_in():
        problems.append("the deleting browser is still signed in")
    accounts = _readers(server, address)
    if accounts == 1:  # only as a fresh account, opened by the sign-in
        if signed_in != 303 or _sign_ins(server, address) != 1:
            problems.append(f"an account survived ({signed_in=})")
        elif not arriving.is_signed_in():
            problems.append("a fresh account nobody is signed in to")
    elif accounts == 0:
        if arriving.is_signed_in():
            problems.append("a browser signed in to a deleted account")
        if server.scalar("SELECT count(*) FROM login_attempts WHERE email = :a", a=address):
            problems.append("attempts of the deleted address are left")
    else:
        problems.append(f"{accounts} accounts")
    orphans = server.scalar(
        "SELECT count(*) FROM sign_in_events WHERE reader_id NOT IN (SELECT id FROM readers)"
    )
    if orphans:
        problems.append(f"{orphans} sign-ins of no account")
    return problems


def test_signing_out_everywhere_while_signing_in_ends_every_earlier_session(live_server):
    """A reader signed in on two devices signs out everywhere from one at the instant a
    third browser opens a link of the same address, eight times over. Never a 5xx; both
    earlier sessions are over, whatever the order; the account keeps every sign-in."""
    failures = {}
    for trial in range(TRIALS):
        address = f"everywhere{trial}@example.com"
        here, elsewhere, arriving = Browser(live_server), Browser(live_server), Browser(live_server)
        here.sign_in(address)
        elsewhere.sign_in(address)
        form = {"csrf_token": here.csrf_token("/account")}
        link = arriving.ask_for_link(address).token
        signed_out, signed_in = _statuses(
            release_together(
                [
                    here.prepare("POST", "/account/sign-out-everywhere", form),
                    arriving.prepare("GET", f"/login/verify?token={link}"),
                ]
            )
        )
        problems = []
        if signed_out != 303 or signed_in not in (303, 410):
            problems.append(f"answers: sign out everywhere {signed_out}, sign-in {signed_in}")
        if here.is_signed_in() or elsewhere.is_signed_in():
            problems.append("a session from before 'sign out everywhere' is still open")
        if _readers(live_server, address) != 1:
            problems.append(f"{_readers(live_server, address)} accounts")
        if _sign_ins(live_server, address) != 2 + (signed_in == 303):
            problems.append(f"{_sign_ins(live_server, address)} sign-ins recorded")
        if problems:
            failures[trial] = problems
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


# --- Rows that must exist once ----------------------------------------------------------


def test_the_same_newsletter_choice_sent_twice_at_once_records_one_consent(live_server):
    """A double click on "save my choices": two requests subscribe one reader to the
    daily newsletter at the same instant, eight times over. Never a 5xx, and one open
    consent (two would send the reader two copies of every edition)."""
    failures = {}
    for trial in range(TRIALS):
        address = f"double{trial}@example.com"
        reader = Browser(live_server)
        reader.sign_in(address)
        form = {"newsletter": "daily", "csrf_token": reader.csrf_token("/account")}
        statuses = _statuses(
            release_together([reader.prepare("POST", "/account/newsletters", form)] * 2)
        )
        consents = live_server.scalar(
            "SELECT count(*) FROM newsletter_consents JOIN readers ON readers.id = reader_id "
            "WHERE readers.email = :address AND withdrawn_at IS NULL",
            address=address,
        )
        if statuses != [303, 303] or consents != 1:
            failures[trial] = f"answers {statuses}, {consents} open consents"
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


def test_two_reports_of_one_new_bounce_at_once_record_it_once(live_server):
    """The mail provider retries a webhook call while the first is still running: the
    same bounce of a new address arrives twice at the same instant, eight times over.
    Both are accepted and the address is suppressed once."""
    sender = Browser(live_server)
    failures = {}
    for trial in range(TRIALS):
        event = {
            "address": f"bounced{trial}@example.com",
            "event": "bounce",
            "time": "2026-11-28T07:00:00Z",
        }
        prepared = sender.prepare(
            "POST",
            "/webhooks/mail-events",
            json_body=event,
            headers={"X-Webhook-Secret": WEBHOOK_SECRET},
        )
        statuses = _statuses(release_together([prepared] * 2))
        rows = live_server.scalar(
            "SELECT count(*) FROM suppressions WHERE email = :address",
            address=event["address"],
        )
        if statuses != [200, 200] or rows != 1:
            failures[trial] = f"answers {statuses}, {rows} rows"
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


@pytest.fixture
def second_newsletter(live_server: LiveServer) -> Iterator[None]:
    """A weekly newsletter beside the daily one, so that choices change several rows.

    Removed afterwards: the newsletters table is not emptied between tests (the daily
    one comes from the migrations), and other tests create their own "weekly".
    """
    with live_server.database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO newsletters (slug, name_fr, name_en, description_fr, "
                "description_en, cadence, default_opt_in) VALUES ('weekly', 'La semaine', "
                "'The week', '', '', 'weekly', false)"
            )
        )
    yield
    with live_server.database.begin() as connection:
        weekly = "(SELECT id FROM newsletters WHERE slug = 'weekly')"
        connection.execute(text(f"DELETE FROM newsletter_consents WHERE newsletter_id = {weekly}"))
        connection.execute(text("DELETE FROM newsletters WHERE slug = 'weekly'"))


def test_deleting_an_account_while_its_newsletter_choices_are_saved(live_server, second_newsletter):
    """A reader saves their newsletter choices in one tab (subscribe to the daily, leave
    the weekly: a consent written, another closed) at the instant they delete their
    account in another, eight times over. Never a 5xx (the two must not deadlock; the
    choices of an account deleted meanwhile get a calm 410), and nothing of the account
    is left."""
    failures = {}
    for trial in range(TRIALS):
        address = f"choosing{trial}@example.com"
        here, there = Browser(live_server), Browser(live_server)
        here.sign_in(address)
        there.sign_in(address)
        weekly = {"newsletter": "weekly", "csrf_token": here.csrf_token("/account")}
        assert here.post("/account/newsletters", weekly).status == 303
        choices = {"newsletter": "daily", "csrf_token": here.csrf_token("/account")}
        leave = {"confirm": address, "csrf_token": there.csrf_token("/account")}
        saved, deleted = _statuses(
            release_together(
                [
                    here.prepare("POST", "/account/newsletters", choices),
                    there.prepare("POST", "/account/delete", leave),
                ]
            )
        )
        left = live_server.scalar(
            "SELECT count(*) FROM newsletter_consents WHERE reader_id NOT IN "
            "(SELECT id FROM readers)"
        )
        if saved not in (303, 410) or deleted != 303 or _readers(live_server, address) or left:
            failures[trial] = f"saved {saved}, deleted {deleted}, {left} orphan consents"
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures}"


# --- Limits counted by every process together -------------------------------------------


@pytest.mark.live_settings(RATELIMIT_ENABLED="true")
def test_twelve_requests_for_one_inbox_at_once_send_one_mail(live_server):
    """Twelve browsers on one network ask for a link to one inbox at the same instant,
    spread over both gunicorn processes. The limits count in the database by default
    (one atomic upsert per hit), so "one link a minute" lets exactly one through: with
    a counter per process, or a read-then-write counter, more would pass."""
    browsers = [Browser(live_server) for _ in range(12)]
    forms = [{"email": "bombed@example.com", "csrf_token": b.csrf_token()} for b in browsers]
    statuses = Counter(
        _statuses(
            release_together(
                [b.prepare("POST", "/login", form) for b, form in zip(browsers, forms, strict=True)]
            )
        )
    )
    assert statuses == {303: 1, 429: 11}, statuses
    assert len(live_server.mails_to("bombed@example.com")) == 1


@pytest.mark.live_settings(
    RATELIMIT_ENABLED="true", MAIL_HOURLY_CEILING="3", LOGIN_LIMIT_PER_IP="1000 per minute"
)
def test_once_the_hourly_mail_ceiling_is_reached_ten_sign_ups_at_once_all_get_429(live_server):
    """The ceiling is counted in the database, so both gunicorn processes and all their
    threads see the same hour: once it is reached, a burst queues nothing more. (A burst
    arriving below it may pass it by the requests in flight: docs/operations.md.)"""
    for number in range(3):
        browser = Browser(live_server)
        form = {"email": f"early{number}@example.com", "csrf_token": browser.csrf_token()}
        assert browser.post("/login", form).status == 303
    browsers = [Browser(live_server) for _ in range(10)]
    forms = [
        {"email": f"late{number}@example.com", "csrf_token": browser.csrf_token()}
        for number, browser in enumerate(browsers)
    ]

    replies = release_together(
        [b.prepare("POST", "/login", form) for b, form in zip(browsers, forms, strict=True)]
    )

    assert Counter(_statuses(replies)) == {429: 10}
    assert live_server.scalar("SELECT count(*) FROM outbox_messages") == 3
    assert live_server.scalar("SELECT count(*) FROM login_attempts") == 3
