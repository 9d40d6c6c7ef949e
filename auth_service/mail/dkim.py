"""DKIM: every mail the service sends is signed for its domain (RFC 6376, RFC 8301).

Receivers (Gmail, Yahoo, Outlook) check the ``DKIM-Signature`` header against the
public key the publisher puts in DNS at ``<selector>._domainkey.<domain>``; with SPF and
DMARC, it is how they know the mail is the site's own and not a forgery.

The settings: ``DKIM_SELECTOR`` turns signing on, ``DKIM_PRIVATE_KEY_FILE`` names the
PEM file of the RSA key (read once at start: the key is never in a setting's value, the
database or a log line) and ``DKIM_DOMAIN`` is the ``d=`` domain, by default the domain
of ``MAIL_DEFAULT_SENDER``. ``auth-service dkim keygen`` writes a key and prints the
record to publish.

The canonicalization is ``relaxed/relaxed``, which survives the whitespace changes of
relays. dkimpy parses the header block and canonicalizes the headers, and its verifier
checks our signatures in the tests. The header, the relaxed body and the RSA signature
are made here. dkimpy's own RSA is written in Python and takes about 8 ms a message,
four times the whole delivery of a newsletter copy; OpenSSL's, through
``cryptography``, takes 0.25 ms. dkimpy's body canonicalization took 0.3 ms more.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim import rfc822_parse
from dkim.canonicalization import Relaxed, correct_empty_body, strip_trailing_lines
from flask import Flask

from ..config import ConfigurationError

# The headers a receiver's verdict depends on: who, to whom, what, when, which message,
# how to answer and to unsubscribe, how the body is to be read. Each is named once more
# than it occurs, absent ones once (RFC 6376 8.15): a field added on the way, anywhere
# (a second From, a Reply-To to the forger, another List-Unsubscribe), breaks the
# signature.
SIGNED_HEADERS = (
    "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
    "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Auto-Submitted",
    "Content-Language", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
)  # fmt: skip
SMALLEST_KEY_BITS = 1024  # RFC 8301: verifiers ignore smaller RSA keys
LARGEST_KEY_FILE = 64 * 1024  # a PEM key of 4096 bits is about 3.3 KB
# A selector or a domain: DNS labels of letters, digits and hyphens, joined by dots.
DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
LONGEST_DNS_NAME = 253  # RFC 1035, without the final dot
LINE = 72  # characters of a folded header line, after its tab


class Signer:
    """Signs whole messages, as bytes, with one key for one selector and domain."""

    def __init__(self, selector: str, domain: str, key: rsa.RSAPrivateKey):
        self.selector = selector
        self.domain = domain
        self.key = key
        # The tags all of this key's signatures share, folded once.
        self._common = _folded(
            ["v=1", "a=rsa-sha256", "c=relaxed/relaxed", f"d={domain}", f"s={selector}"],
            first_line=LINE - len("DKIM-Signature: "),
        )

    def sign(self, message: bytes, *, now: float | None = None) -> bytes:
        """``message`` with its ``DKIM-Signature`` header put first (and a line end
        last, if it had none: SMTP adds one, and the signature must cover it)."""
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        headers, body = _parts(message)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
        names, signed = _names_to_sign(tuple(sorted(name.lower() for name, _value in headers)))
        stamp = int(now if now is not None else time.time())
        # What the receiver hashes is the header as it arrives, unfolded by the relaxed
        # canonicalization, with b= empty: so it is folded first, then hashed.
        unsigned = f"{self._common};\r\n\tt={stamp}; bh={body_hash};\r\n\t{signed};\r\n\tb="
        digest = hashlib.sha256()
        for name, value in Relaxed.canonicalize_headers(_chosen(headers, names)):
            digest.update(name + b":" + value)
        [(name, value)] = Relaxed.canonicalize_headers(
            [(b"DKIM-Signature", b" " + unsigned.encode("ascii"))]
        )
        digest.update(name + b":" + value.rstrip(b"\r\n"))  # its own header: no line end
        signature = self.key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        encoded = base64.b64encode(signature).decode("ascii")
        lines = [encoded[start : start + LINE] for start in range(0, len(encoded), LINE)]
        header = "DKIM-Signature: " + unsigned + "\r\n\t".join(lines) + "\r\n"
        return header.encode("ascii") + message


def _parts(message: bytes) -> tuple[list, bytes]:
    """The message's header fields and its body.

    Only the header block goes through dkimpy's parser: the body is most of a
    newsletter's bytes and is taken as it is, once three byte counts have shown that
    every line ends in CRLF (ours do). Any other message is parsed whole, as a verifier
    reads it.
    """
    head, blank, body = message.partition(b"\r\n\r\n")
    if blank and message.count(b"\n") == message.count(b"\r\n") == message.count(b"\r"):
        return rfc822_parse(head + blank)[0], body
    return rfc822_parse(message)


def relaxed_body(body: bytes) -> bytes:
    """The body canonicalized as "relaxed" (RFC 6376 3.4.4), given CRLF line ends: runs of
    spaces and tabs made one space, none at a line's end, no empty lines at the end.

    The same bytes as dkimpy's ``Relaxed.canonicalize_body`` (a test checks it on
    generated bodies), in a tenth of the time: its regular expressions stop at every
    space of a newsletter's HTML.
    """
    body = body.replace(b"\t", b" ")
    while b"  " in body:
        body = body.replace(b"  ", b" ")
    return correct_empty_body(strip_trailing_lines(body.replace(b" \r\n", b"\r\n")))


@functools.lru_cache(maxsize=64)
def _names_to_sign(present: tuple[bytes, ...]) -> tuple[list[bytes], str]:
    """The names of the header fields to sign, given the message's (lower case), as
    ``h=`` lists them and folded: the same for every copy of a newsletter, so worked
    out once."""
    names = []
    for name in SIGNED_HEADERS:
        names += [name] * (present.count(name.lower().encode()) + 1)
    return [name.lower().encode() for name in names], _folded(["h=" + ":".join(names)])


def _chosen(headers: list, names: list[bytes]) -> list:
    """The header fields ``names`` signs, in its order: for a name given twice, the
    last field of that name first, then the one above it (RFC 6376 5.4.2); a name with
    no field left signs nothing, so that one added later breaks the signature."""
    left: dict[bytes, list] = {}
    for field in headers:
        left.setdefault(field[0].lower(), []).append(field)
    return [left[name].pop() for name in names if left.get(name)]


def _folded(tags: list[str], *, first_line: int = LINE) -> str:
    """The tags joined by ``;``, on lines of at most ``LINE`` characters (the first of
    ``first_line``): broken between tags, and inside ``h=`` after a colon, where a
    verifier ignores the whitespace."""
    lines, line = [], ""
    for tag in tags:
        pieces = re.split(r"(?<=:)", tag) if tag.startswith("h=") else [tag]
        for number, piece in enumerate(pieces):
            joint = "; " if line and number == 0 else ""
            room = LINE if lines else first_line
            if line and len(line) + len(joint) + len(piece) > room:
                lines.append(line + joint.rstrip())
                line, joint = "", ""
            line += joint + piece
    lines.append(line)
    return "\r\n\t".join(lines)


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA private key in the PEM file ``path``, or a ConfigurationError saying why not."""
    data = _key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"DKIM_PRIVATE_KEY_FILE {str(path)!r} is not an unencrypted PEM private key."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(
            f"DKIM_PRIVATE_KEY_FILE {str(path)!r} holds no RSA key: receivers such as Gmail "
            "verify RSA signatures only."
        )
    if key.key_size < SMALLEST_KEY_BITS:
        raise ConfigurationError(
            f"The DKIM key is {key.key_size} bits; receivers ignore RSA keys under "
            f"{SMALLEST_KEY_BITS} bits (2048 is the usual size)."
        )
    return key


