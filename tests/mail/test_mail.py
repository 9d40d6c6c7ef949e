"""The sign-in mail as the reader receives it, and the outbox that delivers it.

Every mail here travels for real: the service queues it in its database, a worker or
``deliver_due`` hands it over SMTP to an aiosmtpd server on 127.0.0.1 (or writes it to
the dev mailbox), and the tests read what arrived the way a mail client would.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text, update
from support.newsletter import new_reader, publish, send

from auth_service.auth import signin
from auth_service.auth.signin_mail import queue_sign_in_mail
from auth_service.extensions import db
from auth_service.mail import outbox
from auth_service.mail import worker as delivery
from auth_service.mail.rendering import LINK_MARKERS
from auth_service.models import LoginAttempt, OutboxMessage, utcnow

SITE = "http://news.test"  # PUBLIC_URL in the app fixture: the browser talks to it too
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK_LINE = re.compile(r"^(https?://\S+)$", re.MULTILINE)
SIX_DIGITS = re.compile(r"(?<!\d)(\d{6})(?!\d)")
# The English source strings of the sign-in mail: none may show in a French mail.
ENGLISH_STRINGS = [
    "Your sign-in link for",
    "Hello,",
    "To sign in to",
    "open this link",
    "Or enter this code",
    "valid for",
    "work only once",
    "You receive this email because",
    "If it was not you",
    "Sign in",
    "If the button does not work",
]


# --- A reader at a browser ----------------------------------------------------------


def ask_for_link(client, email: str, *, query: str = "", headers: dict | None = None):
    """Fill the sign-up-or-sign-in form on the public site and submit it."""
    page = client.get(f"{SITE}/login").get_data(as_text=True)
    token = CSRF_FIELD.search(page).group(1)
    return client.post(
        f"{SITE}/login{query}",
        data={"email": email, "next": "/", "csrf_token": token},
        headers=headers or {},
    )


def queue_mails_for(client, addresses: list[str]) -> None:
    """Ask for a link for each address, as that many readers would."""
    for address in addresses:
        assert ask_for_link(client, address).status_code == 303


def is_signed_in(client) -> bool:
    """Whether the account page opens for this browser."""
    return client.get(f"{SITE}/account").status_code == 200


# --- Reading the database and the mail ------------------------------------------------


def outbox_rows() -> list[OutboxMessage]:
    """Every outbox row as the database holds it now, oldest first."""
    db.session.commit()  # end our transaction: see what other connections committed
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def all_sent() -> bool:
    """Whether every queued mail is marked sent."""
    return all(row.sent_at is not None for row in outbox_rows())


def wait_until(condition, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail if it still does not after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{condition.__name__} never became true"
        time.sleep(0.05)


def make_all_due() -> None:
    """Move every scheduled retry into the past, as if the backoff had elapsed."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None))
        .values(next_attempt_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


def parse(envelope) -> EmailMessage:
    """An envelope's bytes as a mail client reads them."""
    content = envelope.original_content or envelope.content
    if isinstance(content, str):
        content = content.encode("utf-8")
    return BytesParser(policy=policy.default).parsebytes(content)


def utf8(value: str) -> str:
    """A header value as a UTF-8 mail client reads it (the parser escapes 8-bit bytes)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8")


def text_part(message: EmailMessage) -> str:
    """The plain-text part, decoded."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None and part.get_content_type() == "text/plain"
    return part.get_content().replace("\r\n", "\n")  # lines as a mail client shows them


def html_part(message: EmailMessage) -> str:
    """The HTML part, decoded."""
    part = message.get_body(preferencelist=("html",))
    assert part is not None and part.get_content_type() == "text/html"
    return part.get_content().replace("\r\n", "\n")


def link_in(text_body: str) -> str:
    """The sign-in link: the one line of the text part that is only a URL."""
    links = LINK_LINE.findall(text_body)
    assert len(links) == 1, links
    return links[0]


def code_in(text_body: str) -> str:
    """The first standalone 6-digit number outside the link."""
    match = SIX_DIGITS.search(text_body.replace(link_in(text_body), ""))
    assert match, text_body
    return match.group(1)


def deliver_one(smtp_server) -> tuple[object, EmailMessage]:
    """Run the outbox once and return the one envelope that arrived, parsed."""
    report = delivery.deliver_due()
    assert report.sent == 1
    envelopes = smtp_server.recorder.wait_for(1)
    assert len(envelopes) == 1
    return envelopes[0], parse(envelopes[0])


# --- Workers that always stop ---------------------------------------------------------


@pytest.fixture
def start_worker(app):
    """Start outbox workers in threads; each is stopped and joined after the test."""
    started = []

    def start(*, in_process: bool):
        worker = delivery.Worker(app, in_process=in_process)
        thread = worker.start_thread()
        started.append((worker, thread))
        return worker, thread

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(10)
        if thread.is_alive() and db.engine.dialect.name == "postgresql":
            # A LISTENing worker may only notice stop() once woken: wake it.
            db.session.execute(text(f"NOTIFY {outbox.NOTIFY_CHANNEL}"))
            db.session.commit()
            thread.join(40)
        assert not thread.is_alive(), "the outbox worker did not stop"


# --- SMTP servers that refuse -----------------------------------------------------------


class PickyMailbox:
    """An aiosmtpd handler that answers some commands with a refusal and keeps the rest.

    ``refuse_sender`` answers every ``MAIL FROM``; ``refuse_at[stage][address]`` answers
    ``RCPT TO`` or ``DATA`` for one recipient. Anything else is accepted and recorded.
    """

    def __init__(self):
        self.refuse_sender: str | None = None
        self.refuse_at: dict[str, dict[str, str]] = {"RCPT": {}, "DATA": {}}
        self.messages: list = []
        self.rcpt_calls: list[str] = []
        self.arrived = threading.Condition()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        """Refuse the sender if told to; otherwise start the envelope."""
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        """Refuse the recipients we were told to, accept any other."""
        self.rcpt_calls.append(address)
        if address in self.refuse_at["RCPT"]:
            return self.refuse_at["RCPT"][address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        """Refuse the content for the recipients we were told to; keep any other."""
        for address in envelope.rcpt_tos:
            if address in self.refuse_at["DATA"]:
                return self.refuse_at["DATA"][address]
        with self.arrived:
            self.messages.append(envelope)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        """Block until ``count`` messages have arrived."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout), (
                f"{len(self.messages)} of {count} messages arrived"
            )
        return self.messages


@pytest.fixture
def picky_smtp_server(smtp_server):
    """The test's SMTP server, restarted on the same port with a :class:`PickyMailbox`."""
    smtp_server.stop()
    smtp_server.recorder = PickyMailbox()
    smtp_server.start()
    return smtp_server


# --- Queued with the attempt, sent later ----------------------------------------------


def test_sign_in_request_queues_one_mail_and_talks_to_no_smtp_server(reader, client, smtp_server):
    response = ask_for_link(client, "reader@example.com")

    assert response.status_code == 303
    assert smtp_server.messages == []
    rows = outbox_rows()
    assert len(rows) == 1
    assert rows[0].to_address == "reader@example.com"
    assert rows[0].sent_at is None and rows[0].attempts == 0
    attempts = db.session.scalars(select(LoginAttempt)).all()
    assert [attempt.email for attempt in attempts] == ["reader@example.com"]
    # The queued mail carries the secrets of exactly that attempt.
    mail = reader.last_mail()
    assert signin.attempt_id_of(mail.token) == attempts[0].id


def test_a_sign_in_that_is_rolled_back_queues_no_mail_and_wakes_no_worker(app):
    listener = None
    if db.engine.dialect.name == "postgresql":
        import psycopg

        dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        listener = psycopg.connect(dsn, autocommit=True)
        listener.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
    worker = delivery.Worker(app, in_process=True)  # registers its wake-up; not started
    try:
        queue_sign_in_mail(signin.issue("reader@example.com"))
        db.session.rollback()

        assert outbox_rows() == []
        assert db.session.scalars(select(LoginAttempt)).all() == []
        assert not worker.wakeup.is_set()
        if listener is not None:
            assert list(listener.notifies(timeout=0.5, stop_after=1)) == []

        queue_sign_in_mail(signin.issue("reader@example.com"))
        db.session.commit()

        assert len(outbox_rows()) == 1
        assert worker.wakeup.is_set()
        if listener is not None:
            notices = list(listener.notifies(timeout=5, stop_after=1))
            assert [notice.channel for notice in notices] == [outbox.NOTIFY_CHANNEL]
    finally:
        if listener is not None:
            listener.close()


def test_delivered_mail_comes_from_the_site_name_with_date_and_message_id(client, smtp_server, app):
    before = datetime.now(UTC).replace(microsecond=0)
    ask_for_link(client, "reader@example.com")
    envelope, message = deliver_one(smtp_server)
    after = datetime.now(UTC)

    sender = app.config["MAIL_DEFAULT_SENDER"]
    assert sender == "no-reply@news.test"
    (author,) = message["From"].addresses
    assert author.display_name == app.config["SITE_NAME"] == "Le Quotidien"
    assert author.addr_spec == sender
    assert envelope.mail_from == sender
    assert [address.addr_spec for address in message["To"].addresses] == ["reader@example.com"]
    assert envelope.rcpt_tos == ["reader@example.com"]
    assert message["Date"] is not None
    assert before <= message["Date"].datetime <= after
    (row,) = outbox_rows()
    assert message["Message-ID"] == row.message_id
    assert re.fullmatch(r"<[^<>@\s]+@news\.test>", message["Message-ID"])


def test_delivered_mail_has_the_link_alone_on_its_line_and_the_code_after_it(client, smtp_server):
    ask_for_link(client, "reader@example.com")
    _, message = deliver_one(smtp_server)

    body = text_part(message)
    link = link_in(body)
    assert link.startswith(f"{SITE}/login/verify?token=")
    assert list(parse_qs(urlsplit(link).query)) == ["token"]
    assert f"\n{link}\n" in body
    code = code_in(body)
    assert body.index(code) > body.index(link)
    html = html_part(message)
    assert f'href="{link}"' in html
    assert code in html
    assert '<html lang="fr">' in html


def test_link_in_the_delivered_mail_signs_the_reader_in(client, smtp_server):
    ask_for_link(client, "reader@example.com")
    _, message = deliver_one(smtp_server)
    assert not is_signed_in(client)

    response = client.get(link_in(text_part(message)))

    assert response.status_code == 303
    assert is_signed_in(client)
    assert "reader@example.com" in client.get(f"{SITE}/account").get_data(as_text=True)


def test_code_in_the_delivered_mail_signs_the_reader_in(client, smtp_server):
    ask_for_link(client, "reader@example.com")
    _, message = deliver_one(smtp_server)
    page = client.get(f"{SITE}/login/sent").get_data(as_text=True)

    response = client.post(
        f"{SITE}/login/code",
        data={
            "code": code_in(text_part(message)),
            "csrf_token": CSRF_FIELD.search(page).group(1),
        },
    )

    assert response.status_code == 303
    assert is_signed_in(client)


def test_delivered_sign_in_mail_leaves_no_usable_link_in_the_database(client, smtp_server):
    ask_for_link(client, "reader@example.com")
    _, message = deliver_one(smtp_server)
    link, code = link_in(text_part(message)), code_in(text_part(message))
    (row,) = outbox_rows()
    assert row.sent_at is not None
    for body in (row.text_body, row.html_body):
        assert link.split("token=")[1] not in body and code not in body
    # The record of the mail stays: who, what, when.
    assert (row.to_address, row.message_id) == ("reader@example.com", message["Message-ID"])


# --- The reader's language ------------------------------------------------------------


def english_mail(client, smtp_server, how: str) -> EmailMessage:
    """Ask for a link in English the way ``how`` says, and return the delivered mail."""
    if how == "header":
        ask_for_link(client, "reader@example.com", headers={"Accept-Language": "en"})
    elif how == "query":
        ask_for_link(client, "reader@example.com", query="?lang=en")
    else:
        client.set_cookie("lang", "en", domain="news.test")
        ask_for_link(client, "reader@example.com")
    return deliver_one(smtp_server)[1]


@pytest.mark.parametrize("how", ["header", "query", "cookie"])
def test_reader_who_reads_in_english_gets_the_mail_in_english(client, smtp_server, how):
    message = english_mail(client, smtp_server, how)

    assert message["Subject"] == "Your sign-in link for Le Quotidien"
    html = html_part(message)
    assert '<html lang="en">' in html
    body = text_part(message)
    assert "To sign in to Le Quotidien, open this link:" in body
    assert link_in(body).startswith(f"{SITE}/login/verify?token=")
    assert f'href="{link_in(body)}"' in html
    assert code_in(body) in html


def test_mail_is_in_french_by_default(client, smtp_server):
    ask_for_link(client, "reader@example.com", headers={"Accept-Language": "de, it;q=0.5"})
    _, message = deliver_one(smtp_server)

    assert '<html lang="fr">' in html_part(message)
    assert "Le Quotidien" in message["Subject"]
    parts = {"subject": message["Subject"], "text": text_part(message), "html": html_part(message)}
    untranslated = [
        (where, english)
        for where, content in parts.items()
        for english in ENGLISH_STRINGS
        if english in content
    ]
    assert untranslated == [], f"English left in the French mail: {untranslated}"


def test_french_and_english_mails_differ(client, smtp_server, app):
    ask_for_link(client, "reader@example.com")
    ask_for_link(app.test_client(), "reader@example.com", headers={"Accept-Language": "en"})
    assert delivery.deliver_due().sent == 2
    french, english = [parse(envelope) for envelope in smtp_server.recorder.wait_for(2)]

    assert french["Subject"] != english["Subject"]
    assert english["Subject"] == "Your sign-in link for Le Quotidien"
    strip = re.compile(r"https?://\S+|\b\d{6}\b")
    assert strip.sub("", text_part(french)) != strip.sub("", text_part(english))


# --- SMTP down, then up -----------------------------------------------------------------


def test_mail_asked_for_while_smtp_is_down_goes_out_once_it_is_back(client, smtp_server):
    smtp_server.stop()
    assert ask_for_link(client, "reader@example.com").status_code == 303

    report = delivery.deliver_due()

    assert (report.sent, report.retried, report.failed) == (0, 1, 0)
    (row,) = outbox_rows()
    assert row.sent_at is None and row.failed_at is None
    assert row.attempts == 1
    assert row.last_error
    assert row.next_attempt_at > utcnow()
    assert delivery.deliver_due().sent == 0  # not due yet: no hammering of a dead server

    smtp_server.start()
    assert delivery.deliver_due().sent == 0  # still waiting for its backoff
    make_all_due()
    assert delivery.deliver_due().sent == 1

    assert len(smtp_server.recorder.wait_for(1)) == 1
    (row,) = outbox_rows()
    assert row.sent_at is not None and row.attempts == 2
    assert delivery.deliver_due().sent == 0
    make_all_due()
    assert delivery.deliver_due().sent == 0
    assert len(smtp_server.messages) == 1


def test_each_failed_try_waits_longer_before_the_next(client, smtp_server, app):
    assert delivery.backoff(1) < delivery.backoff(2) < delivery.backoff(3) < delivery.backoff(4)
    assert delivery.backoff(1) >= timedelta(seconds=1)
    assert delivery.backoff(1000) == timedelta(seconds=app.config["OUTBOX_BACKOFF_MAX"])

    smtp_server.stop()
    ask_for_link(client, "reader@example.com")
    waits = []
    for tries in (1, 2, 3):
        before = utcnow()
        assert delivery.deliver_due().retried == 1
        after = utcnow()
        (row,) = outbox_rows()
        assert row.attempts == tries
        assert (
            before + delivery.backoff(tries)
            <= row.next_attempt_at
            <= after + delivery.backoff(tries)
        )
        waits.append(row.next_attempt_at - after)
        make_all_due()
    assert waits[0] < waits[1] < waits[2]
    assert smtp_server.messages == []


@pytest.mark.settings(OUTBOX_MAX_ATTEMPTS=3)
def test_mail_that_never_gets_through_is_given_up_after_the_last_try(client, smtp_server):
    smtp_server.stop()
    ask_for_link(client, "reader@example.com")

    outcomes = []
    for _ in range(5):
        report = delivery.deliver_due()
        outcomes.append((report.retried, report.failed))
        make_all_due()

    assert outcomes == [(1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
    (row,) = outbox_rows()
    assert row.failed_at is not None and row.attempts == 3 and row.last_error


# --- Many messages, one run -----------------------------------------------------------


def test_several_queued_mails_go_out_on_one_run(client, smtp_server):
    addresses = [f"reader{number}@example.com" for number in range(6)]
    queue_mails_for(client, addresses)

    report = delivery.deliver_due()

    assert (report.sent, report.retried, report.failed) == (6, 0, 0)
    envelopes = smtp_server.recorder.wait_for(6)
    assert sorted(envelope.rcpt_tos[0] for envelope in envelopes) == sorted(addresses)
    assert all(row.sent_at is not None for row in outbox_rows())
    assert delivery.deliver_due().sent == 0


@pytest.mark.settings(OUTBOX_BATCH_SIZE=2)
def test_worker_once_drains_every_due_mail_and_says_what_it_did(client, smtp_server, app):
    queue_mails_for(client, [f"reader{number}@example.com" for number in range(5)])
    queue_mails_for(client, ["later@example.com"])
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.to_address == "later@example.com")
        .values(next_attempt_at=utcnow() + timedelta(hours=1))
    )
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "sent 5, retry later 0, failed 0" in result.output
    assert len(smtp_server.recorder.wait_for(5)) == 5
    waiting = [row.to_address for row in outbox_rows() if row.sent_at is None]
    assert waiting == ["later@example.com"]
    again = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert "sent 0, retry later 0, failed 0" in again.output
    assert len(smtp_server.messages) == 5


# --- Refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "550 no such user"),
        ("RCPT", "550 5.1.1 no such user"),
        ("DATA", "554 5.7.1 message refused"),
    ],
)
def test_mail_refused_for_good_is_marked_failed_and_the_others_still_go_out(
    client, picky_smtp_server, stage, reply
):
    mailbox = picky_smtp_server.recorder
    mailbox.refuse_at[stage]["nobody@example.com"] = reply
    queue_mails_for(client, ["nobody@example.com", "reader@example.com"])

    report = delivery.deliver_due()

    assert (report.sent, report.retried, report.failed) == (1, 0, 1)
    refused, accepted = outbox_rows()
    assert refused.failed_at is not None and refused.sent_at is None
    assert refused.attempts == 1
    assert reply.split()[0] in refused.last_error
    assert accepted.sent_at is not None and accepted.attempts == 1
    assert [envelope.rcpt_tos for envelope in mailbox.wait_for(1)] == [["reader@example.com"]]

    make_all_due()
    report = delivery.deliver_due()
    assert (report.sent, report.retried, report.failed) == (0, 0, 0)
    assert mailbox.rcpt_calls.count("nobody@example.com") == 1
    assert outbox_rows()[0].attempts == 1


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "451 4.7.1 greylisted, please try again later"),
        ("MAIL", "451 4.3.0 too busy, try again later"),
    ],
)
def test_mail_refused_for_now_is_tried_again_later(client, picky_smtp_server, stage, reply):
    """A 4xx reply is temporary (RFC 5321): the mail must wait, not be lost
    (docs/contract.md §4)."""
    mailbox = picky_smtp_server.recorder
    if stage == "MAIL":
        mailbox.refuse_sender = reply
    else:
        mailbox.refuse_at["RCPT"]["reader@example.com"] = reply
    queue_mails_for(client, ["reader@example.com"])

    report = delivery.deliver_due()

    (row,) = outbox_rows()
    assert row.failed_at is None, f"a temporary {reply[:3]} was taken as final: {row.last_error}"
    assert (report.sent, report.retried, report.failed) == (0, 1, 0)
    assert row.attempts == 1 and row.last_error
    assert row.next_attempt_at > utcnow()

    mailbox.refuse_sender = None
    mailbox.refuse_at["RCPT"].clear()
    make_all_due()
    assert delivery.deliver_due().sent == 1
    assert [envelope.rcpt_tos for envelope in mailbox.wait_for(1)] == [["reader@example.com"]]


