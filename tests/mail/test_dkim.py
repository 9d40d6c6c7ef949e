"""DKIM: every mail the worker sends is signed, and dkimpy's own verifier agrees.

Real parts: the mails travel through the worker to the test's SMTP server (aiosmtpd on
127.0.0.1), on SQLite and PostgreSQL, and are verified from the bytes that arrived. The
one stand-in is DNS: the verifier asks a function of the test for the public key, as no
DNS server holding the record can run here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import subprocess
from pathlib import Path

import dkim
import hypothesis
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dkim.canonicalization import Relaxed
from hypothesis import strategies as st
from support import dkim as support_dkim
from support.dkim import new_key, write_key
from support.newsletter import new_reader as subscriber
from support.newsletter import publish, send
from support.settings import SECRET
from support.web import in_english, post_form

from auth_service import create_app
from auth_service.config import ConfigurationError
from auth_service.extensions import db
from auth_service.mail import dkim as signing
from auth_service.mail import worker
from auth_service.mail.copies import EditionCopies
from auth_service.models import OutboxMessage

SELECTOR = "s2026"
DOMAIN = "news.test"  # the domain of the app fixture's sender, no-reply@news.test


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture
def settings(settings, key, tmp_path) -> dict:
    """The app fixture's settings with DKIM on, unless a test's marker says otherwise."""
    key_file = write_key(tmp_path / "dkim.pem", key)
    return {"DKIM_SELECTOR": SELECTOR, "DKIM_PRIVATE_KEY_FILE": str(key_file), **settings}


def dns(key, selector: str = SELECTOR, domain: str = DOMAIN):
    return support_dkim.dns(key, selector, domain)


def verified(data: bytes, key) -> bool:
    return support_dkim.verified(data, key, SELECTOR, DOMAIN)


def arrived(smtp_server) -> list[bytes]:
    """The bytes of every message the SMTP server accepted."""
    return [envelope.original_content for envelope in smtp_server.messages]


def ask_for_link(client, email: str) -> None:
    assert post_form(client, "/login", {"email": email}).status_code == 303


# The DKIM-Signature header at the top of a message, its folded lines included.
SIGNATURE = re.compile(rb"DKIM-Signature:(.*?)\r\n(?![ \t])", re.DOTALL)


def tags_of(data: bytes) -> dict[bytes, bytes]:
    """The tags of the message's DKIM-Signature, whitespace removed."""
    header = SIGNATURE.match(data).group(1)
    fields = (field.split(b"=", 1) for field in re.sub(rb"\s+", b"", header).split(b";"))
    return {name: value for name, value in fields}


# --- The sign-in mail ------------------------------------------------------------------


@pytest.mark.parametrize("language", ["fr", "en"])
def test_a_sign_in_mail_arrives_signed_and_verifies(client, smtp_server, key, language):
    if language == "en":
        in_english(client)
    ask_for_link(client, "lea@example.com")
    assert worker.deliver_due().sent == 1
    (data,) = arrived(smtp_server)

    assert data.startswith(b"DKIM-Signature: ")
    assert verified(data, key)
    tags = tags_of(data)
    assert (tags[b"d"], tags[b"s"], tags[b"a"], tags[b"c"]) == (
        DOMAIN.encode(),
        SELECTOR.encode(),
        b"rsa-sha256",
        b"relaxed/relaxed",
    )
    signed = tags[b"h"].lower().split(b":")
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"):
        assert signed.count(name) == 2, name  # present once, listed once more
    assert signed.count(b"reply-to") == 1  # absent, listed: one added breaks it
    header = SIGNATURE.match(data).group(0)
    assert max(len(line) for line in header.split(b"\r\n")) <= 78  # RFC 5322's advice


