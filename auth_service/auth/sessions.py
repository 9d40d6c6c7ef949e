"""Server-side sessions: one row per signed-in browser, each revocable on its own.

The session cookie (Flask's signed cookie) carries a random key; the table keeps only
its SHA-256, so a database dump opens no session. Signing out deletes the row, which
ends that session on every copy of the cookie, wherever it was copied to. Finding the
signed-in reader is one indexed lookup of the key joined to its reader: the query that
used to find the reader by an id in the cookie, not one more.

A session lasts ``PERMANENT_SESSION_LIFETIME`` from the sign-in that opened it (30 days
by default, as the contract says: docs/contract.md §3); nothing is written while it is
used, so pages cost no write. Nothing here touches the request, and nothing here
commits: the view or the command that calls it does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from flask import current_app
from sqlalchemy import bindparam, delete, select

from ..extensions import db
from ..models import Reader, ReaderSession, utcnow

DEVICE_ID = re.compile(r"[0-9a-f]{64}")


def key_hash(key: str) -> str:
    """What the table keeps of a session key, and what names the session on the account
    page: 256 random bits need no key or stretching, and the hash opens nothing."""
    return hashlib.sha256(key.encode()).hexdigest()


def _oldest_alive(now: datetime) -> datetime:
    """Sessions opened before this moment have expired."""
    return now - current_app.config["PERMANENT_SESSION_LIFETIME"]


def open_session(
    reader: Reader,
    *,
    user_agent: str,
    network: str,
    now: datetime,
    replacing: str | None = None,
) -> str:
    """Open a session for ``reader`` in the caller's transaction; return its key.

    The key is also left on ``reader.session_key``, which is what Flask-Login stores.
    ``replacing`` is the key of the session this browser held until now (a sign-in in
    a browser already signed in): it ends, or a copy of its cookie would outlive it.
    Expired sessions, of any reader, are deleted on the way (an indexed range).
    """
    db.session.flush()  # the reader may have just been created: it needs its id
    db.session.execute(delete(ReaderSession).where(ReaderSession.created_at <= _oldest_alive(now)))
    if replacing:
        end_session(replacing)
    key = secrets.token_urlsafe(32)
    db.session.add(
        ReaderSession(
            key_hash=key_hash(key),
            reader_id=reader.id,
            created_at=now,
            user_agent=user_agent,
            network=network,
        )
    )
    reader.session_key = key
    return key


# Built once: it runs on every page of a signed-in reader.
_READER_OF_LIVE_SESSION = (
    select(Reader)
    .join(ReaderSession, ReaderSession.reader_id == Reader.id)
    .where(
        ReaderSession.key_hash == bindparam("key_hash"),
        ReaderSession.created_at > bindparam("oldest"),
    )
)


def reader_for(key: str, *, now: datetime | None = None) -> Reader | None:
    """The reader of a live session, in one query; ``None`` if it ended or expired."""
    if not isinstance(key, str) or not key or len(key) > 128:
        return None
    reader = db.session.scalar(
        _READER_OF_LIVE_SESSION,
        {"key_hash": key_hash(key), "oldest": _oldest_alive(now or utcnow())},
    )
    if reader is not None:
        reader.session_key = key
    return reader


def live_sessions(reader: Reader, *, now: datetime | None = None) -> list[ReaderSession]:
    """The reader's live sessions (their devices), newest first."""
    return list(
        db.session.scalars(
            select(ReaderSession)
            .where(
                ReaderSession.reader_id == reader.id,
                ReaderSession.created_at > _oldest_alive(now or utcnow()),
            )
            .order_by(ReaderSession.created_at.desc(), ReaderSession.id.desc())
        )
    )


def end_session(key: str | None) -> None:
    """End the session with this key, on every copy of its cookie (the caller commits)."""
    if key:
        db.session.execute(delete(ReaderSession).where(ReaderSession.key_hash == key_hash(key)))


def end_device(reader: Reader, device_id: str) -> bool:
    """End one of ``reader``'s sessions, named by its key's hash (the caller commits).

    Whether it was one of theirs: another reader's session is never touched.
    """
    if not DEVICE_ID.fullmatch(device_id):
        return False
    ended = db.session.execute(
        delete(ReaderSession).where(
            ReaderSession.key_hash == device_id, ReaderSession.reader_id == reader.id
        )
    ).rowcount
    return ended == 1


def end_every_session(reader: Reader) -> None:
    """End every session of ``reader``, on every device (the caller commits)."""
    db.session.execute(delete(ReaderSession).where(ReaderSession.reader_id == reader.id))
