"""How the worker delivers: claims, newsletter copies spliced from their edition, marks.

Real parts only: the test's SMTP server (aiosmtpd on 127.0.0.1), SQLite and PostgreSQL.
The edition's helpers (articles of 10 March 2025, readers, parsing) live in
``newsletter/test_newsletter.py``.
"""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, func, insert, select, text, update
from support.newsletter import SITE, new_reader, parse, publish, send

from auth_service.extensions import db
from auth_service.mail import copies, rendering, worker
from auth_service.models import Edition, OutboxMessage, utcnow

READERS = {"lea@example.com": "fr", "sam@example.com": "en", "o'neil+daily@example.org": "fr"}


def queued_rows() -> list:
    """The outbox as the worker reads it: plain rows, oldest first."""
    db.session.commit()
    return db.session.execute(select(OutboxMessage.__table__).order_by(OutboxMessage.id)).all()


@pytest.fixture
def queued(runner):
    """The edition of DAY queued for a French, an English and an apostrophe+tag reader."""
    publish()
    for address, locale in READERS.items():
        new_reader(address, locale=locale)
    assert send(runner).exit_code == 0
    rows = queued_rows()
    assert len(rows) == len(READERS)
    return rows


def without_boundary(message) -> dict:
    """Every header of a message but the MIME boundary, which is random in each build."""
    headers = {name: str(value) for name, value in message.items()}
    headers["Content-Type"] = re.sub(r'boundary="[^"]+"', "", headers["Content-Type"])
    return headers


def parts_of(message) -> list[tuple]:
    """Each leaf part's type, transfer encoding and decoded text."""
    return [
        (part.get_content_type(), part["Content-Transfer-Encoding"], part.get_content())
        for part in message.walk()
        if not part.is_multipart()
    ]


def test_a_spliced_copy_reads_exactly_as_the_message_built_in_full(app, queued):
    edition_copies = copies.EditionCopies()
    for row in queued:
        spliced = edition_copies.bytes_of(row)
        assert spliced is not None, row.to_address
        full = rendering.build_message(row).as_bytes()

        assert without_boundary(parse_bytes(spliced)) == without_boundary(parse_bytes(full))
        assert parts_of(parse_bytes(spliced)) == parts_of(parse_bytes(full))
        assert b"@@" not in spliced
        assert re.search(rb"[^\r]\n", spliced) is None, "a bare LF: SMTP wants CRLF"
        assert max(len(line) for line in spliced.split(b"\r\n")) <= 998
        assert row.personal["unsubscribe"].encode() in spliced


def changed(row, **values) -> SimpleNamespace:
    """An outbox row with some of its values changed."""
    return SimpleNamespace(**{**row._asdict(), **values})


def parse_bytes(data: bytes):
    """Bytes as a mail client reads them."""

    class Envelope:
        original_content = data

    return parse(Envelope)


def test_an_address_beyond_ascii_is_built_in_full(app, queued):
    row = changed(queued[0], to_address="élodie@exemple.fr")
    assert copies.EditionCopies().bytes_of(row) is None


def test_a_reader_link_too_long_for_its_line_is_built_in_full(app, queued):
    row = queued[0]
    personal = {**row.personal, "preferences": f"{SITE}/newsletter/preferences?token=" + "a" * 990}
    assert copies.EditionCopies().bytes_of(changed(row, personal=personal)) is None


def test_a_header_value_that_is_not_one_ascii_line_is_built_in_full(app, queued):
    row = queued[0]
    for odd in ("<https://news.test/u>\r\nBcc: x@example.org", "<https://news.test/ü>"):
        headers = {**row.headers, "List-Unsubscribe": odd}
        assert copies.EditionCopies().bytes_of(changed(row, headers=headers)) is None