def test_signing_puts_one_header_on_top_and_changes_no_byte_below(key):
    message = "From: a@news.test\r\nTo: b@example.com\r\nSubject: Été\r\n\r\nligne  \r\n".encode()
    data = signing.Signer(SELECTOR, DOMAIN, key).sign(message)
    header = SIGNATURE.match(data)
    assert data[header.end() :] == message
    assert verified(data, key)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    lines=st.lists(st.text(alphabet="a \tÉ<>", max_size=12), max_size=8),
    trailing=st.integers(min_value=0, max_value=3),
)
def test_the_relaxed_body_is_dkimpys_byte_for_byte(lines, trailing):
    """Ours is faster; a verifier reads the body as dkimpy does (for CRLF line ends)."""
    body = ("\r\n".join(lines) + "\r\n" * trailing).encode()
    assert signing.relaxed_body(body) == Relaxed.canonicalize_body(body)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"Subject: ", b"Subject: Re: "),
        (b"To: lea@example.com", b"To: leo@example.com"),
        (b"/login/verify?token=", b"/login/verify?token=x"),
    ],
    ids=["subject", "to", "link"],
)
def test_a_mail_altered_after_signing_fails(client, smtp_server, key, before, after):
    ask_for_link(client, "lea@example.com")
    worker.deliver_due()
    (data,) = arrived(smtp_server)
    assert before in data
    assert verified(data, key)
    assert not verified(data.replace(before, after, 1), key)


def test_a_line_added_to_the_body_fails(client, smtp_server, key):
    ask_for_link(client, "lea@example.com")
    worker.deliver_due()
    (data,) = arrived(smtp_server)
    assert not verified(data + b"Cliquez ici : https://evil.example/\r\n", key)


ADDED_FIELDS = {
    "from": b"From: Service client <support@evil.example>\r\n",
    "subject": "Subject: Votre compte sera fermé\r\n".encode(),
    "to": b"To: victim@example.com\r\n",
    "reply-to": b"Reply-To: <support@evil.example>\r\n",
    "content-type": b"Content-Type: text/plain\r\n",
    "list-unsubscribe": b"List-Unsubscribe: <https://evil.example/u>\r\n",
}


@pytest.mark.parametrize("where", ["top", "bottom"])
@pytest.mark.parametrize("field", list(ADDED_FIELDS))
def test_a_header_field_added_anywhere_fails(client, smtp_server, key, field, where):
    """Each signed name is listed once more than it occurs (absent ones once): a field
    added above the others, where a verifier looks last, or below them, breaks it."""
    ask_for_link(client, "lea@example.com")
    worker.deliver_due()
    (data,) = arrived(smtp_server)
    signature = SIGNATURE.match(data).group(0)
    headers_end = data.index(b"\r\n\r\n") + 2
    added = ADDED_FIELDS[field]
    if where == "top":  # right under the signature, above every field of ours
        altered = signature + added + data[len(signature) :]
    else:
        altered = data[:headers_end] + added + data[headers_end:]
    assert verified(data, key)
    assert not verified(altered, key)


def test_whitespace_changes_of_relays_keep_the_signature(client, smtp_server, key):
    """relaxed/relaxed: a relay that refolds a header or pads a line end changes nothing."""
    ask_for_link(client, "lea@example.com")
    worker.deliver_due()
    (data,) = arrived(smtp_server)
    refolded = data.replace(b"\r\nSubject: ", b"\r\nSubject:   ", 1).replace(
        b"\r\n\r\n", b"  \r\n\r\n", 1
    )
    assert refolded != data
    assert verified(refolded, key)


def test_another_key_or_selector_does_not_verify(client, smtp_server, key):
    ask_for_link(client, "lea@example.com")
    worker.deliver_due()
    (data,) = arrived(smtp_server)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not dkim.verify(data, dnsfunc=dns(stranger))
    assert not dkim.verify(data, dnsfunc=dns(key, selector="s2025"))


# --- Newsletter copies -------------------------------------------------------------------


def test_newsletter_copies_spliced_or_built_in_full_all_verify(app, runner, smtp_server, key):
    publish()
    readers = ["lea@example.com", "sam@example.com", "élodie@exemple.fr"]  # the last: in full
    for address, locale in zip(readers, ["fr", "en", "fr"], strict=True):
        subscriber(address, locale=locale)
    assert send(runner).exit_code == 0
    rows = OutboxMessage.query.order_by(OutboxMessage.id).all()
    spliced = [EditionCopies().bytes_of(row) is not None for row in rows]
    assert spliced == [True, True, False]

    assert worker.deliver_due().sent == 3
    copies = {envelope.rcpt_tos[0]: envelope.original_content for envelope in smtp_server.messages}
    assert set(copies) == set(readers)
    for address, data in copies.items():
        assert verified(data, key), address
        signed = tags_of(data)[b"h"].lower().split(b":")
        assert b"list-unsubscribe" in signed and b"list-unsubscribe-post" in signed, address
    assert tags_of(copies[readers[0]])[b"h"] == tags_of(copies[readers[2]])[b"h"]
    # Each copy is signed over its own body: the reader's unsubscribe link is in it.
    assert tags_of(copies[readers[0]])[b"bh"] != tags_of(copies[readers[1]])[b"bh"]


