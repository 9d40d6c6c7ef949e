"""The rules of links and codes, tested without HTTP: ``auth_service.auth.signin`` alone."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from support.settings import SECRET

from auth_service.auth import sessions, signin
from auth_service.extensions import db
from auth_service.models import (
    LoginAttempt,
    NewsletterConsent,
    Reader,
    ReaderSession,
    SignInEvent,
    utcnow,
)


def issue(address="reader@example.com", **options) -> signin.IssuedLogin:
    """Issue an attempt and commit it, as the view does."""
    issued = signin.issue(address, **options)
    db.session.commit()
    return issued


def reason_of(call, *args, **kwargs) -> str:
    """The reason of the SignInError ``call`` raises."""
    with pytest.raises(signin.SignInError) as caught:
        call(*args, **kwargs)
    return caught.value.reason


# --- Issuing ----------------------------------------------------------------------


def test_database_keeps_only_hashes_of_link_and_code(app):
    """A dump of the table opens no account: the link's random part (inside its signed
    payload, which anyone can read) is kept as its SHA-256, the code as a keyed hash."""
    issued = issue()
    random_part = signin._serializer().loads(issued.token)["r"]
    row = db.session.execute(
        select(LoginAttempt.__table__).where(LoginAttempt.id == issued.attempt.id)
    ).one()
    stored = [str(value) for value in row]
    assert not [value for value in stored if random_part in value or issued.code == value]
    assert row.token_hash == hashlib.sha256(random_part.encode()).hexdigest()
    keyed = hmac.new(SECRET.encode(), f"{row.id}:{issued.code}".encode(), hashlib.sha256)
    assert row.code_hash == keyed.hexdigest()


def test_link_and_code_are_fresh_each_time(app):
    first, second = issue(), issue()
    assert first.token != second.token
    assert first.attempt.id != second.attempt.id


def test_code_is_six_digits(app):
    for _ in range(20):
        code = issue().code
        assert len(code) == 6 and code.isdigit()


# --- Links ------------------------------------------------------------------------


def test_link_signs_in_once(app):
    issued = issue()
    assert signin.consume_link(issued.token).id == issued.attempt.id
    assert reason_of(signin.consume_link, issued.token) == "used"


def test_tampered_link_is_invalid(app):
    token = issue().token
    payload, stamp, signature = token.split(".")
    forged = f"{payload}.{stamp}.{'A' * len(signature)}"
    assert reason_of(signin.consume_link, forged) == "invalid"
    assert reason_of(signin.consume_link, "not-a-token") == "invalid"
    assert reason_of(signin.consume_link, "") == "invalid"


def test_link_signed_with_an_unknown_key_is_invalid(app):
    issued = issue()
    app.config["SECRET_KEY"] = "another-key-entirely-another-key-entirely"
    assert reason_of(signin.consume_link, issued.token) == "invalid"


def test_expired_link_says_expired(app):
    issued = issue(now=utcnow() - timedelta(minutes=16))
    assert reason_of(signin.consume_link, issued.token) == "expired"
    assert reason_of(signin.check_link, issued.token) == "expired"


@pytest.mark.settings(LOGIN_TOKEN_MAX_AGE=900)
def test_link_older_than_its_signature_allows_says_expired(app):
    issued = issue()
    app.config["LOGIN_TOKEN_MAX_AGE"] = -1  # the signature's own clock now rejects it
    assert reason_of(signin.consume_link, issued.token) == "expired"


def test_link_with_right_signature_but_wrong_secret_is_invalid(app):
    issued = issue()
    other = issue()
    # A validly signed payload naming one attempt with another attempt's random part.
    serializer = signin._serializer()
    mixed = serializer.dumps({"a": issued.attempt.id, "r": serializer.loads(other.token)["r"]})
    assert reason_of(signin.consume_link, mixed) == "invalid"
    assert signin.consume_link(issued.token).id == issued.attempt.id


def test_checking_a_link_consumes_nothing(app):
    issued = issue()
    for _ in range(3):
        assert signin.check_link(issued.token).id == issued.attempt.id
    assert db.session.get(LoginAttempt, issued.attempt.id).used_at is None
    assert signin.consume_link(issued.token)


def test_racing_clicks_sign_in_only_once(app):
    issued = issue()
    winners, losers = [], []
    start = threading.Barrier(2)

    def click():
        with app.app_context():
            start.wait()
            try:
                signin.consume_link(issued.token)
                db.session.commit()
                winners.append(1)
            except signin.SignInError as error:
                losers.append(error.reason)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert losers == ["used"]


def test_new_link_does_not_kill_an_earlier_one(app):
    first, second = issue(), issue()
    assert signin.consume_link(first.token).id == first.attempt.id
    signin.complete(first.attempt, method="link")
    # Signing in voids every other link of the address, the later one included.
    assert reason_of(signin.consume_link, second.token) == "used"


def test_other_addresses_keep_their_links(app):
    mine, theirs = issue("me@example.com"), issue("them@example.com")
    signin.complete(signin.consume_link(mine.token), method="link")
    assert signin.consume_link(theirs.token).id == theirs.attempt.id


# --- Codes ------------------------------------------------------------------------


def test_code_signs_in_the_browser_that_asked(app):
    issued = issue()
    assert signin.consume_code([issued.attempt.id], issued.code).id == issued.attempt.id
    assert reason_of(signin.consume_code, [issued.attempt.id], issued.code) == "used"


def test_code_without_an_attempt_in_the_browser_is_refused(app):
    issued = issue()
    assert reason_of(signin.consume_code, [], issued.code) == "invalid"


def test_wrong_codes_count_down_then_kill_the_attempt(app):
    issued = issue()
    wrong = f"{(int(issued.code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1):
        with pytest.raises(signin.SignInError) as caught:
            signin.consume_code([issued.attempt.id], wrong)
        assert (caught.value.reason, caught.value.tries_left) == ("wrong_code", left)
    assert reason_of(signin.consume_code, [issued.attempt.id], wrong) == "too_many_tries"
    # Dead: neither the right code nor the link works any more.
    assert reason_of(signin.consume_code, [issued.attempt.id], issued.code) == "too_many_tries"
    assert reason_of(signin.consume_link, issued.token) == "too_many_tries"


@pytest.mark.parametrize("typed", ["12ab56", "", "1234567", "12345", "<b>"])
def test_text_that_is_not_six_digits_costs_no_try(app, typed):
    issued = issue()
    with pytest.raises(signin.SignInError) as caught:
        signin.consume_code([issued.attempt.id], typed)
    assert (caught.value.reason, caught.value.tries_left) == ("malformed_code", 5)
    assert db.session.get(LoginAttempt, issued.attempt.id).tries_left == 5


def test_code_typed_with_spaces_or_full_width_digits_works(app):
    issued = issue()
    wide = "".join(chr(ord(digit) + 0xFEE0) for digit in issued.code)
    assert signin.consume_code([issued.attempt.id], wide).id == issued.attempt.id
    other = issue("other@example.com")
    spaced = f"{other.code[:3]} {other.code[3:]}"
    assert signin.consume_code([other.attempt.id], spaced).id == other.attempt.id


def test_code_of_an_earlier_attempt_still_works(app):
    first, second = issue(), issue()
    ids = [second.attempt.id, first.attempt.id]
    assert signin.consume_code(ids, first.code).id == first.attempt.id


def test_wrong_code_costs_every_open_attempt_a_try(app):
    first, second = issue(), issue()
    wrong = next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in (first.code, second.code))
    with pytest.raises(signin.SignInError):
        signin.consume_code([first.attempt.id, second.attempt.id], wrong)
    tries = db.session.scalars(select(LoginAttempt.tries_left)).all()
    assert sorted(tries) == [4, 4]


def test_expired_code_says_expired(app):
    issued = issue(now=utcnow() - timedelta(minutes=16))
    assert reason_of(signin.consume_code, [issued.attempt.id], issued.code) == "expired"


# --- Key rotation -----------------------------------------------------------------


def test_links_and_codes_survive_a_key_rotation(app):
    old_link, old_code = issue("a@example.com"), issue("b@example.com")
    app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
    app.config["SECRET_KEY"] = "the-new-secret-key-after-rotation-0123456789"
    assert signin.consume_link(old_link.token).id == old_link.attempt.id
    assert signin.consume_code([old_code.attempt.id], old_code.code).id == old_code.attempt.id
    # New links are signed with the new key: dropping the old one leaves them valid.
    fresh = issue("c@example.com")
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert signin.consume_link(fresh.token).id == fresh.attempt.id


def test_links_signed_with_a_retired_key_stop_working(app):
    issued = issue()
    app.config["SECRET_KEY"] = "the-new-secret-key-after-rotation-0123456789"
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert reason_of(signin.consume_link, issued.token) == "invalid"


# --- Completing a sign-in ---------------------------------------------------------


def test_account_is_created_at_first_sign_in_not_before(app):
    issued = issue("new@example.com")
    assert db.session.scalar(select(Reader)) is None
    reader = signin.complete(
        signin.consume_link(issued.token),
        method="link",
        user_agent="Firefox/130",
        network="192.0.2.0/24",
    )
    assert reader.email == "new@example.com"
    assert reader.last_sign_in_at is not None
    event = db.session.scalar(select(SignInEvent))
    assert (event.method, event.network) == ("link", "192.0.2.0/24")


def test_returning_reader_keeps_one_account(app):
    for _ in range(2):
        signin.complete(signin.consume_link(issue("back@example.com").token), method="link")
    assert len(db.session.scalars(select(Reader)).all()) == 1
    assert len(db.session.scalars(select(SignInEvent)).all()) == 2


def test_newsletter_consent_records_the_wording_shown(app):
    issued = issue(
        newsletter=True, newsletter_wording="Send me the daily front page.", next_url="/articles/x"
    )
    reader = signin.complete(
        signin.consume_link(issued.token),
        method="link",
        newsletter_wording=issued.attempt.newsletter_wording,
    )
    consent = db.session.scalar(select(NewsletterConsent))
    assert consent.reader_id == reader.id
    assert consent.newsletter.slug == "daily"
    assert consent.wording == "Send me the daily front page."
    assert consent.source == "/articles/x"


def test_no_consent_without_the_box_ticked(app):
    signin.complete(signin.consume_link(issue().token), method="link")
    assert db.session.scalar(select(NewsletterConsent)) is None


def test_a_box_ticked_by_whoever_asked_is_no_consent_of_the_opener(app):
    """The attempt remembers the box, but only the view can say that the browser
    signing in is the one that ticked it; without that word nothing is recorded."""
    issued = issue(newsletter=True, newsletter_wording="Send me the daily front page.")
    signin.complete(signin.consume_link(issued.token), method="link")
    assert db.session.scalar(select(NewsletterConsent)) is None


def test_an_unconfirmed_address_owns_nothing(app):
    issue("stranger@example.com", newsletter=True, newsletter_wording="yes")
    assert db.session.scalar(select(Reader)) is None
    assert db.session.scalar(select(NewsletterConsent)) is None


def test_a_sign_in_opens_a_server_side_session_that_ends_on_its_own(app):
    first = signin.complete(signin.consume_link(issue().token), method="link")
    first_key = first.get_id()
    second = signin.complete(signin.consume_link(issue().token), method="code")
    second_key = second.get_id()
    assert first_key != second_key and str(first.id) not in (first_key, second_key)
    assert sessions.reader_for(first_key).id == first.id
    sessions.end_session(first_key)
    assert sessions.reader_for(first_key) is None
    assert sessions.reader_for(second_key).id == first.id


def test_sign_out_everywhere_ends_every_session(app):
    keys = [
        signin.complete(signin.consume_link(issue().token), method="link").get_id()
        for _ in range(3)
    ]
    reader = sessions.reader_for(keys[0])
    sessions.end_every_session(reader)
    assert [sessions.reader_for(key) for key in keys] == [None, None, None]


def test_a_session_lasts_the_configured_lifetime_from_its_sign_in(app):
    key = signin.complete(signin.consume_link(issue().token), method="link").get_id()
    lifetime = app.config["PERMANENT_SESSION_LIFETIME"]
    assert sessions.reader_for(key, now=utcnow() + lifetime - timedelta(minutes=1))
    assert sessions.reader_for(key, now=utcnow() + lifetime) is None


def test_the_database_keeps_only_a_hash_of_each_session_key(app):
    key = signin.complete(signin.consume_link(issue().token), method="link").get_id()
    stored = db.session.scalars(select(ReaderSession.key_hash)).all()
    assert len(stored) == 1 and key not in stored[0] and len(stored[0]) == 64


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("not an ip", ""),
        (None, ""),
    ],
)
def test_sign_in_records_only_an_approximate_network(ip, network):
    assert signin.approximate_network(ip) == network