# --- Workers ----------------------------------------------------------------------------


def test_in_process_worker_sends_the_mail_as_soon_as_the_request_commits(
    client, smtp_server, start_worker
):
    worker, thread = start_worker(in_process=True)

    ask_for_link(client, "reader@example.com")

    (envelope,) = smtp_server.recorder.wait_for(1, timeout=10)
    assert envelope.rcpt_tos == ["reader@example.com"]
    ask_for_link(client, "second@example.com")
    assert smtp_server.recorder.wait_for(2, timeout=10)[1].rcpt_tos == ["second@example.com"]
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert all(row.sent_at is not None for row in outbox_rows())


def test_separate_worker_delivers_mail_queued_after_it_started(client, smtp_server, start_worker):
    """On PostgreSQL it LISTENs for NOTIFY, on SQLite it polls the outbox table."""
    worker, thread = start_worker(in_process=False)

    ask_for_link(client, "first@example.com")
    smtp_server.recorder.wait_for(1, timeout=10)
    # The worker has made its first pass and now waits; this mail must wake it.
    ask_for_link(client, "second@example.com")
    envelopes = smtp_server.recorder.wait_for(2, timeout=10)

    assert [envelope.rcpt_tos for envelope in envelopes] == [
        ["first@example.com"],
        ["second@example.com"],
    ]
    if db.engine.dialect.name == "postgresql":
        listening = db.session.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE :listen"),
            {"listen": f"LISTEN {outbox.NOTIFY_CHANNEL}%"},
        )
        db.session.commit()
        assert listening == 1
    wait_until(all_sent)  # SMTP accepted; the worker marks them sent right after


