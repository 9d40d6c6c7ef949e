"""The newsletter as readers meet it: consent at sign-up, their choices, the signed links.

Editions travel for real: ``auth-service newsletter send daily`` queues them through the
outbox, ``worker.deliver_due`` hands them over SMTP to an aiosmtpd server on 127.0.0.1,
and the tests read the links the way a reader's mail client shows them. Sending itself
(headers, RFC 8058, crashes, who gets what) is in ``newsletter/test_newsletter_edition.py``, the
bounce webhook and the staff preview in ``newsletter/test_newsletter_publisher.py`` (here only that
no cache keeps the preview); both import the helpers below.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import func, select
from support.newsletter import (
    DAY,
    NEXT_DAY,
    consents_of,
    copy_for,
    is_subscribed,
    is_ticked,
    label_of,
    link_line,
    new_reader,
    preferences_link,
    publish,
    reader_named,
    save_choices,
    send_and_deliver,
    swap_token,
    tampered,
    token_of,
)
from support.settings import SECRET
from support.web import Visitor, csrf_token

from auth_service.extensions import db
from auth_service.models import NewsletterConsent
from auth_service.newsletter import subscriptions

# --- Setting the scene ------------------------------------------------------------------


# --- Sending and reading mail -------------------------------------------------------------


# --- Reading pages ------------------------------------------------------------------------


# --- Consent on the wall ------------------------------------------------------------------


def test_the_wall_opt_in_records_the_wording_shown_and_the_page_at_sign_in(app, client):
    publish()
    page = client.get("/articles/le-train-de-nuit").get_data(as_text=True)
    shown = label_of(page, "newsletter")
    assert not is_ticked(page, "newsletter")  # NEWSLETTER_DEFAULT_OPT_IN is off by default
    asked = client.post(
        "/login",
        data={
            "email": "wall@example.com",
            "next": "/articles/le-train-de-nuit",
            "newsletter": "y",
            "csrf_token": csrf_token(client, "/articles/le-train-de-nuit"),
        },
    )
    assert asked.status_code == 303
    # An address nobody confirmed owns nothing and receives no newsletter.
    assert db.session.scalar(select(func.count(NewsletterConsent.id))) == 0
    before = datetime.now(UTC)

    opened = client.get(f"/login/verify?token={Visitor(app, client).last_mail().token}")

    assert opened.status_code == 303 and opened.location.endswith("/articles/le-train-de-nuit")
    [consent] = consents_of("wall@example.com")
    assert consent.newsletter.slug == "daily"
    assert consent.wording == shown
    assert shown.startswith("Recevoir la newsletter")  # the French sentence of the box
    assert consent.source == "/articles/le-train-de-nuit"
    assert before - timedelta(seconds=5) <= consent.consented_at <= datetime.now(UTC)
    assert consent.withdrawn_at is None


def test_an_english_reader_s_consent_holds_the_english_sentence_they_saw(app, client):
    publish()
    client.get("/?lang=en")  # the reader chose English; the cookie keeps it
    page = client.get("/login").get_data(as_text=True)
    shown = label_of(page, "newsletter")

    Visitor(app, client).sign_in("english@example.com", next_url="/", newsletter=True)

    [consent] = consents_of("english@example.com")
    assert consent.wording == shown
    assert shown.startswith("Send me the daily front page newsletter")


def test_no_box_ticked_means_no_consent(reader):
    reader.sign_in("quiet@example.com", newsletter=False)
    assert consents_of("quiet@example.com") == []


def test_the_box_starts_unticked_by_default(client):
    publish()
    assert not is_ticked(client.get("/login").get_data(as_text=True), "newsletter")
    page = client.get("/articles/le-train-de-nuit").get_data(as_text=True)
    assert not is_ticked(page, "newsletter")


@pytest.mark.settings(NEWSLETTER_DEFAULT_OPT_IN=True)
def test_the_setting_pre_ticks_the_box_of_the_wall_and_the_login_page(client):
    publish()
    page = client.get("/articles/le-train-de-nuit").get_data(as_text=True)
    assert is_ticked(page, "newsletter")
    assert is_ticked(client.get("/login").get_data(as_text=True), "newsletter")


def test_signing_in_again_does_not_add_a_second_consent(reader, client):
    reader.sign_in("twice@example.com", newsletter=True)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account")})
    reader.sign_in("twice@example.com", newsletter=True)
    assert len(consents_of("twice@example.com")) == 1


# --- The account page -------------------------------------------------------------------


def test_the_account_page_toggle_subscribes_with_the_label_the_reader_saw(reader, client):
    reader.sign_in("toggle@example.com")
    page = client.get("/account").get_data(as_text=True)
    assert not is_ticked(page, "nl-daily")
    shown = label_of(page, "nl-daily")

    saved = save_choices(client, "/account", ["daily"])

    assert saved.status_code == 303
    [consent] = consents_of("toggle@example.com")
    assert consent.withdrawn_at is None
    assert consent.wording == shown
    assert "La Une du jour" in shown
    assert consent.source == "/account/newsletters"
    assert not shown.startswith("Receive")  # the French page speaks French
    assert is_ticked(client.get("/account").get_data(as_text=True), "nl-daily")


def test_the_account_page_toggle_unsubscribes_and_keeps_the_history(reader, client):
    reader.sign_in("leaving@example.com", newsletter=True)
    assert is_ticked(client.get("/account").get_data(as_text=True), "nl-daily")

    assert save_choices(client, "/account", []).status_code == 303

    assert not is_subscribed("leaving@example.com")
    [consent] = consents_of("leaving@example.com")
    assert consent.withdrawn_at is not None  # the consent given stays on record
    assert not is_ticked(client.get("/account").get_data(as_text=True), "nl-daily")


def test_an_english_account_page_records_the_english_label(reader, client):
    client.get("/?lang=en")
    reader.sign_in("en-toggle@example.com")
    shown = label_of(client.get("/account").get_data(as_text=True), "nl-daily")

    save_choices(client, "/account", ["daily"])

    assert consents_of("en-toggle@example.com")[-1].wording == shown
    assert "Today's front page" in shown


def test_the_account_toggle_needs_a_signed_in_reader_and_a_csrf_token(reader, client, app):
    stranger = app.test_client()
    refused = stranger.post("/account/newsletters", data={"newsletter": "daily"})
    assert refused.status_code in (302, 303, 400, 401)
    reader.sign_in("csrf@example.com")
    assert client.post("/account/newsletters", data={"newsletter": "daily"}).status_code == 400
    assert not is_subscribed("csrf@example.com")


# --- The signed preferences link ----------------------------------------------------------


def test_the_preferences_link_of_a_delivered_mail_works_without_signing_in(
    app, runner, smtp_server
):
    publish()
    new_reader("prefs@example.com")
    [copy] = send_and_deliver(runner, smtp_server)
    link = preferences_link(copy)
    browser = app.test_client()  # no cookie: the reader never signed in here

    page = browser.get(link)

    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert is_ticked(page.get_data(as_text=True), "nl-daily")
    saved = save_choices(browser, link, [])
    assert saved.status_code == 200
    assert not is_subscribed("prefs@example.com")
    assert not is_ticked(saved.get_data(as_text=True), "nl-daily")
    # Ticking again from the same link subscribes again, with the label shown.
    shown = label_of(saved.get_data(as_text=True), "nl-daily")
    save_choices(browser, link, ["daily"])
    assert is_subscribed("prefs@example.com")
    assert consents_of("prefs@example.com")[-1].wording == shown


def test_the_preferences_link_never_expires_and_survives_a_key_rotation(app, runner, smtp_server):
    """The link carries no date: a later edition carries the very same link."""
    publish()
    new_reader("keeper@example.com")
    [first] = send_and_deliver(runner, smtp_server, DAY)
    [later] = send_and_deliver(runner, smtp_server, NEXT_DAY)
    assert preferences_link(first) == preferences_link(later)

    app.config.update(
        SECRET_KEY="a-brand-new-secret-key-for-this-year-0123456789",
        SECRET_KEY_FALLBACKS=[SECRET],
    )

    page = app.test_client().get(preferences_link(first))
    assert page.status_code == 200
    assert is_ticked(page.get_data(as_text=True), "nl-daily")


def test_a_tampered_preferences_link_gets_a_clear_400_page_and_changes_nothing(
    app, runner, smtp_server
):
    publish()
    new_reader("tamper@example.com")
    [copy] = send_and_deliver(runner, smtp_server)
    link = preferences_link(copy)
    bad = swap_token(link, tampered(token_of(link)))
    browser = app.test_client()

    page = browser.get(bad)
    assert page.status_code == 400
    assert "not valid" in page.get_data(as_text=True) or "valide" in page.get_data(as_text=True)
    token = csrf_token(browser, "/login")
    posted = browser.post(bad, data={"csrf_token": token})
    assert posted.status_code == 400
    assert is_subscribed("tamper@example.com")
    for broken in ("x", "e30", "e30.", "." * 600, "é"):
        assert browser.get(swap_token(link, broken)).status_code == 400, broken
    assert browser.get(link.split("?")[0]).status_code == 400  # no token at all


def test_a_reader_s_link_cannot_change_another_reader(app, reader, client, runner, smtp_server):
    publish()
    new_reader("alice@example.com")
    reader.sign_in("bob@example.com", newsletter=True)  # Bob is signed in at `client`
    sign_in_token = reader.last_mail().token  # used, but genuinely signed by the service
    copies = send_and_deliver(runner, smtp_server)
    alice_link = preferences_link(copy_for(copies, "alice@example.com"))
    bob = reader_named("bob@example.com")

    # Bob, signed in, opens Alice's link: it speaks for Alice, never for Bob.
    save_choices(client, alice_link, [])
    assert not is_subscribed("alice@example.com")
    assert is_subscribed("bob@example.com")

    # A token for Bob signed with any key but the service's is refused...
    bob_print = hashlib.sha256(b"bob@example.com").hexdigest()[:16]
    forged = URLSafeSerializer("guessed-key", salt=subscriptions.PREFERENCES_SALT).dumps(
        {"r": bob.id, "f": bob_print}
    )
    assert app.test_client().get(swap_token(alice_link, forged)).status_code == 400
    # ...and so is a token the service signed for another purpose (Bob's sign-in link).
    assert app.test_client().get(swap_token(alice_link, sign_in_token)).status_code == 400
    # Alice's token with Bob's id spliced into its payload breaks the signature.
    payload, _, signature = token_of(alice_link).rpartition(".")
    bob_payload = URLSafeSerializer("any", salt="any").dump_payload({"r": bob.id, "f": bob_print})
    spliced = f"{bob_payload.decode()}.{signature}"
    assert app.test_client().get(swap_token(alice_link, spliced)).status_code == 400
    assert is_subscribed("bob@example.com")


def test_a_link_for_a_deleted_account_does_not_work_for_the_address_signed_up_again(
    app, reader, client, runner, smtp_server
):
    publish()
    reader.sign_in("phoenix@example.com", newsletter=True)
    old_id = reader_named("phoenix@example.com").id
    [copy] = send_and_deliver(runner, smtp_server)
    old_link = preferences_link(copy)
    old_unsubscribe = link_line(copy, "/newsletter/unsubscribe?")
    deleted = client.post(
        "/account/delete",
        data={"confirm": "phoenix@example.com", "csrf_token": csrf_token(client, "/account")},
    )
    assert deleted.status_code == 303
    reader.sign_in("phoenix@example.com", newsletter=True)  # a new account, same address
    assert is_subscribed("phoenix@example.com")
    stranger = app.test_client()

    new_id = reader_named("phoenix@example.com").id
    assert stranger.get(old_link).status_code == 400, (
        f"the deleted account's link opens the new account's preferences "
        f"(reader id {old_id} then {new_id})"
    )
    one_click = stranger.post(old_unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 400
    assert is_subscribed("phoenix@example.com")


# --- What the links show ----------------------------------------------------------------


def _payload(token: str) -> dict:
    """The readable part of a signed token (itsdangerous payloads are not secret)."""
    return URLSafeSerializer("any").load_payload(token.rpartition(".")[0].encode())


def test_preference_links_carry_an_opaque_id_not_the_readers_row_number(app, runner, smtp_server):
    """Defence: the token of the preference and unsubscribe links names the reader by a
    random public id; the sequential row id (how many readers, in what order) is not in
    it."""
    publish()
    first, second = new_reader("alice@example.com"), new_reader("bob@example.com")
    copies = send_and_deliver(runner, smtp_server)
    for reader in (first, second):
        payload = _payload(token_of(preferences_link(copy_for(copies, reader.email))))
        assert payload == {"p": reader.public_id}
        assert not reader.public_id.isdigit() and len(reader.public_id) >= 20
    assert first.public_id != second.public_id


def test_a_link_of_the_first_editions_still_unsubscribes(app, client):
    """Links already in mailboxes named the row id with a fingerprint of the account;
    they are still honoured (and still die with the account)."""
    reader = new_reader("alice@example.com")
    stamp = reader.created_at.astimezone(UTC).replace(tzinfo=None).isoformat()
    fingerprint = hashlib.sha256(f"{reader.email}\n{stamp}".encode()).hexdigest()[:20]
    legacy = URLSafeSerializer(SECRET, salt=subscriptions.PREFERENCES_SALT).dumps(
        {"r": reader.id, "f": fingerprint}
    )
    page = client.get(f"/newsletter/unsubscribe?n=daily&token={legacy}")
    assert page.status_code == 200
    client.post(f"/newsletter/unsubscribe?n=daily&token={legacy}")
    assert not is_subscribed("alice@example.com")
    wrong = URLSafeSerializer(SECRET, salt=subscriptions.PREFERENCES_SALT).dumps(
        {"r": reader.id, "f": "0" * 20}
    )
    assert client.get(f"/newsletter/unsubscribe?n=daily&token={wrong}").status_code == 400


# --- The staff preview, kept by no cache ------------------------------------------------

PREVIEW_KEY = "preview-key-0123456789"
PREVIEW = f"/newsletter/daily/preview?date={DAY.isoformat()}"


@pytest.mark.settings(NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY)
def test_the_staff_preview_is_stored_by_no_cache(app, reader, client):
    """An unpublished edition, let in by a header a shared cache does not vary on: a
    cached copy would be served to anyone who asks for the same URL without the key."""
    publish()
    with_key = app.test_client().get(PREVIEW, headers={"X-API-Key": PREVIEW_KEY})
    reader.sign_in("newsroom@example.com")
    reader_named("newsroom@example.com").is_staff = True
    db.session.commit()
    as_staff = client.get(PREVIEW)

    for response in (with_key, as_staff):
        assert response.status_code == 200
        assert "Le train de nuit revient" in response.get_data(as_text=True)
        assert response.headers.get("Cache-Control") == "no-store"
