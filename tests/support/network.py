"""Ports on 127.0.0.1 for the servers the tests start, and stopping those servers."""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen, how: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Ask ``process`` to stop with the signal ``how``; kill it if it has not within
    ``timeout`` seconds. A process that already ended is left as it is."""
    if process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
