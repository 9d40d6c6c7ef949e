"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts."""

from __future__ import annotations

import threading
import time

from aiosmtpd.controller import Controller

from support.network import free_port


class Recorder:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.messages: list = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        """Accept and record one message."""
        with self.arrived:
            self.messages.append(envelope)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        """Block until ``count`` messages have arrived (or fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.messages)} of {count} messages arrived"
                self.arrived.wait(left)
        return self.messages


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again."""

    def __init__(self):
        self.port = free_port()
        self.recorder = Recorder()
        self.controller = None

    def start(self) -> None:
        """Listen on the port."""
        self.controller = Controller(
            self.recorder, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True
        )
        self.controller.start()

    def stop(self) -> None:
        """Stop listening: the service sees SMTP down."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list:
        """Envelopes accepted so far."""
        return self.recorder.messages
