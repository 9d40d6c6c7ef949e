"""Sending the daily edition: RFC 8058 headers, one-click unsubscribe, exactly-once delivery.

Every copy travels for real: ``auth-service newsletter send daily --date D`` queues it in
the outbox, ``worker.deliver_due`` (or an ``auth-service worker`` process) hands it over
SMTP to an aiosmtpd server on 127.0.0.1, and the tests read what arrived as a mail client
would. The helpers (articles of 10 March 2025, readers, parsing) live in
``newsletter/test_newsletter.py``.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from sqlalchemy import func, select, update
from support.newsletter import (
    DAY,
    DAY_TITLES,
    EMPTY_DAY,
    NEXT_DAY,
    NOT_THAT_DAY,
    SITE,
    copy_for,
    daily,
    form_actions,
    html_part,
    is_subscribed,
    new_reader,
    newsletter_recipients,
    parse,
    publish,
    reader_named,
    send,
    send_and_deliver,
    text_part,
    unsubscribe_header_links,
)
from support.settings import SECRET
from support.web import Visitor

from auth_service.extensions import db
from auth_service.mail import worker
from auth_service.models import Edition, OutboxMessage, utcnow
from auth_service.newsletter import editions, subscriptions

ONE_CLICK = "List-Unsubscribe=One-Click"
# English sentences of the edition: none may show in a French copy.
ENGLISH_STRINGS = [
    "Read the article",
    "Choose your newsletters",
    "Unsubscribe in one click",
    "You receive",
    "because you asked for it",
    "Today's front page",
    "Monday",
    "March",
]


def one_click_url(message) -> str:
    """The HTTP(S) address of ``List-Unsubscribe``."""
    [url] = [link for link in unsubscribe_header_links(message) if link.startswith("http")]
    return url


def outbox_count() -> int:
    """How many messages the outbox holds."""
    db.session.commit()
    return db.session.scalar(select(func.count(OutboxMessage.id)))


def hidden_fields(page: str, action: str) -> dict:
    """The hidden inputs of the form that posts to ``action``."""
    for form in re.findall(r"<form[^>]*>.*?</form>", page, re.DOTALL):
        if html.escape(action) in form or action in form:
            return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    raise AssertionError(f"no form posts to {action}")


# --- A French and an English reader get their copies -----------------------------------


@pytest.fixture
def two_copies(app, reader, runner, smtp_server):
    """Léa (French) and Sam (English) signed up on the wall; the edition of DAY delivered."""
    publish()
    reader.sign_in("lea@example.com", newsletter=True)
    english = Visitor(app, app.test_client())
    english.client.get("/?lang=en")
    english.sign_in("sam@example.com", newsletter=True)
    copies = send_and_deliver(runner, smtp_server)
    assert len(copies) == 2
    return copy_for(copies, "lea@example.com"), copy_for(copies, "sam@example.com")


def test_each_copy_carries_the_rfc_8058_and_list_headers(two_copies, smtp_server):
    for copy in two_copies:
        links = unsubscribe_header_links(copy)
        assert len(links) == 2, copy["List-Unsubscribe"]
        assert one_click_url(copy).startswith(f"{SITE}/newsletter/unsubscribe?")
        [mailto] = [link for link in links if link.startswith("mailto:")]
        assert re.match(r"mailto:[^@?]+@news\.test(\?|$)", mailto), mailto
        assert copy["List-Unsubscribe-Post"] == ONE_CLICK
        assert re.search(r"<daily\.news\.test>$", str(copy["List-Id"])), copy["List-Id"]
    raw = b"\n".join(envelope.original_content for envelope in smtp_server.messages)
    # One plain line each, not folded into encoded words no mail client could use.
    assert raw.count(b"\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r") == 2
    assert max(len(line) for line in raw.split(b"\n")) <= 998


def test_each_copy_has_its_own_message_id_a_date_and_comes_from_the_site(two_copies):
    french, english = two_copies
    ids = [copy["Message-ID"] for copy in two_copies]
    assert all(re.fullmatch(r"<[^@<>\s]+@news\.test>", str(i)) for i in ids), ids
    assert ids[0] != ids[1]
    for copy in two_copies:
        sent = parsedate_to_datetime(str(copy["Date"]))
        assert sent.tzinfo is not None
        assert abs(datetime.now(UTC) - sent) < timedelta(minutes=5)
        [sender] = copy["From"].addresses
        assert sender.display_name == "Le Quotidien"  # SITE_NAME
        assert sender.addr_spec == "no-reply@news.test"
    assert french["To"] == "lea@example.com" and english["To"] == "sam@example.com"


def test_a_french_reader_gets_french_and_an_english_reader_english(two_copies):
    french, english = two_copies
    assert french["Subject"] == "La Une du jour – lundi 10 mars 2025"
    assert english["Subject"] == "Today's front page – Monday, March 10, 2025"
    assert '<html lang="fr">' in html_part(french)
    assert '<html lang="en">' in html_part(english)
    assert french["Content-Language"] == "fr" and english["Content-Language"] == "en"
    french_text = text_part(french) + html.unescape(html_part(french))
    assert [s for s in ENGLISH_STRINGS if s in french_text] == []
    assert "Lire l’article" in html_part(french) and "Read the article" in html_part(english)


def test_both_parts_list_that_day_s_articles_newest_first_and_nothing_else(two_copies):
    for copy in two_copies:
        assert copy.get_content_type() == "multipart/alternative"
        for body in (text_part(copy), html.unescape(html_part(copy))):
            positions = [body.index(title) for title in DAY_TITLES]
            assert positions == sorted(positions)
            assert [title for title in NOT_THAT_DAY if title in body] == []
            assert "Le chapeau de « Le soir tombe »." in body  # the standfirst


def test_every_link_of_a_copy_works_and_no_placeholder_is_left(two_copies, app, smtp_server):
    browser = app.test_client()
    raw = b"".join(envelope.original_content for envelope in smtp_server.messages)
    assert b"@@" not in raw
    for copy in two_copies:
        text_links = re.findall(r"^(https?://\S+)$", text_part(copy), re.MULTILINE)
        html_links = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', html_part(copy))]
        images = re.findall(r'<img[^>]*src="([^"]+)"', html_part(copy))
        assert images and all(src.startswith(f"{SITE}/static/") for src in images)
        assert all('alt="' in tag for tag in re.findall(r"<img[^>]*>", html_part(copy)))
        for link in {*text_links, *html_links, *images}:
            assert link.startswith(f"{SITE}/"), link
            assert "@@" not in link
            response = browser.get(link)
            response.close()  # a static file is streamed: let it go
            assert response.status_code == 200, (link, response.status_code)
        for slug, title in [("le-train-de-nuit", "Le train de nuit revient")]:
            page = browser.get(f"{SITE}/articles/{slug}").get_data(as_text=True)
            assert f"{SITE}/articles/{slug}" in text_links and title in page
        # The reader's own links: the same one-click address in the header and the body.
        assert one_click_url(copy) in text_links and one_click_url(copy) in html_links
    assert one_click_url(two_copies[0]) != one_click_url(two_copies[1])


def test_the_html_part_works_with_images_off_and_in_dark_mode(two_copies):
    body = html_part(two_copies[0])
    assert 'name="color-scheme" content="light dark"' in body
    assert "<link" not in body
    # Layout is inline; the one style block only adds dark colours where clients allow.
    blocks = re.findall(r"<style>(.*?)</style>", body, re.DOTALL)
    assert len(blocks) <= 1
    for block in blocks:
        assert "@media (prefers-color-scheme: dark)" in block
        assert re.sub(r"/\*.*?\*/", "", block).strip().startswith("@media")
    assert re.search(r'<table[^>]*style="[^"]*max-width:600px', body)
    assert re.search(r'<img[^>]*alt="[^"]+"', body)


# --- One click, and the page a mail scanner sees ----------------------------------------------


def test_a_one_click_post_unsubscribes_with_no_cookie_and_no_csrf(two_copies, app):
    french, _english = two_copies
    mail_client = app.test_client()  # the mail provider's server: no cookie, no form token

    response = mail_client.post(
        one_click_url(french), data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 200
    assert not is_subscribed("lea@example.com")
    assert is_subscribed("sam@example.com")
    again = mail_client.post(one_click_url(french), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200  # a retried POST is no error


def test_a_one_click_post_may_come_as_multipart_form_data(two_copies, app):
    """RFC 8058 allows either form encoding for the POST."""
    _french, english = two_copies
    response = app.test_client().post(
        one_click_url(english),
        data={"List-Unsubscribe": "One-Click"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert not is_subscribed("sam@example.com")


def test_an_unsubscribed_reader_gets_no_more_editions(two_copies, app, runner, smtp_server):
    french, _english = two_copies
    app.test_client().post(one_click_url(french), data={"List-Unsubscribe": "One-Click"})
    later = send_and_deliver(runner, smtp_server, NEXT_DAY)
    assert [copy["To"] for copy in later] == ["sam@example.com"]


def test_opening_the_unsubscribe_link_only_shows_a_button(two_copies, app):
    french, _english = two_copies
    scanner = app.test_client()
    url = one_click_url(french)

    page = scanner.get(url)
    scanner.head(url)
    scanner.get(url, headers={"User-Agent": "Mozilla/5.0 (compatible; LinkScanner)"})

    assert page.status_code == 200
    assert is_subscribed("lea@example.com")
    body = page.get_data(as_text=True)
    assert url.replace(SITE, "") in form_actions(body)
    assert "<button" in body
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_the_confirm_button_unsubscribes_and_one_click_subscribes_again(two_copies, app):
    french, _english = two_copies
    browser = app.test_client()
    path = one_click_url(french).replace(SITE, "")
    page = browser.get(path).get_data(as_text=True)

    done = browser.post(path, data=hidden_fields(page, path))

    assert done.status_code == 200
    assert not is_subscribed("lea@example.com")
    done_page = done.get_data(as_text=True)
    [back] = [action for action in form_actions(done_page) if "resubscribe" in action]
    again = browser.post(back, data=hidden_fields(done_page, back))
    assert again.status_code == 200
    assert is_subscribed("lea@example.com")
    consent = subscriptions.open_consent(reader_named("lea@example.com"), daily())
    assert consent.source == "/newsletter/resubscribe"
    assert consent.wording  # what the button said


def test_a_tampered_one_click_link_is_refused_and_changes_nothing(two_copies, app):
    french, _english = two_copies
    url = one_click_url(french)
    payload, _, signature = url.rpartition(".")
    bad = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    response = app.test_client().post(bad, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400
    assert is_subscribed("lea@example.com")


# --- Who gets the edition ----------------------------------------------------------------------


def test_only_subscribed_readers_without_a_mail_problem_get_the_edition(app, runner, smtp_server):
    publish()
    new_reader("yes@example.com")
    new_reader("en@example.com", locale="en")
    new_reader("never@example.com", subscribed=False)
    new_reader("gone@example.com")
    new_reader("withdrew@example.com")
    new_reader("bounced@example.com")
    new_reader("back@example.com")
    first = send_and_deliver(runner, smtp_server, DAY)
    assert len(first) == 6
    app.test_client().post(
        one_click_url(copy_for(first, "gone@example.com")), data={"List-Unsubscribe": "One-Click"}
    )
    app.test_client().post(
        one_click_url(copy_for(first, "back@example.com")), data={"List-Unsubscribe": "One-Click"}
    )
    subscriptions.subscribe(
        reader_named("back@example.com"), daily(), wording="Recevoir", source="test"
    )
    subscriptions.unsubscribe(reader_named("withdrew@example.com"), daily())
    subscriptions.record_mail_event("bounced@example.com", "bounce", utcnow())
    db.session.commit()

    later = send_and_deliver(runner, smtp_server, NEXT_DAY)

    assert sorted(copy["To"] for copy in later) == [
        "back@example.com",
        "en@example.com",
        "yes@example.com",
    ]


def test_a_reader_with_an_accented_address_gets_their_copy(runner, smtp_server):
    publish()
    new_reader("zoé@exemple.fr")
    [copy] = send_and_deliver(runner, smtp_server)
    assert newsletter_recipients(smtp_server) == ["zoé@exemple.fr"]
    assert copy["List-Unsubscribe-Post"] == ONE_CLICK


# --- Running the command ---------------------------------------------------------------------


def test_sending_the_same_edition_twice_queues_nothing_more(runner, smtp_server):
    publish()
    for name in ("one", "two", "three"):
        new_reader(f"{name}@example.com")

    first = send(runner)
    second = send(runner)

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "3 articles" in first.output and "queued 3, already queued before 0" in first.output
    assert "queued 0, already queued before 3" in second.output
    assert outbox_count() == 3
    worker.deliver_due()
    assert "queued 0, already queued before 3" in send(runner).output  # after delivery too
    worker.deliver_due()
    assert Counter(newsletter_recipients(smtp_server)) == {
        "one@example.com": 1,
        "two@example.com": 1,
        "three@example.com": 1,
    }
    # One rendering per language, shared by every copy.
    assert db.session.scalar(select(func.count(Edition.id))) == 2


def test_a_dry_run_counts_and_queues_nothing(runner):
    publish()
    new_reader("one@example.com")
    new_reader("two@example.com")

    result = send(runner, DAY, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "would queue 2" in result.output
    assert outbox_count() == 0
    assert db.session.scalar(select(func.count(Edition.id))) == 0
    assert "queued 2" in send(runner).output


def test_a_day_without_articles_is_a_clear_error_and_queues_nothing(runner):
    publish()
    new_reader("one@example.com")

    result = send(runner, EMPTY_DAY)

    assert result.exit_code != 0
    assert "no article" in result.output and EMPTY_DAY.isoformat() in result.output
    assert "Traceback" not in result.output
    assert outbox_count() == 0


def test_an_unknown_newsletter_or_a_bad_date_is_a_clear_error(runner):
    publish()
    unknown = runner.invoke(args=["newsletter", "send", "weekly", "--date", DAY.isoformat()])
    assert unknown.exit_code != 0 and "weekly" in unknown.output
    bad_date = runner.invoke(args=["newsletter", "send", "daily", "--date", "2025-02-30"])
    assert bad_date.exit_code != 0 and "2025-02-30" in bad_date.output
    assert outbox_count() == 0


# --- Crashes ------------------------------------------------------------------------------------

EVERYONE = [f"reader{n}@example.com" for n in range(5)]


class ProcessKilled(BaseException):
    """Stands for the process dying: nothing after it runs."""


def test_a_queueing_run_killed_after_its_first_batch_is_finished_by_the_rerun(
    runner, smtp_server, monkeypatch
):
    """The crash is simulated with a monkeypatch: ``editions._subscribers_after`` raises
    when the run asks for its second batch, as if the process had been killed there."""
    publish()
    for address in EVERYONE:
        new_reader(address)
    real = editions._subscribers_after
    calls = []

    def dies_at_the_second_batch(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise ProcessKilled()
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(editions, "_subscribers_after", dies_at_the_second_batch)
        with pytest.raises(ProcessKilled):
            editions.queue_edition("daily", DAY, batch_size=2)
    db.session.rollback()  # what the dead process had not committed is gone
    assert outbox_count() == 2

    rerun = send(runner)

    assert rerun.exit_code == 0, rerun.output
    assert "queued 3, already queued before 2" in rerun.output
    worker.deliver_due()
    assert Counter(newsletter_recipients(smtp_server)) == dict.fromkeys(EVERYONE, 1)


def test_a_run_killed_between_a_batch_insert_and_its_commit_is_finished_by_the_rerun(
    runner, smtp_server, monkeypatch
):
    """The crash is simulated with a monkeypatch: the second batch is inserted, then
    ``editions.wake_workers`` raises before the commit, as if the process died there."""
    publish()
    for address in EVERYONE:
        new_reader(address)
    real = editions.wake_workers
    calls = []

    def dies_before_the_second_commit():
        calls.append(1)
        if len(calls) > 1:
            raise ProcessKilled()
        return real()

    with monkeypatch.context() as patch:
        patch.setattr(editions, "wake_workers", dies_before_the_second_commit)
        with pytest.raises(ProcessKilled):
            editions.queue_edition("daily", DAY, batch_size=2)
    db.session.rollback()
    assert outbox_count() == 2

    rerun = send(runner)

    assert "queued 3, already queued before 2" in rerun.output, rerun.output
    worker.deliver_due()
    assert Counter(newsletter_recipients(smtp_server)) == dict.fromkeys(EVERYONE, 1)


class StallingMailbox:
    """An aiosmtpd handler that accepts ``accept`` messages, then holds the next one.

    The held message gets no answer until :attr:`release` is set (it is then refused
    with a 451), so the sender is caught mid-send, which is where the test kills it.
    """

    def __init__(self, accept: int):
        self.accept = accept
        self.messages: list = []
        self.lock = threading.Lock()
        self.stalled = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Accept while under the quota; otherwise hold the sender, then refuse."""
        with self.lock:
            taken = len(self.messages) < self.accept
            if taken:
                self.messages.append(envelope)
        if taken:
            return "250 Message accepted for delivery"
        self.stalled.set()
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        return "451 4.3.0 Try again later"