def test_a_message_that_cannot_be_signed_ahead_fails_alone(app, client, smtp_server, key):
    """The next message is signed while this one travels: a failure to sign it is still
    recorded against it, at its turn, and the messages around it go out signed."""
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        ask_for_link(client, address)
    middle = OutboxMessage.query.filter_by(to_address="b@example.com").one()
    middle.headers = {**middle.headers, "X Bad": "1"}  # a field name no parser accepts
    db.session.commit()

    report = worker.deliver_due()

    assert (report.sent, report.retried) == (2, 1)
    assert [envelope.rcpt_tos for envelope in smtp_server.messages] == [
        ["a@example.com"],
        ["c@example.com"],
    ]
    assert all(verified(data, key) for data in arrived(smtp_server))
    db.session.refresh(middle)
    assert middle.sent_at is None and middle.attempts == 1
    assert "X Bad" in middle.last_error, middle.last_error


def test_the_next_message_is_signed_while_the_server_reads_this_one(
    client, smtp_server, key, monkeypatch
):
    """The signature of the following message is made during the longest wait of a
    delivery, not after it: in series it would add its time to every copy."""
    for address in ("a@example.com", "b@example.com"):
        ask_for_link(client, address)
    events = []
    answer = smtp_server.recorder.handle_DATA

    async def slow_answer(server, session, envelope):
        await asyncio.sleep(0.3)  # the server reads the message
        events.append(("answered", envelope.rcpt_tos[0]))
        return await answer(server, session, envelope)

    smtp_server.recorder.handle_DATA = slow_answer  # for the sessions opened from now on
    sign = signing.Signer.sign

    def watched_sign(self, message, **options):
        events.append(("signed", re.search(rb"\r\nTo: (\S+)\r\n", message).group(1).decode()))
        return sign(self, message, **options)

    monkeypatch.setattr(signing.Signer, "sign", watched_sign)  # the real one, watched
    assert worker.deliver_due().sent == 2
    assert events == [
        ("signed", "a@example.com"),
        ("signed", "b@example.com"),  # while the server still reads a's message
        ("answered", "a@example.com"),
        ("answered", "b@example.com"),
    ]
    assert all(verified(data, key) for data in arrived(smtp_server))


def test_a_message_without_a_last_line_end_is_signed_as_smtp_sends_it(key):
    """SMTP ends the content with a line end; the signature covers the message so."""
    message = b"From: a@news.test\r\nTo: b@example.com\r\nSubject: x\r\n\r\nfin  "
    data = signing.Signer(SELECTOR, DOMAIN, key).sign(message)
    assert data.endswith(b"fin  \r\n")
    assert verified(data, key)


# --- Unsigned, and the dev mailbox -----------------------------------------------------------


@pytest.mark.settings(DKIM_SELECTOR=None, DKIM_PRIVATE_KEY_FILE=None)
def test_without_dkim_settings_mail_goes_out_unsigned_as_before(app, client, smtp_server):
    ask_for_link(client, "lea@example.com")
    worker.deliver_due()
    (data,) = arrived(smtp_server)
    assert b"DKIM-Signature" not in data
    assert data.startswith(b"Subject: ")  # built by build_message, nothing put before it
    assert signing.signer_of(app) is None


@pytest.mark.settings(MAIL_SERVER=None)
def test_the_dev_mailbox_keeps_mail_signed_too(app, client, key):
    ask_for_link(client, "lea@example.com")
    worker.deliver_due()
    (path,) = (Path(app.instance_path) / "mailbox").glob("*.eml")
    assert verified(path.read_bytes(), key)