def test_a_separate_worker_is_woken_by_queued_mail_not_by_its_poll(
    app, client, smtp_server, start_worker
):
    """NOTIFY on PostgreSQL, the doorbell's datagram on SQLite: with a poll of a minute,
    only a wake-up can bring the second mail within the wait below."""
    app.config["OUTBOX_POLL_INTERVAL"] = 60.0
    start_worker(in_process=False)
    ask_for_link(client, "first@example.com")
    smtp_server.recorder.wait_for(1, timeout=10)
    wait_until(all_sent)  # its pass is over: it is waiting now

    ask_for_link(client, "second@example.com")

    envelopes = smtp_server.recorder.wait_for(2, timeout=10)
    assert envelopes[1].rcpt_tos == ["second@example.com"]


def test_stopping_a_separate_worker_that_polls_rarely_ends_it_at_once(
    app, client, smtp_server, start_worker
):
    app.config["OUTBOX_POLL_INTERVAL"] = 60.0
    worker, thread = start_worker(in_process=False)
    ask_for_link(client, "reader@example.com")
    smtp_server.recorder.wait_for(1, timeout=10)
    wait_until(all_sent)

    worker.stop()
    thread.join(10)

    assert not thread.is_alive(), "stop() did not wake the waiting worker"


def test_stopping_a_separate_worker_ends_it(client, smtp_server, start_worker):
    worker, thread = start_worker(in_process=False)
    ask_for_link(client, "reader@example.com")
    smtp_server.recorder.wait_for(1, timeout=10)
    # Let it finish that pass and go back to waiting (LISTEN on PostgreSQL, a poll on
    # SQLite). Were it slower than this, stop() would catch it mid-pass and the test
    # would pass anyway: this pause can hide the fault, never invent one.
    time.sleep(1)

    worker.stop()
    thread.join(10)

    assert not thread.is_alive(), "stop() did not end the waiting worker"