def test_an_edition_the_library_must_encode_goes_out_built_in_full(app, queued, smtp_server):
    # One line longer than SMTP allows: the HTML part can only go quoted-printable, where
    # a reader's link cannot simply be put in place of its marker.
    long_line = "<p>" + "Lorem ipsum dolor sit amet. " * 60 + "</p>"
    for edition in db.session.scalars(select(Edition)):
        edition.html_body = edition.html_body.replace("</body>", long_line + "</body>")
    db.session.commit()
    assert all(copies.EditionCopies().bytes_of(row) is None for row in queued)

    assert worker.deliver_due().sent == len(READERS)

    arrived = {envelope.rcpt_tos[0]: parse(envelope) for envelope in smtp_server.messages}
    assert sorted(arrived) == sorted(READERS)
    for row in queued:
        html = [
            part
            for part in arrived[row.to_address].walk()
            if part.get_content_type() == "text/html"
        ][0]
        assert html["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
        assert row.personal["unsubscribe"] in html.get_content()
        assert "@@" not in html.get_content()


# --- Claims ---------------------------------------------------------------------------------


def waiting_messages(count: int) -> None:
    """``count`` sign-in-sized messages, all due now."""
    now = utcnow()
    db.session.execute(
        insert(OutboxMessage),
        [
            {
                "message_id": f"<{number}@news.test>",
                "to_address": f"r{number}@example.com",
                "subject": "s",
                "text_body": "t",
                "html_body": "h",
                "headers": {},
                "kind": "newsletter",
                "created_at": now,
                "next_attempt_at": now,
                "attempts": 0,
            }
            for number in range(count)
        ],
    )
    db.session.commit()


def test_a_claim_takes_no_more_than_asked_and_never_a_message_twice(app):
    waiting_messages(250)

    claims = [worker.claim_due(100) for _ in range(4)]

    assert [len(claim) for claim in claims] == [100, 100, 50, 0]
    claimed = [message_id for claim in claims for message_id in claim]
    assert len(set(claimed)) == 250


def test_the_oldest_due_message_is_claimed_first(app):
    waiting_messages(5)
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.message_id == "<3@news.test>")
        .values(next_attempt_at=utcnow().replace(year=2020))
    )
    db.session.commit()
    oldest = db.session.scalar(
        select(OutboxMessage.id).where(OutboxMessage.message_id == "<3@news.test>")
    )

    assert worker.claim_due(1) == [oldest]


# --- Marks --------------------------------------------------------------------------------


class MarksWatcher:
    """An aiosmtpd handler that, as each message arrives, counts those marked sent.

    It reads the database on a connection of its own, as another process would.
    """

    def __init__(self, url: str):
        self.engine = create_engine(url)
        self.messages: list = []
        self.marked_at_arrival: list[int] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Note how many messages were marked sent when this one came, then accept it."""
        with self.engine.connect() as connection:
            marked = connection.scalar(
                select(func.count())
                .select_from(OutboxMessage.__table__)
                .where(OutboxMessage.sent_at.isnot(None))
            )
        self.marked_at_arrival.append(marked)
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def test_every_message_is_marked_sent_before_the_next_one_is_handed_over(app, queued, smtp_server):
    smtp_server.stop()
    smtp_server.recorder = watcher = MarksWatcher(app.config["SQLALCHEMY_DATABASE_URI"])
    smtp_server.start()
    try:
        assert worker.deliver_due().sent == len(READERS)
    finally:
        watcher.engine.dispose()

    # When message n arrives, the n before it are marked: a worker killed at any moment
    # leaves at most one accepted message unmarked, to be sent again.
    assert watcher.marked_at_arrival == list(range(len(READERS)))
    assert all(row.sent_at is not None and row.attempts == 1 for row in queued_rows())


def settings_of(connection) -> tuple:
    """What the marks' connection changes for itself: commit mode and durability."""
    durability = (
        "SHOW synchronous_commit"
        if connection.dialect.name == "postgresql"
        else "PRAGMA synchronous"
    )
    return connection.get_isolation_level(), connection.exec_driver_sql(durability).scalar()