# --- Settings and the key ----------------------------------------------------------------------


def app_with(tmp_path, **settings):
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/settings.sqlite3",
            "PUBLIC_URL": "https://www.lequotidien.example",
            **settings,
        }
    )


@pytest.mark.parametrize(
    ("settings_of", "says"),
    [
        (lambda key_file: {"DKIM_SELECTOR": SELECTOR}, "needs both"),
        (lambda key_file: {"DKIM_PRIVATE_KEY_FILE": key_file}, "needs both"),
        (lambda key_file: {"DKIM_SELECTOR": "s 2026", "DKIM_PRIVATE_KEY_FILE": key_file}, "DNS"),
        (
            lambda key_file: {
                "DKIM_SELECTOR": SELECTOR,
                "DKIM_DOMAIN": "lequotidien.example;x=1",
                "DKIM_PRIVATE_KEY_FILE": key_file,
            },
            "not a DNS name",
        ),
        (
            lambda key_file: {"DKIM_SELECTOR": SELECTOR, "DKIM_PRIVATE_KEY_FILE": key_file + ".x"},
            "cannot be read",
        ),
        (
            lambda key_file: {"DKIM_SELECTOR": "sélecteur", "DKIM_PRIVATE_KEY_FILE": key_file},
            "not a DNS name",
        ),
        (
            lambda key_file: {
                "DKIM_SELECTOR": SELECTOR,
                "DKIM_DOMAIN": ".".join(["a" * 63] * 4) + ".example",
                "DKIM_PRIVATE_KEY_FILE": key_file,
            },
            "longer than DNS allows",
        ),
    ],
    ids=[
        "selector-alone",
        "key-alone",
        "selector-with-space",
        "hostile-domain",
        "no-file",
        "unicode-selector",
        "name-too-long",
    ],
)
def test_half_or_wrong_settings_refuse_to_start(tmp_path, key, settings_of, says):
    key_file = str(write_key(tmp_path / "dkim.pem", key))
    with pytest.raises(ConfigurationError, match=says):
        app_with(tmp_path, **settings_of(key_file))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "not an unencrypted PEM"),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", "PEM"),
        ("clé".encode() * 5000, "PEM"),
        ("ec", "no RSA key"),
        ("encrypted", "not an unencrypted PEM"),
        ("small", "ignore RSA keys under 1024"),
    ],
    ids=["empty", "garbage", "binary", "ec-key", "encrypted", "512-bits"],
)
def test_a_key_file_that_cannot_sign_refuses_to_start(tmp_path, content, says):
    path = tmp_path / "dkim.pem"
    if content == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
        content = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    elif content == "encrypted":
        content = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    elif content == "small":  # cryptography makes none under 1024 bits; OpenSSL still does
        made = subprocess.run(["openssl", "genrsa", "512"], capture_output=True, check=True)
        content = made.stdout
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=says):
        app_with(tmp_path, DKIM_SELECTOR=SELECTOR, DKIM_PRIVATE_KEY_FILE=str(path))


@pytest.mark.parametrize("kind", ["directory", "fifo", "huge"])
def test_a_key_path_that_is_no_key_file_refuses_to_start_at_once(tmp_path, kind):
    """A FIFO would hold the start for ever, a huge file fill the memory."""
    path = tmp_path / "dkim.pem"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"A" * (signing.LARGEST_KEY_FILE + 1))
    with pytest.raises(ConfigurationError, match="cannot be read"):
        app_with(tmp_path, DKIM_SELECTOR=SELECTOR, DKIM_PRIVATE_KEY_FILE=str(path))


def test_the_domain_defaults_to_the_senders_and_the_key_stays_out_of_the_settings(tmp_path, key):
    key_file = write_key(tmp_path / "dkim.pem", key)
    app = app_with(tmp_path, DKIM_SELECTOR=SELECTOR, DKIM_PRIVATE_KEY_FILE=str(key_file))
    signer = signing.signer_of(app)
    assert (signer.selector, signer.domain) == (SELECTOR, "www.lequotidien.example")
    secret = key_file.read_text().splitlines()[1]
    assert secret not in repr(dict(app.config))
    assert app.config["DKIM_PRIVATE_KEY_FILE"] == str(key_file)  # the path, not the key