def test_two_workers_at_once_never_send_a_mail_twice(client, smtp_server, app):
    addresses = [f"reader{number}@example.com" for number in range(24)]
    queue_mails_for(client, addresses)
    start = threading.Barrier(3)
    reports, errors = [], []

    def run_worker():
        with app.app_context():
            try:
                start.wait()
                reports.append(delivery.deliver_due(limit=3))
            except Exception as error:  # reported below, not lost in the thread
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run_worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert sum(report.sent for report in reports) == 24
    envelopes = smtp_server.recorder.wait_for(24)
    assert len(envelopes) == 24
    assert sorted(envelope.rcpt_tos[0] for envelope in envelopes) == sorted(addresses)
    message_ids = [parse(envelope)["Message-ID"] for envelope in envelopes]
    assert len(set(message_ids)) == 24
    assert all(row.attempts == 1 and row.sent_at is not None for row in outbox_rows())


# --- Addresses beyond ASCII ---------------------------------------------------------------


def test_mail_to_an_international_domain_goes_to_its_ascii_form(client, smtp_server):
    ask_for_link(client, "noel@bücher.example")
    envelope, message = deliver_one(smtp_server)

    assert envelope.rcpt_tos == ["noel@xn--bcher-kva.example"]
    assert [address.addr_spec for address in message["To"].addresses] == [
        "noel@xn--bcher-kva.example"
    ]
    assert link_in(text_part(message)).startswith(f"{SITE}/login/verify?token=")