def _key_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file of a key's size: a FIFO would hold
    the start for ever, a device or a huge file fill the memory."""
    data, problem = b"", None
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                problem = "not a regular file"
            else:
                data = os.read(descriptor, LARGEST_KEY_FILE + 1)
        finally:
            os.close(descriptor)
    except OSError as error:
        problem = error.strerror
    if len(data) > LARGEST_KEY_FILE:
        problem = f"larger than {LARGEST_KEY_FILE // 1024} KB, too large for a key"
    if problem:
        raise ConfigurationError(
            f"DKIM_PRIVATE_KEY_FILE {str(path)!r} cannot be read ({problem}); make it with "
            "`auth-service dkim keygen` and let the service's user read it."
        )
    return data


def default_domain(config) -> str:
    """The d= domain: ``DKIM_DOMAIN``, or the domain of ``MAIL_DEFAULT_SENDER``."""
    return config["DKIM_DOMAIN"] or config["MAIL_DEFAULT_SENDER"].rpartition("@")[2]


def name_problem(selector: str, domain: str) -> str | None:
    """What is wrong with a selector and domain as DNS names, or ``None``."""
    for what, value in (("selector", selector), ("domain", domain)):
        if not DNS_NAME.fullmatch(value):
            return (
                f"the {what} {value!r} is not a DNS name (letters, digits and hyphens, "
                "in labels of at most 63, joined by dots)"
            )
    if len(f"{selector}._domainkey.{domain}") > LONGEST_DNS_NAME:
        return f"{selector}._domainkey.{domain} is longer than DNS allows ({LONGEST_DNS_NAME})"
    return None


def public_record(key: rsa.RSAPrivateKey) -> str:
    """The value of the DNS TXT record that publishes ``key``'s public half."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode("ascii")


def zone_line(selector: str, domain: str, record: str) -> str:
    """``record`` as a zone-file line: TXT strings hold at most 255 characters each."""
    pieces = " ".join(f'"{record[start : start + 255]}"' for start in range(0, len(record), 255))
    return f"{selector}._domainkey.{domain}. IN TXT ( {pieces} )"


def init_app(app: Flask) -> None:
    """Check the DKIM settings and load the key once: a worker that could not sign
    must not start and send unsigned mail."""
    config = app.config
    selector, key_file = config["DKIM_SELECTOR"], config["DKIM_PRIVATE_KEY_FILE"]
    app.extensions["dkim"] = None
    if not selector and not key_file:
        return
    if not (selector and key_file):
        raise ConfigurationError(
            "DKIM needs both DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE (or neither, to send "
            "unsigned mail)."
        )
    domain = default_domain(config)
    problem = name_problem(selector, domain)
    if problem:
        raise ConfigurationError(f"DKIM_SELECTOR or DKIM_DOMAIN: {problem}.")
    sender_domain = config["MAIL_DEFAULT_SENDER"].rpartition("@")[2].lower()
    if sender_domain != domain.lower() and not sender_domain.endswith("." + domain.lower()):
        app.logger.warning(
            "DKIM_DOMAIN %s is not the domain of MAIL_DEFAULT_SENDER (%s) nor one above "
            "it: the signature will not count for DMARC.",
            domain,
            sender_domain,
        )
    app.extensions["dkim"] = Signer(selector, domain, load_key(Path(key_file)))


def signer_of(app: Flask) -> Signer | None:
    """The app's signer, or ``None`` when DKIM is not set up."""
    return app.extensions.get("dkim")


def signed(signer: Signer | None, message: bytes) -> bytes:
    """``message`` signed by ``signer``, or as it is when DKIM is not set up."""
    return signer.sign(message) if signer is not None else message