def test_the_pool_gets_its_connections_back_as_they_were(app, queued, smtp_server):
    with db.engine.connect() as connection:
        normal = settings_of(connection)

    assert worker.deliver_due().sent == len(READERS)

    # The marks' connection commits each statement by itself and, on PostgreSQL, does
    # not wait for the disk; no other connection may inherit that. Every connection
    # resting in the pool is taken out and asked.
    assert db.engine.pool.checkedin() >= 1
    checked_out = [db.engine.connect() for _ in range(db.engine.pool.checkedin())]
    try:
        found = {settings_of(connection) for connection in checked_out}
    finally:
        for connection in checked_out:
            connection.close()
    assert found == {normal}


def refuse_marking(message_id: int) -> None:
    """A trigger that makes the database refuse to mark this one message sent."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text(
                "CREATE FUNCTION refuse_mark() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$"
            )
        )
        db.session.execute(
            text(
                "CREATE TRIGGER refuse_mark BEFORE UPDATE OF sent_at ON outbox_messages "
                f"FOR EACH ROW WHEN (NEW.id = {message_id} AND NEW.sent_at IS NOT NULL) "
                "EXECUTE FUNCTION refuse_mark()"
            )
        )
    else:
        db.session.execute(
            text(
                "CREATE TRIGGER refuse_mark BEFORE UPDATE OF sent_at ON outbox_messages "
                f"WHEN NEW.id = {message_id} AND NEW.sent_at IS NOT NULL "
                "BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
            )
        )
    db.session.commit()


def drop_refusal() -> None:
    """Remove the trigger of :func:`refuse_marking`."""
    db.session.rollback()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("DROP TRIGGER refuse_mark ON outbox_messages"))
        db.session.execute(text("DROP FUNCTION refuse_mark()"))
    else:
        db.session.execute(text("DROP TRIGGER refuse_mark"))
    db.session.commit()


def test_a_mark_the_database_refuses_stops_nothing_else_and_is_logged(
    app, queued, smtp_server, caplog
):
    first, second, third = queued
    refuse_marking(first.id)
    try:
        with caplog.at_level("ERROR"):
            report = worker.deliver_due()
    finally:
        drop_refusal()

    # The first went out but could not be marked: the pass stopped there, as when the
    # connection breaks, and the messages in hand wait for a retry.
    assert (report.sent, report.retried, report.failed) == (1, 2, 0)
    assert [envelope.rcpt_tos[0] for envelope in smtp_server.messages] == [first.to_address]
    assert "may go twice" in caplog.text
    rows = {row.id: row for row in queued_rows()}
    assert rows[first.id].sent_at is None and rows[first.id].claimed_until is not None
    assert all(
        rows[message.id].sent_at is None and rows[message.id].attempts == 1
        for message in (second, third)
    )

    db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.session.commit()
    assert worker.deliver_due().sent == 2  # the first waits for its claim to run out
    arrived = [envelope.rcpt_tos[0] for envelope in smtp_server.recorder.wait_for(3)]
    assert sorted(arrived) == sorted(READERS)


# --- Connections ------------------------------------------------------------------------


class PeerRecorder:
    """An aiosmtpd handler that notes which connection (client port) brought each message."""

    def __init__(self):
        self.peers: list = []
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Note the connection, accept the message."""
        self.peers.append(session.peer)
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def messages_per_connection(smtp_server, runner, count: int) -> list[int]:
    """Queue ``count`` sign-in-sized messages, deliver them; how many went on each
    connection, in order."""
    smtp_server.stop()
    smtp_server.recorder = recorder = PeerRecorder()
    smtp_server.start()
    waiting_messages(count)
    assert worker.deliver_due().sent == count
    sizes: list[int] = []
    for previous, peer in zip([None, *recorder.peers], recorder.peers, strict=False):
        if peer == previous:
            sizes[-1] += 1
        else:
            sizes.append(1)
    assert len(set(recorder.peers)) == len(sizes), "a connection came back after another"
    return sizes