def test_mail_to_an_accented_address_goes_out_with_smtputf8(client, smtp_server):
    ask_for_link(client, "élodie@exemple.fr")
    envelope, message = deliver_one(smtp_server)

    assert "SMTPUTF8" in [option.upper() for option in envelope.mail_options]
    assert envelope.rcpt_tos == ["élodie@exemple.fr"]
    # An SMTPUTF8 header is raw UTF-8 (RFC 6532); the parser keeps its bytes escaped.
    to = [utf8(address.addr_spec) for address in message["To"].addresses]
    assert to == ["élodie@exemple.fr"]
    assert link_in(text_part(message)).startswith(f"{SITE}/login/verify?token=")


def test_an_accented_address_never_holds_back_other_readers_mail(client, smtp_server):
    queue_mails_for(client, ["élodie@exemple.fr", "reader@example.com"])

    delivery.deliver_due()  # whatever becomes of the first mail, this must not crash

    arrived = [envelope.rcpt_tos for envelope in smtp_server.recorder.wait_for(1)]
    assert ["reader@example.com"] in arrived
    rows = {row.to_address: row for row in outbox_rows()}
    assert rows["reader@example.com"].sent_at is not None
    assert rows["élodie@exemple.fr"].claimed_until is None


# --- The dev mailbox ------------------------------------------------------------------------


