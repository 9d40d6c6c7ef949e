"""DKIM in the tests: a key in a PEM file as ``auth-service dkim keygen`` writes it, and
dkimpy's verifier with the key's record as its DNS answer (no DNS server holding the
record can run here: that lookup is the one stand-in)."""

from __future__ import annotations

from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth_service.mail.dkim import public_record


def new_key() -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key, the size keygen makes."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    """``key`` as an unencrypted PEM file at ``path``."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def dns(key: rsa.RSAPrivateKey, selector: str, domain: str):
    """The verifier's DNS lookup, answering for one published key only."""
    records = {f"{selector}._domainkey.{domain}.".encode(): public_record(key).encode()}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def verified(data: bytes, key: rsa.RSAPrivateKey, selector: str, domain: str) -> bool:
    """Whether dkimpy finds ``data``'s signature good for ``key`` at selector/domain."""
    return dkim.verify(data, dnsfunc=dns(key, selector, domain))
