"""Server-side sessions: one row per signed-in browser, each revocable on its own.

The session cookie (Flask's signed cookie) carries a random key; the table keeps only
its SHA-256, so a database dump opens no session. Signing out deletes the row, which
ends that session on every copy of the cookie, wherever it was copied to. Finding the
signed-in reader is one indexed lookup of the key joined to its reader: the query that
used to find the reader by an id in the cookie, not one more.

A session lasts ``PERMANENT_SESSION_LIFETIME`` from the sign-in that opened it (30 days
by default, as the contract says); nothing is written while it is used, so pages cost
no write. Nothing here touches the request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from flask import current_app
from sqlalchemy import delete, select

from .extensions import db
from .models import Reader, ReaderSession, utcnow


def _hash(key: str) -> str:
    """What the table keeps of a session key: 256 random bits need no key or stretching."""
    return hashlib.sha256(key.encode()).hexdigest()


def _oldest_alive(now: datetime) -> datetime:
    """Sessions opened before this moment have expired."""
    return now - current_app.config["PERMANENT_SESSION_LIFETIME"]


def open_session(reader: Reader, *, user_agent: str, network: str, now: datetime) -> str:
    """Open a session for ``reader`` in the caller's transaction; return its key.

    The key is also left on ``reader.session_key``, which is what Flask-Login stores.
    The reader's expired sessions are cleared on the way.
    """
    db.session.flush()  # the reader may have just been created: it needs its id
    db.session.execute(
        delete(ReaderSession).where(
            ReaderSession.reader_id == reader.id,
            ReaderSession.created_at <= _oldest_alive(now),
        )
    )
    key = secrets.token_urlsafe(32)
    row = ReaderSession(
        key_hash=_hash(key),
        reader_id=reader.id,
        created_at=now,
        user_agent=user_agent,
        network=network,
    )
    db.session.add(row)
    db.session.flush()
    reader.session_key, reader.session_row_id = key, row.id
    return key


def reader_for(key: str, *, now: datetime | None = None) -> Reader | None:
    """The reader of a live session, in one query; ``None`` if it ended or expired."""
    if not isinstance(key, str) or not key or len(key) > 128:
        return None
    found = db.session.execute(
        select(Reader, ReaderSession.id)
        .join(ReaderSession, ReaderSession.reader_id == Reader.id)
        .where(
            ReaderSession.key_hash == _hash(key),
            ReaderSession.created_at > _oldest_alive(now or utcnow()),
        )
    ).first()
    if found is None:
        return None
    reader, row_id = found
    reader.session_key, reader.session_row_id = key, row_id
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
    """End the session with this key, on every copy of its cookie; commit."""
    if key:
        db.session.execute(delete(ReaderSession).where(ReaderSession.key_hash == _hash(key)))
        db.session.commit()


def end_device(reader: Reader, session_id: int) -> bool:
    """End one of ``reader``'s sessions by its row id; commit. Whether it was theirs."""
    ended = db.session.execute(
        delete(ReaderSession).where(
            ReaderSession.id == session_id, ReaderSession.reader_id == reader.id
        )
    ).rowcount
    db.session.commit()
    return ended == 1


def end_every_session(reader: Reader) -> None:
    """End every session of ``reader``, on every device; commit."""
    db.session.execute(delete(ReaderSession).where(ReaderSession.reader_id == reader.id))
    db.session.commit()