def test_without_mail_server_mail_lands_in_the_dev_mailbox_and_the_link_is_logged(
    client, app, caplog
):
    assert not app.config.get("MAIL_SERVER")
    ask_for_link(client, "reader@example.com")

    with caplog.at_level("INFO"):
        assert delivery.deliver_due().sent == 1

    files = sorted((Path(app.instance_path) / "mailbox").glob("*.eml"))
    assert len(files) == 1
    message = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert [address.addr_spec for address in message["To"].addresses] == ["reader@example.com"]
    link = link_in(text_part(message))
    assert link in caplog.text
    assert outbox_rows()[0].sent_at is not None


@pytest.mark.settings(DEV_MODE=True)
def test_dev_mailbox_page_lists_the_mail_and_shows_its_link(client, app):
    ask_for_link(client, "reader@example.com")
    (row,) = outbox_rows()
    link = link_in(row.text_body)  # read before delivery, which drops the body
    delivery.deliver_due()

    inbox = client.get(f"{SITE}/dev/mailbox/")
    assert inbox.status_code == 200
    listing = inbox.get_data(as_text=True)
    assert "reader@example.com" in listing
    (page_path,) = re.findall(r'href="(/dev/mailbox/[^"/]+\.eml)"', listing)
    page = client.get(f"{SITE}{page_path}")
    assert page.status_code == 200
    assert link in page.get_data(as_text=True)
    html = client.get(f"{SITE}{page_path}/html")
    assert html.status_code == 200
    assert "sandbox" in html.headers["Content-Security-Policy"].split()
    assert f'href="{link}"' in html.get_data(as_text=True)
    assert client.get(f"{SITE}/dev/mailbox").status_code in (200, 301, 308)