def test_a_domain_that_does_not_align_with_the_sender_is_logged(tmp_path, key, caplog):
    key_file = write_key(tmp_path / "dkim.pem", key)
    with caplog.at_level(logging.WARNING):
        app_with(
            tmp_path,
            DKIM_SELECTOR=SELECTOR,
            DKIM_DOMAIN="mailer.example",
            DKIM_PRIVATE_KEY_FILE=str(key_file),
        )
        aligned = app_with(
            tmp_path,
            DKIM_SELECTOR=SELECTOR,
            DKIM_DOMAIN="lequotidien.example",
            DKIM_PRIVATE_KEY_FILE=str(key_file),
        )
    warnings = [
        record.getMessage() for record in caplog.records if "DKIM_DOMAIN" in record.getMessage()
    ]
    assert len(warnings) == 1 and "mailer.example" in warnings[0], warnings
    assert signing.signer_of(aligned).domain == "lequotidien.example"


# --- auth-service dkim keygen -------------------------------------------------------------------


def test_keygen_writes_a_private_key_and_prints_the_record_that_verifies_it(app, runner, tmp_path):
    key_file = tmp_path / "keys" / "dkim.pem"
    key_file.parent.mkdir()
    result = runner.invoke(
        args=["dkim", "keygen", "--selector", "s2027", "--key-file", str(key_file)]
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    line = next(line for line in result.output.splitlines() if "IN TXT" in line)
    assert line.startswith(f"s2027._domainkey.{DOMAIN}. IN TXT ( ")
    pieces = re.findall(r'"([^"]*)"', line)
    assert all(len(piece) <= 255 for piece in pieces)
    record = "".join(pieces)
    assert record.startswith("v=DKIM1; k=rsa; p=")
    assert "AUTH_SERVICE_DKIM_SELECTOR=s2027" in result.output
    # The key written signs mail that the printed record verifies.
    key = signing.load_key(key_file)
    data = signing.Signer("s2027", DOMAIN, key).sign(
        b"From: a@news.test\r\nTo: b@example.com\r\nSubject: x\r\n\r\nhello\r\n"
    )
    lookup = {f"s2027._domainkey.{DOMAIN}.".encode(): record.encode()}
    assert dkim.verify(data, dnsfunc=lambda name, timeout=5: lookup.get(name))


def test_keygen_never_writes_over_a_key(app, runner, tmp_path):
    key_file = tmp_path / "in-use.pem"
    key_file.write_bytes(b"the key in use")
    result = runner.invoke(
        args=["dkim", "keygen", "--selector", "s2027", "--key-file", str(key_file)]
    )
    assert result.exit_code != 0
    assert "exists" in result.output
    assert key_file.read_bytes() == b"the key in use"


@pytest.mark.parametrize(
    "arguments",
    [
        ["--selector", "s 1"],
        ["--selector", "x" * 64],
        ["--selector", "s1", "--domain", "exemple.fr;p=x"],
        ["--selector", "s1", "--bits", "512"],
        ["--selector", "s1", "--domain", ".".join(["a" * 63] * 4) + ".example"],
        ["--selector", "sélecteur"],
    ],
    ids=["space", "label-too-long", "hostile-domain", "too-small", "name-too-long", "unicode"],
)
def test_keygen_refuses_names_and_sizes_it_cannot_publish(app, runner, tmp_path, arguments):
    key_file = tmp_path / "new.pem"
    result = runner.invoke(args=["dkim", "keygen", "--key-file", str(key_file), *arguments])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not key_file.exists()


def test_record_prints_the_configured_keys_record(app, runner, key):
    result = runner.invoke(args=["dkim", "record"])
    assert result.exit_code == 0, result.output
    assert signing.public_record(key)[:60] in result.output.replace('" "', "")


@pytest.mark.settings(DKIM_SELECTOR=None, DKIM_PRIVATE_KEY_FILE=None)
def test_record_without_dkim_says_how_to_set_it_up(app, runner):
    result = runner.invoke(args=["dkim", "record"])
    assert result.exit_code == 1
    assert "keygen" in result.output