@pytest.fixture
def stalling_smtp_server(smtp_server):
    """The test's SMTP server, restarted on its port with a :class:`StallingMailbox`."""
    smtp_server.stop()
    smtp_server.recorder = StallingMailbox(accept=2)
    smtp_server.start()
    yield smtp_server
    smtp_server.recorder.release.set()


def worker_process(app, smtp_server) -> subprocess.Popen:
    """``auth-service worker`` in its own process, on the test's database and SMTP server."""
    environment = {
        **os.environ,
        "AUTH_SERVICE_SECRET_KEY": SECRET,
        "AUTH_SERVICE_SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "AUTH_SERVICE_MAIL_SERVER": "127.0.0.1",
        "AUTH_SERVICE_MAIL_PORT": str(smtp_server.port),
        "AUTH_SERVICE_RATELIMIT_ENABLED": "false",
        "PUBLIC_URL": SITE,
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from auth_service.cli import main; main()", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_the_sender_at_the_third_copy(app, runner, smtp_server) -> None:
    """Queue an edition for everyone, start a worker process and SIGKILL it while the
    server holds its answer to the third copy; then let the dead worker's claim on the
    rest run out (``OUTBOX_CLAIM_SECONDS``), as time would."""
    publish()
    for address in EVERYONE:
        new_reader(address)
    assert "queued 5" in send(runner).output
    worker = worker_process(app, smtp_server)
    try:
        assert smtp_server.recorder.stalled.wait(60), "the worker never reached the third copy"
        worker.send_signal(signal.SIGKILL)  # mid-send: the third copy is on the wire
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        smtp_server.recorder.release.set()  # the held answer goes out, whatever happened
    db.session.commit()
    sent = select(func.count(OutboxMessage.id)).where(OutboxMessage.sent_at.isnot(None))
    assert db.session.scalar(sent) == 2
    db.session.execute(update(OutboxMessage).values(claimed_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_a_sender_killed_half_way_then_rerun_delivers_each_copy_exactly_once(
    app, runner, stalling_smtp_server
):
    smtp_server = stalling_smtp_server
    kill_the_sender_at_the_third_copy(app, runner, smtp_server)
    assert len(smtp_server.messages) == 2
    smtp_server.recorder.accept = len(EVERYONE) * 10

    rerun = runner.invoke(args=["worker", "--once"])

    assert rerun.exit_code == 0, rerun.output
    assert "sent 3" in rerun.output
    assert Counter(newsletter_recipients(smtp_server)) == dict.fromkeys(EVERYONE, 1)


class SwallowingMailbox(StallingMailbox):
    """Keeps every message it receives, but holds its "250" for those beyond ``accept``
    until :attr:`release` is set: a sender killed meanwhile never learns that the
    server took the message."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Keep the message; answer at once under the quota, else once released."""
        with self.lock:
            self.messages.append(envelope)
            held = len(self.messages) > self.accept
        if held:
            self.stalled.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        return "250 Message accepted for delivery"


def test_a_sender_killed_after_the_server_took_a_copy_sends_only_that_one_again_same_id(
    app, runner, smtp_server
):
    """The one duplicate a crash can make: the message whose "250" the dead worker never
    read. It goes again with its Message-ID, so a mailbox shows it once."""
    smtp_server.stop()
    smtp_server.recorder = SwallowingMailbox(accept=2)
    smtp_server.start()
    kill_the_sender_at_the_third_copy(app, runner, smtp_server)
    assert len(smtp_server.messages) == 3  # the server kept the third copy

    rerun = runner.invoke(args=["worker", "--once"])

    assert rerun.exit_code == 0, rerun.output
    assert "sent 3" in rerun.output
    received = Counter(newsletter_recipients(smtp_server))
    assert set(received) == set(EVERYONE)
    [twice] = [address for address, times in received.items() if times == 2]
    assert sorted(received.values()) == [1, 1, 1, 1, 2]
    copies = [parse(m) for m in smtp_server.messages if m.rcpt_tos == [twice]]
    assert len({copy["Message-ID"] for copy in copies}) == 1
    assert copies[0]["Message-ID"] is not None


class ClosingMailbox:
    """An aiosmtpd handler that accepts ``accept`` messages, then shuts down (421)."""

    def __init__(self, accept: int):
        self.accept = accept
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Accept under the quota; beyond it, close the channel as a stopping server does."""
        if len(self.messages) >= self.accept:
            return "421 4.3.2 Service shutting down"
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def test_an_smtp_server_gone_half_way_loses_nothing_and_sends_nothing_twice(runner, smtp_server):
    publish()
    for address in EVERYONE:
        new_reader(address)
    send(runner)
    smtp_server.stop()
    smtp_server.recorder = ClosingMailbox(accept=2)
    smtp_server.start()

    first = worker.deliver_due()
    smtp_server.stop()  # and now it is down altogether
    while_down = worker.deliver_due()
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    still_down = worker.deliver_due()

    assert first.sent == 2 and first.retried == 3
    assert while_down.sent == 0
    assert still_down.sent == 0 and still_down.retried == 3
    smtp_server.recorder.accept = 100
    smtp_server.start()
    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    last = worker.deliver_due()
    assert last.sent == 3
    assert Counter(newsletter_recipients(smtp_server)) == dict.fromkeys(EVERYONE, 1)
    assert worker.deliver_due().sent == 0  # nothing left to deliver