@pytest.mark.settings(DEV_MODE=True)
def test_dev_mailbox_shows_a_newsletter_copy_with_the_reader_s_own_links(client, app, runner):
    """A copy's row holds no body (the edition does, with markers for the reader's
    links): the dev mailbox shows it as the reader gets it, links in place."""
    publish()
    new_reader("lectrice@example.com")
    assert send(runner).exit_code == 0
    (row,) = outbox_rows()
    own = row.personal
    delivery.deliver_due()

    listing = client.get(f"{SITE}/dev/mailbox/").get_data(as_text=True)
    assert "lectrice@example.com" in listing
    (page_path,) = re.findall(r'href="(/dev/mailbox/[^"/]+\.eml)"', listing)
    page = unescape(client.get(f"{SITE}{page_path}").get_data(as_text=True))
    html = unescape(client.get(f"{SITE}{page_path}/html").get_data(as_text=True))
    for link in (own["preferences"], own["unsubscribe"]):
        assert link.startswith(f"{SITE}/newsletter/")
        assert link in page
        assert f'href="{link}"' in html
    for marker in LINK_MARKERS.values():
        assert marker not in page and marker not in html


def test_dev_mailbox_logs_the_links_of_a_newsletter_copy(app, runner, caplog, capsys):
    """The console is where a developer trying the demo looks first: a copy's own links
    show there as a sign-in link does, though its row holds no body."""
    publish()
    new_reader("lectrice@example.com")
    assert send(runner).exit_code == 0
    (row,) = outbox_rows()
    own = row.personal

    with caplog.at_level("INFO"):
        assert delivery.deliver_due().sent == 1

    printed = capsys.readouterr().out
    for link in (own["preferences"], own["unsubscribe"]):
        assert link in caplog.text
        assert link in printed


