"""Waking a separate mail worker on SQLite, where there is no ``NOTIFY``: a datagram.

The worker binds a Unix datagram socket in Linux's abstract namespace, named after the
database file, so it leaves nothing on disk and vanishes with the process, however it
ends. A web process that has committed mail sends one byte to that name; the worker,
waiting on the socket, wakes at once instead of at its next look at the table. Nothing
depends on the byte arriving: with no worker bound (or a second worker on the same
database, which cannot bind the name), or where web and worker do not share a network
namespace, the worker still finds the mail at its next poll (``OUTBOX_POLL_INTERVAL``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
from functools import lru_cache

log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def address_of(database: str) -> str:
    """The socket's abstract name for the SQLite file ``database`` (a leading NUL)."""
    digest = hashlib.sha256(os.path.realpath(database).encode()).hexdigest()[:32]
    return f"\0auth-service-outbox-{digest}"


def ring(database: str) -> None:
    """Tell a worker waiting on ``database`` that mail was queued; never fails."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as bell:
            bell.setblocking(False)
            bell.sendto(b"!", address_of(database))
    except OSError:
        pass  # no worker listening, or its queue is full of rings already: both fine


class Doorbell:
    """The worker's end: bound at creation, or ``bound`` is false and it only sleeps."""

    def __init__(self, database: str):
        self.database = database
        self._socket: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.bind(address_of(database))
        except OSError as error:  # another worker holds it, or no abstract namespace here
            log.warning("Outbox: no wake-up socket (%s); polling the outbox only", error)
            self._socket.close()
            self._socket = None
        else:
            self._socket.setblocking(False)

    @property
    def bound(self) -> bool:
        """Whether rings reach this worker."""
        return self._socket is not None

    def wait(self, timeout: float) -> bool:
        """Sleep until rung or for ``timeout`` seconds; whether it was rung. Rings that
        came meanwhile are all taken: one look at the outbox answers them all."""
        if self._socket is None:
            return False
        readable, _, _ = select.select([self._socket], [], [], max(timeout, 0))
        if not readable:
            return False
        try:
            while self._socket.recv(16):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        """Free the name (a new worker may bind it)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