@pytest.mark.settings(MAIL_MESSAGES_PER_CONNECTION=2, OUTBOX_BATCH_SIZE=100)
def test_a_connection_carries_no_more_messages_than_the_setting_allows(app, runner, smtp_server):
    assert messages_per_connection(smtp_server, runner, 5) == [2, 2, 1]


@pytest.mark.settings(MAIL_MESSAGES_PER_CONNECTION=100, OUTBOX_BATCH_SIZE=3)
def test_batches_share_a_connection_up_to_the_setting(app, runner, smtp_server):
    assert messages_per_connection(smtp_server, runner, 7) == [7]


class SlowRecorder(PeerRecorder):
    """A server that takes ``seconds`` to accept each message."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Think, then accept."""
        await asyncio.sleep(self.seconds)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.settings(MAIL_TIMEOUT=0.1, OUTBOX_BATCH_SIZE=50)
def test_a_batch_slower_than_its_claim_gives_the_rest_back_and_sends_each_once(
    app, smtp_server, monkeypatch, caplog
):
    # Real time, shrunk: a one-second claim, of which a send may start in the first
    # half (5 steps of MAIL_TIMEOUT = 0.5 s kept for the slowest send).
    app.config["OUTBOX_CLAIM_SECONDS"] = 1
    monkeypatch.setattr(worker, "CLAIM_SLACK", 0)
    smtp_server.stop()
    smtp_server.recorder = recorder = SlowRecorder(0.05)
    smtp_server.start()
    waiting_messages(30)  # 1.5 s of sending: three claims' worth

    with caplog.at_level("INFO", logger="auth_service.mail.worker"):
        report = worker.deliver_due()

    assert (report.sent, report.retried, report.failed) == (30, 0, 0)
    recipients = [envelope.rcpt_tos[0] for envelope in recorder.messages]
    assert sorted(recipients) == sorted(f"r{number}@example.com" for number in range(30))
    assert caplog.text.count("claim running out") >= 2
    assert all(row.sent_at is not None and row.attempts == 1 for row in queued_rows())


def test_a_body_line_starting_with_from_arrives_as_written(app, smtp_server):
    now = utcnow()
    for number, address in enumerate(["reader@example.com", "élodie@exemple.fr"]):
        db.session.execute(
            insert(OutboxMessage),
            [
                {
                    "message_id": f"<from{number}@news.test>",
                    "to_address": address,
                    "subject": "Le mot de la rédaction",
                    "text_body": "Bonjour,\n\nFrom Monday on, the edition comes at 7.\n",
                    "html_body": "<p>From Monday on, the edition comes at 7.</p>\n",
                    "headers": {},
                    "kind": "newsletter",
                    "created_at": now,
                    "next_attempt_at": now,
                    "attempts": 0,
                }
            ],
        )
    db.session.commit()

    assert worker.deliver_due().sent == 2

    for envelope in smtp_server.recorder.wait_for(2):
        assert b"\r\nFrom Monday on" in envelope.original_content
        assert b"\n>From" not in envelope.original_content


def test_a_text_line_longer_than_smtp_allows_goes_quoted_printable(app, smtp_server):
    paragraph = "Une très longue phrase sans retour à la ligne, " * 40  # some 1,900 bytes
    now = utcnow()
    db.session.execute(
        insert(OutboxMessage),
        [
            {
                "message_id": "<long@news.test>",
                "to_address": "reader@example.com",
                "subject": "Long",
                "text_body": f"Bonjour,\n\n{paragraph}\n",
                "html_body": "<p>x</p>",
                "headers": {},
                "kind": "newsletter",
                "created_at": now,
                "next_attempt_at": now,
                "attempts": 0,
            }
        ],
    )
    db.session.commit()

    assert worker.deliver_due().sent == 1

    [envelope] = smtp_server.recorder.wait_for(1)
    assert max(len(line) for line in envelope.original_content.split(b"\r\n")) <= 998
    text = [part for part in parse(envelope).walk() if part.get_content_type() == "text/plain"]
    assert text[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert paragraph in text[0].get_content()