def test_dev_mailbox_page_does_not_exist_outside_dev_mode(client, app):
    ask_for_link(client, "reader@example.com")
    delivery.deliver_due()

    assert client.get(f"{SITE}/dev/mailbox/").status_code == 404
    assert client.get(f"{SITE}/dev/mailbox").status_code == 404


# --- Header injection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "reader@example.com\r\nBcc: victim@example.org",
        "reader@example.com\nBcc: victim@example.org",
        "reader@example.com\rBcc: victim@example.org",
        "reader@example.com\r\n\r\nInjected body",
        "reader@example.com%0D%0ABcc:victim@example.org",
        "reader@example.com, victim@example.org",
        "Reader <reader@example.com>",
        "reader@example.com>\r\nSubject: free money",
        "victim@example.org\x00reader@example.com",
    ],
)
def test_header_injection_in_the_address_is_refused_and_sends_nothing(client, smtp_server, typed):
    response = ask_for_link(client, typed)

    # A NUL is refused by the input guard (400) before the form's own check (422).
    assert response.status_code == (400 if "\x00" in typed else 422)
    assert outbox_rows() == []
    assert delivery.deliver_due().sent == 0
    assert smtp_server.messages == []


def test_idle_worker_waits_for_a_claim_to_run_out_instead_of_spinning(client):
    ask_for_link(client, "reader@example.com")
    assert delivery.claim_due(10)  # another worker holds it now
    wait = delivery.seconds_until_next_due()
    assert wait is not None and wait > client.application.config["OUTBOX_CLAIM_SECONDS"] - 10
